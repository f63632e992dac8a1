"""Messages that carry results from thread workers back to the UI (plain data).

Workers never touch widgets: they post one of these, and a handler on the UI
thread paints it. Messages that answer a request carry its number, so a
result older than the current request is dropped instead of painting over a
newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from textual.message import Message

if TYPE_CHECKING:
    from modeltui.core.devices import DeviceInfo
    from modeltui.core.forward import ForwardResult
    from modeltui.core.keys import RenamePreview
    from modeltui.core.preview import ValueGrid
    from modeltui.core.stats import TensorStats
    from modeltui.core.targets import Opened

R = TypeVar("R")


@dataclass
class TargetLoaded(Message):
    """The target opened."""

    opened: Opened


@dataclass
class TargetFailed(Message):
    """Opening the target failed; ``error`` is the user-facing message."""

    error: str


@dataclass
class StatsReady(Message):
    """Statistics of tensor ``name`` (of its gradient when ``grad``) for request ``request``."""

    request: int
    name: str
    grad: bool
    stats: TensorStats


@dataclass
class StatsFailed(Message):
    """Statistics of tensor ``name`` could not be computed."""

    request: int
    name: str
    error: str


@dataclass
class ValuesReady(Message):
    """A value grid for tensor ``name`` and slice ``text``."""

    request: int
    name: str
    grad: bool
    text: str
    grid: ValueGrid


@dataclass
class ValuesFailed(Message):
    """A slice was rejected or values could not be read."""

    request: int
    name: str
    text: str
    error: str


@dataclass
class ForwardFinished(Message):
    """A forward pass ended (ok, failed or cancelled) with the outputs' statistics and grids."""

    result: ForwardResult
    stats: list[TensorStats | None] = field(default_factory=list)
    grids: list[ValueGrid | None] = field(default_factory=list)


@dataclass
class GradsZeroed(Message):
    """Every grad was cleared; ``count`` parameters had one."""

    count: int


@dataclass
class EditingReady(Message):
    """A bare checkpoint was made editable; ``then`` is the action to run now."""

    then: str


@dataclass
class EditingFailed(Message):
    """A bare checkpoint could not be made editable."""

    error: str


@dataclass
class HistoryDone(Message):
    """An undo or redo finished (``error`` set when it was refused)."""

    done: str  # "undid" | "redid"
    description: str = ""
    error: str = ""


@dataclass
class DevicesListed(Message):
    """The devices torch sees, listed off the UI thread."""

    devices: list[DeviceInfo]


@dataclass
class JobDone(Message, Generic[R]):
    """A dialog's job finished with ``result`` (the dialog's result type: an InitReport, a SaveReport…)."""

    result: R


@dataclass
class JobFailed(Message):
    """A dialog's job failed with a user-facing ``error``; ``done`` lists what succeeded first."""

    error: str
    done: list[str] = field(default_factory=list)


@dataclass
class ModelChanged(Message):
    """A dialog changed the model (part of a job succeeded): refresh every view."""


@dataclass
class Progress(Message):
    """Progress of a long job; a newer one replaces any still queued (coalescing)."""

    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Progress)


@dataclass
class KeyEditDone(Message):
    """A key edit (drop, freeze, strip, weights loaded with a prefix stripped) or an export finished."""

    title: str
    description: str | list[str] = ""  # a list is shown one line each
    error: str = ""


@dataclass
class RenamePreviewed(Message):
    """The rename dialog's preview for request ``request``."""

    request: int
    preview: RenamePreview


@dataclass
class CompareDetails(Message):
    """Both sides' statistics, the difference's and the side-by-side values of one compared tensor."""

    request: int
    name: str
    this: TensorStats | None = None
    other: TensorStats | None = None
    diff: TensorStats | None = None
    grids: tuple | None = None  # (this, other, difference) ValueGrids of the slice
    errors: list[str] = field(default_factory=list)  # what could not be computed, one line each

