"""``cxstream bench``: one module per section (engine, worker, latency, memory) and the report.

``runner`` runs the sections and writes the results; each section measures its
own baseline in the same run.
"""
