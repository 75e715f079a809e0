"""Shutdown requested by a signal: checked between messages so the one in hand is committed."""

from __future__ import annotations

import threading

STOP = threading.Event()


class ShutdownRequested(BaseException):  # not an Exception: `except Exception` must miss it
    """Raised at a safe point (after a commit) once a stop was requested."""


def check() -> None:
    if STOP.is_set():
        raise ShutdownRequested
