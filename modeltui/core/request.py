"""What to open and how: one frozen request from the command line to the core and the UI.

The TARGET string is classified once, here; everything after reads the
request's ``kind`` instead of looking at the string again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from modeltui.core.errors import TargetError
from modeltui.core.inputs import InputSpec

DEMO_IMPORT = "modeltui.demo:DemoNet"
DEMO_LABEL = "demo"

#: what a TARGET is; ``""``: not classified yet (the app classifies it in its load worker, to show a bad one in the app)
TargetKind = Literal["checkpoint", "import", "demo", ""]
CHECKPOINT: TargetKind = "checkpoint"
IMPORT: TargetKind = "import"
DEMO: TargetKind = "demo"


def classify_target(target: str) -> TargetKind:
    """``"checkpoint"`` or ``"import"``; raises :class:`TargetError` for something that is neither."""
    if os.path.exists(target):
        return CHECKPOINT
    left, sep, _ = target.rpartition(":")
    if sep and left and not left.endswith(("/", "\\")):
        return IMPORT
    from modeltui.core.readers import CHECKPOINT_EXTS

    if target.endswith(CHECKPOINT_EXTS + (".json",)) or os.sep in target or "/" in target:
        raise TargetError(f"{target}: no such file or folder")
    raise TargetError(
        f"'{target}' is neither an existing file or folder nor an import path (expected pkg.module:attr or file.py:attr)"
    )


@dataclass(frozen=True)
class OpenRequest:
    """A TARGET (classified) and the options that say how to open it.

    ``strict`` refuses weights that do not fit (headless runs); ``strip_to_fit``
    strips a wrapper prefix from ``-w`` keys that fit only without it;
    ``input_specs`` run a forward pass at open (materialising lazy layers).
    """

    target: str | None  # as the user gave it; None: the bundled demo
    kind: TargetKind
    weights: str | None = None
    device: str | None = None
    input_specs: tuple[InputSpec, ...] = ()
    trust: bool = False
    strict: bool = False
    strip_to_fit: bool = False  # -w keys that fit only without a wrapper prefix (module.) get it stripped (headless)

    @classmethod
    def make(cls, target: str | None = None, *, weights: str | None = None, device: str | None = None,
             input_specs=(), trust: bool = False, strict: bool = False, strip_to_fit: bool = False) -> OpenRequest:
        """Classify ``target`` (raises :class:`TargetError` for one that is neither a file nor an import path)."""
        kind = DEMO if target is None else classify_target(target)
        return cls(target, kind, weights, device, tuple(input_specs), trust, strict, strip_to_fit)

    @property
    def label(self) -> str:
        """What the header, the summary and the JSON call the target."""
        return DEMO_LABEL if self.target is None else self.target

    @property
    def import_path(self) -> str:
        """The ``pkg.mod:attr`` to import (the demo's for the demo)."""
        return DEMO_IMPORT if self.kind == DEMO else str(self.target)

    @property
    def is_checkpoint(self) -> bool:
        return self.kind == CHECKPOINT
