"""The error tree: one root so callers can catch everything cxstream raises.

Each error's docstring says what an operator should do about it.
"""

from __future__ import annotations

__all__ = ["BrokerError", "ConfigError", "CxStreamError", "InvalidEvent"]


class CxStreamError(Exception):
    """Root of every error cxstream raises on purpose."""


class InvalidEvent(CxStreamError, ValueError):
    """An input message is not a valid event.

    Never fatal: the worker sends the original bytes and this reason to the
    dead-letter topic. Fix the publisher; the reason names the field.
    """

    def __init__(self, reason: str, *, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ConfigError(CxStreamError, ValueError):
    """The settings or the profile file are invalid; the message names the field.

    Raised at start-up, before anything connects. Fix the named setting.
    """


class BrokerError(CxStreamError, RuntimeError):
    """The local Kafka broker could not be fetched, formatted or started.

    The message points at the log file with the broker's own output.
    """
