"""What several commands share: reading the settings, running a coroutine."""

from __future__ import annotations

import argparse
from collections.abc import Coroutine
from typing import Any, TypeVar

from cxstream.settings import Settings

__all__ = ["run", "settings_of"]

T = TypeVar("T")


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings, from ``--config`` (if given), the config file variable and the environment."""
    return Settings.from_env(config_file=getattr(args, "config", None))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion on a fresh event loop."""
    import asyncio

    return asyncio.run(coro)
