"""The error every part of the replay raises (the flash store, the executor, verify)."""

from __future__ import annotations

__all__ = ["ReplayError"]


class ReplayError(ValueError):
    """The schedule, model or batch cannot be replayed on this graph; the message says why."""
