"""Messages that carry results from thread workers back to the UI (plain data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class TargetLoaded(Message):
    """The target opened; ``opened`` is a :class:`modeltui.core.Opened`."""

    opened: Any


@dataclass
class TargetFailed(Message):
    """Opening the target failed; ``error`` is the user-facing message."""

    error: str


@dataclass
class StatsReady(Message):
    """Statistics of tensor ``name`` (``grad`` tells whether of its gradient)."""

    name: str
    grad: bool
    stats: Any


@dataclass
class ValuesReady(Message):
    """A value grid for tensor ``name`` and slice ``text``."""

    name: str
    grad: bool
    text: str
    grid: Any


@dataclass
class ValuesFailed(Message):
    """A slice was rejected or values could not be read."""

    name: str
    text: str
    error: str
