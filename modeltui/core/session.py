"""The editing session: every change to the model goes through here.

It keeps undo/redo (only the tensors an edit touched, restored bit for bit),
the unsaved state and a readable log, so the views can never disagree with
the model.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from modeltui.core.errors import ModelTuiError, first_line


def _locked(method):
    """Run a Session method holding the session's lock."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


class EditError(ModelTuiError):
    """An edit was refused; the model is unchanged."""


@dataclass
class Edit:
    """One undoable change: the values it replaced, by tensor identity."""

    description: str
    saved: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # id -> (tensor, copy of other values)
    # a structural change (tie, untie, dtype cast): functions that redo / undo it
    redo_fn: Callable[[], Any] | None = None
    undo_fn: Callable[[], Any] | None = None
    held_bytes: int = 0  # memory kept alive by a structural change's undo record

    @property
    def nbytes(self) -> int:
        return self.held_bytes + sum(c.numel() * c.element_size() for _, c in self.saved.values())


class Session:
    """Undo/redo, unsaved state and edit log around an opened module target."""

    def __init__(self, opened):
        if opened.model is None:
            raise EditError("this target has no architecture: open it with a model (pkg.mod:Net -w CKPT) to edit it")
        self.opened = opened
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []
        self.log: list[str] = []
        self._saved_marker: Edit | None = None  # top of undo_stack when last saved
        # edits, undo/redo and moves run in worker threads: one at a time
        self.lock = threading.RLock()

    # ------------------------------------------------------------ state

    @property
    def model(self):
        return self.opened.model

    @property
    def dirty(self) -> bool:
        """True when the model differs from what was opened or last saved."""
        top = self.undo_stack[-1] if self.undo_stack else None
        return top is not self._saved_marker

    @_locked
    def mark_saved(self) -> None:
        self._saved_marker = self.undo_stack[-1] if self.undo_stack else None

    def tensors(self, names: Iterable[str]) -> list[tuple[str, Any]]:
        """Unique tensors behind ``names`` (tied names give one tensor)."""
        seen: set[int] = set()
        out = []
        for n in names:
            t = self.opened.tensor(n)
            if id(t) not in seen:
                seen.add(id(t))
                out.append((n, t))
        return out

    # ------------------------------------------------------------ edits

    @_locked
    def apply(self, description: str, names: Iterable[str], change: Callable[[], Any], *, prune_unchanged: bool = False) -> Any:
        """Run ``change`` (which modifies the tensors of ``names`` in place) as one edit.

        On an exception every touched tensor is restored and an
        :class:`EditError` is raised. ``prune_unchanged`` drops tensors the
        change did not alter from the undo record (for module functions whose
        reach is known only afterwards).
        """
        import torch

        edit = Edit(description)
        for _, t in self.tensors(names):
            if isinstance(t, torch.nn.parameter.UninitializedTensorMixin):
                raise EditError(f"'{description}': uninitialised lazy parameters cannot be edited; run a forward pass first")
            if t.is_meta:
                raise EditError("tensors on the meta device have no values to edit")
            edit.saved[id(t)] = (t, t.detach().clone())
        try:
            with torch.no_grad():
                result = change()
        except Exception as e:
            self._restore(edit)
            if isinstance(e, ModelTuiError):
                raise EditError(str(e)) from None
            raise EditError(f"{description} failed: {type(e).__name__}: {first_line(e)}; nothing was changed") from None
        if prune_unchanged:
            for key, (t, old) in list(edit.saved.items()):
                if t.shape == old.shape and t.dtype == old.dtype and _same_bits(t, old):
                    del edit.saved[key]
        self.undo_stack.append(edit)
        self.redo_stack.clear()
        self.log.append(description)
        self._changed()
        return result

    @_locked
    def apply_structural(self, description: str, do: Callable[[], Any], undo: Callable[[], Any], *, held_bytes: int = 0) -> Any:
        """Run ``do`` (a change of which tensor objects the model holds) as one edit.

        ``undo`` must put back exactly what ``do`` replaced; ``do`` is called
        again on redo. ``do`` must check everything before changing anything;
        if it raises anyway, ``undo`` is tried and an :class:`EditError` raised.
        """
        import torch

        try:
            with torch.no_grad():
                result = do()
        except Exception as e:
            try:
                with torch.no_grad():
                    undo()
            except Exception:
                pass
            if isinstance(e, ModelTuiError):
                raise EditError(str(e)) from None
            raise EditError(f"{description} failed: {type(e).__name__}: {first_line(e)}; nothing was changed") from None
        self.undo_stack.append(Edit(description, redo_fn=do, undo_fn=undo, held_bytes=held_bytes))
        self.redo_stack.clear()
        self.log.append(description)
        self._changed()
        return result

    @_locked
    def note(self, description: str) -> None:
        """Log a change that is not undone with u (a device move) and refresh the views."""
        self.log.append(description)
        self._changed()

    def _restore(self, edit: Edit) -> None:
        import torch

        with torch.no_grad():
            for t, old in edit.saved.values():
                t.copy_(old)

    @_locked
    def undo(self) -> str:
        """Undo the last edit; returns its description."""
        return self._swap(self.undo_stack, self.redo_stack, "undo")

    @_locked
    def redo(self) -> str:
        """Redo the last undone edit; returns its description."""
        return self._swap(self.redo_stack, self.undo_stack, "redo")

    def _swap(self, source: list[Edit], target: list[Edit], verb: str) -> str:
        """Restore the top edit of ``source``, keeping the current values on ``target``."""
        if not source:
            raise EditError(f"nothing to {verb}")
        edit = source.pop()
        if edit.undo_fn is not None:
            import torch

            with torch.no_grad():
                (edit.undo_fn if verb == "undo" else edit.redo_fn)()
            target.append(edit)
            self.log.append(f"{verb}: {edit.description}")
            self._changed()
            return edit.description
        current = Edit(edit.description, {k: (t, t.detach().clone()) for k, (t, _) in edit.saved.items()})
        self._restore(edit)
        target.append(current)
        self.log.append(f"{verb}: {edit.description}")
        self._changed()
        return edit.description

    @property
    def undo_bytes(self) -> int:
        return sum(e.nbytes for e in self.undo_stack) + sum(e.nbytes for e in self.redo_stack)

    def _changed(self) -> None:
        self.opened.refresh()


def _same_bits(a, b) -> bool:
    """True when ``a`` and ``b`` hold the same bits (NaN-safe; -0.0 differs from 0.0)."""
    import torch

    if a.device != b.device or a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    if not (a.is_floating_point() or a.is_complex()):
        return torch.equal(a, b)
    return torch.equal(*_wide_bits(a, b))


def _wide_bits(a, b):
    """Raw bytes of ``a`` and ``b`` viewed as the widest integer both allow.

    Comparing int64 words is several times faster than comparing bytes.
    """
    import torch

    ba = a.contiguous().reshape(-1).view(torch.uint8)
    bb = b.contiguous().reshape(-1).view(torch.uint8)
    for dt, size in ((torch.int64, 8), (torch.int32, 4), (torch.int16, 2)):
        if ba.numel() % size == 0:
            try:
                return ba.view(dt), bb.view(dt)
            except RuntimeError:  # storage offset not aligned for this width
                continue
    return ba, bb
