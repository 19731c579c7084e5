"""cxstream: real-time churn signals from customer activity."""
