"""The editing session: every change to the model goes through here.

It keeps undo/redo, the unsaved state and a readable log, so the views can
never disagree with the model. An edit records, for every tensor object it
may touch, the object's data (an alias: same storage, shape, strides, dtype)
and a copy of its values; for a module function (a custom initialiser) also
every attribute slot of the modules it runs on (``_parameters``,
``_buffers``, ``_modules`` and plain attributes). Undo puts back the objects
and the data objects, then the values, so an initialiser that replaces a
Parameter, sets ``.data`` to another shape or dtype, or fails half way is
undone exactly. An undo that fails puts back what it had restored and
leaves the edit on its stack.

The unsaved mark (:attr:`Session.dirty`) follows the edits between the
current state and the last save that touched state_dict tensors; edits of
constants and non-persistent buffers, which no save can carry, are listed by
:meth:`Session.unsaved_constants` instead.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from modeltui.core.errors import ModelTuiError, first_line
from modeltui.format import visible
from modeltui.core.records import (
    _DICTS, TensorState, _changed_slots, _put, _put_slots, _record, _restorable, _settle, _slot_tensors,
    _snapshot_slots,
)
from modeltui.core.tensors import is_lazy


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
    """One undoable change: the tensor states and attribute slots it replaced."""

    description: str
    saved: dict[int, TensorState] = field(default_factory=dict)  # by id of the tensor object
    # (module, where, key, object): where is "_parameters", "_buffers", "_modules", "__dict__" or "_non_persistent"
    slots: list[tuple[Any, str, Any, Any]] = field(default_factory=list)
    # a structural change (tie, untie, dtype cast): functions that redo / undo it
    redo_fn: Callable[[], Any] | None = None
    undo_fn: Callable[[], Any] | None = None
    held_bytes: int = 0  # memory kept alive by a structural change's undo record
    state: bool = True  # changed tensors a save writes (state_dict entries)
    constants: frozenset[str] = frozenset()  # names it changed that no save carries
    # how to redo it in a standalone script: (operation, arguments) for core.export; None: it cannot be
    recipe: tuple[str, dict] | None = None
    names: frozenset[str] = frozenset()  # state_dict names it changed (what a save over a file would change)

    @property
    def nbytes(self) -> int:
        return self.held_bytes + sum(s.nbytes for s in self.saved.values())


def in_state_dict(x) -> bool:
    """True when a save writes tensor ``x`` (a :class:`TensorInfo`) under its own name."""
    return x.kind in ("parameter", "tensor") or (x.kind == "buffer" and x.persistent)


class Session:
    """Undo/redo, unsaved state and edit log around an opened module target."""

    def __init__(self, opened):
        if opened.model is None:
            raise EditError("this target has no architecture: open it with a model (pkg.mod:Net -w CKPT) to edit it")
        self.opened = opened
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []
        self.log: list[str] = []
        # the saved state: the edit on top of the undo stack then (None: the bottom), plus what
        # edits lost to a branch of history (undo past the save, then a new edit) changed
        self._anchor: Edit | None = None
        self._lost_state = False
        self._lost_constants: frozenset[str] = frozenset()
        # edits, undo/redo and moves run in worker threads: one at a time
        self.lock = threading.RLock()
        # files whose contents the session knows: the one opened, and each saved since
        # (real path -> the edit on top when they matched the model, names lost to a dropped branch since)
        self._files: dict[str, tuple[Edit | None, frozenset[str]]] = {}
        weights = getattr(opened, "weights", None)
        for path in (getattr(opened, "path", None), weights.path if weights is not None and weights.fits else None):
            if path and os.path.isfile(path):
                self._files[os.path.realpath(path)] = (None, frozenset())

    # ------------------------------------------------------------ state

    @property
    def model(self):
        return self.opened.model

    def _path(self, anchor: Edit | None | bool = False) -> list[Edit]:
        """The edits between the saved state (or the state at ``anchor``) and now (applied since, or undone since)."""
        if anchor is False:
            anchor = self._anchor
        if anchor is None:
            return list(self.undo_stack)
        for i, e in enumerate(self.undo_stack):
            if e is anchor:
                return self.undo_stack[i + 1:]
        for j, e in enumerate(self.redo_stack):
            if e is anchor:
                return self.redo_stack[j:]
        return []

    def changed_since(self, path: str) -> list[str] | None:
        """State_dict names that differ from file ``path`` now, from the record alone (nothing is read).

        ``path`` must be the file the model was opened from or one it was saved
        to in this session; for any other file the session cannot know: None.
        """
        key = os.path.realpath(path)
        if key not in self._files:
            return None
        anchor, lost = self._files[key]
        names = set(lost)
        for e in self._path(anchor):
            names |= e.names
        return sorted(names)

    @property
    def dirty(self) -> bool:
        """True when state_dict tensors differ from what was opened or last saved."""
        return self._lost_state or any(e.state for e in self._path())

    def unsaved_constants(self) -> list[str]:
        """Constants (and non-persistent buffers) changed since the last save: no save carries them."""
        names = set(self._lost_constants)
        for e in self._path():
            names |= e.constants
        return sorted(names)

    @_locked
    def mark_saved(self, path: str | None = None) -> None:
        """The model now matches what was saved (to ``path``, which :meth:`changed_since` then knows)."""
        self._anchor = self.undo_stack[-1] if self.undo_stack else None
        self._lost_state, self._lost_constants = False, frozenset()
        if path:
            self._files[os.path.realpath(path)] = (self._anchor, frozenset())

    def _branch(self) -> None:
        """A new edit drops the redo stack: remember what the dropped part of the path changed."""
        if self._anchor is not None and any(e is self._anchor for e in self.redo_stack):
            lost = self._path()
            self._lost_state = self._lost_state or any(e.state for e in lost)
            self._lost_constants = self._lost_constants.union(*(e.constants for e in lost))
            self._anchor = self.undo_stack[-1] if self.undo_stack else None
        top = self.undo_stack[-1] if self.undo_stack else None
        for key, (anchor, lost) in list(self._files.items()):
            if anchor is not None and any(e is anchor for e in self.redo_stack):
                dropped = self._path(anchor)
                self._files[key] = (top, lost.union(*(e.names for e in dropped)))
        self.redo_stack.clear()

    def _push(self, edit: Edit, before: dict[str, tuple] | None = None) -> None:
        saved = {n for n, t in self.opened.tensors.items() if id(t) in edit.saved}
        self._branch()
        self.undo_stack.append(edit)
        self.log.append(edit.description)
        self._changed()
        if before is not None:  # what the edit changed, by name: values written, objects or dtypes replaced
            after = self._signatures()
            moved = {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}
            info = self.opened.info
            edit.names = frozenset(n for n in saved | moved if n not in info.tensors or in_state_dict(info.tensors[n]))

    def _signatures(self) -> dict[str, tuple]:
        """Per tensor name: the object, its dtype and shape (a tie, a cast or a replaced Parameter changes it)."""
        out = {}
        for n, t in self.opened.tensors.items():
            out[n] = (id(t), t.dtype, None if is_lazy(t) else tuple(t.shape))
        return out

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

    def check_files(self) -> None:
        """Raise if the checkpoint file behind the model's tensors changed on disk (see ``TensorSource.check``)."""
        if self.opened.source is not None:
            self.opened.source.check()

    # ------------------------------------------------------------ edits

    @_locked
    def apply(self, description: str, names: Iterable[str], change: Callable[[], Any], *,
              prune_unchanged: bool = False, modules: Iterable[Any] = (), recipe: tuple[str, dict] | None = None) -> Any:
        """Run ``change`` (which modifies the tensors of ``names`` in place) as one edit.

        ``modules``: modules ``change`` runs on (a custom initialiser); every
        tensor and attribute slot of their subtrees is recorded, so replacing
        a Parameter, setting ``.data`` to another shape or dtype, or adding an
        attribute is undone too. On an exception everything is rolled back
        and an :class:`EditError` is raised. ``recipe`` says how a script
        exported from the session repeats the edit (:mod:`modeltui.core.export`). ``prune_unchanged`` drops what
        the change did not alter from the undo record (for module functions
        whose reach is known only afterwards); an edit that altered nothing
        is refused.
        """
        import torch

        from modeltui.core.readers import filewatch

        self.check_files()
        before = self._signatures()
        edit = Edit(description, recipe=recipe)
        tensors = [t for _, t in self.tensors(names)]
        slots = _snapshot_slots(modules)
        known = {id(t) for t in tensors}
        tensors += [t for t in _slot_tensors(slots) if id(t) not in known]
        for t in tensors:
            if is_lazy(t):
                if not slots:
                    raise EditError(f"'{description}': uninitialised lazy parameters cannot be edited; run a forward pass first")
                continue
            if t.is_meta:
                raise EditError("tensors on the meta device have no values to edit")
            edit.saved[id(t)] = _record(t)
        for s in edit.saved.values():
            filewatch.mark_written(s.t)
        try:
            with torch.no_grad():
                result = change()
        except Exception as e:
            self._roll_back(edit, slots, description)
            if isinstance(e, ModelTuiError):
                raise EditError(str(e)) from None
            raise EditError(f"{description} failed: {type(e).__name__}: {first_line(e)}; nothing was changed") from None
        edit.slots = _changed_slots(slots)
        for key, s in list(edit.saved.items()):
            kept = _settle(s, prune_unchanged)
            if kept is None:
                del edit.saved[key]
            elif not _restorable(s):
                self._roll_back(edit, slots, description)
                raise EditError(f"{description} turned '{visible(self._name_of(s.t))}' into a {type(s.t.data).__name__} "
                                f"({s.t.layout}) that cannot be changed back; nothing was changed")
        if prune_unchanged and not edit.saved and not edit.slots:
            raise EditError(f"{description} changed nothing")
        edit.state, edit.constants = self._reach(edit)
        self._push(edit, before)
        return result

    @_locked
    def apply_structural(self, description: str, do: Callable[[], Any], undo: Callable[[], Any], *,
                         held_bytes: int = 0, state: bool = True, recipe: tuple[str, dict] | None = None) -> Any:
        """Run ``do`` (a change of which tensor objects the model holds) as one edit.

        ``undo`` must put back exactly what ``do`` replaced; ``do`` is called
        again on redo. ``do`` must check everything before changing anything;
        if it raises anyway, ``undo`` is tried and an :class:`EditError` raised.
        """
        import torch

        self.check_files()
        before = self._signatures()
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
        self._push(Edit(description, redo_fn=do, undo_fn=undo, held_bytes=held_bytes, state=state, recipe=recipe), before)
        return result

    @_locked
    def note(self, description: str) -> None:
        """Log a change that is not undone with u (a device move) and refresh the views."""
        self.log.append(description)
        self._changed()

    def _roll_back(self, edit: Edit, slots, description: str) -> None:
        """Undo a failed change; if even that fails, say the model may be inconsistent."""
        import torch

        try:
            with torch.no_grad():
                _put_slots(_changed_slots(slots))
                for s in edit.saved.values():
                    _put(s)
        except Exception as e:
            raise EditError(f"{description} failed and could not be rolled back ({type(e).__name__}: {first_line(e)}): "
                            "the model may be inconsistent; reopen it without saving") from None

    def _name_of(self, t) -> str:
        return next((n for n, u in self.opened.tensors.items() if u is t), "a tensor")

    def _reach(self, edit: Edit) -> tuple[bool, frozenset[str]]:
        """Whether ``edit`` changed what a save writes, and the names it changed that no save carries."""
        info = self.opened.info
        names: dict[int, list[str]] = {}
        for n, t in self.opened.tensors.items():
            if id(t) in edit.saved:
                names.setdefault(id(t), []).append(n)
        state = False
        constants: set[str] = set()
        for key in edit.saved:
            xs = [info.tensors[n] for n in names.get(key, []) if n in info.tensors]
            if not xs or any(in_state_dict(x) for x in xs):
                state = True
            else:
                constants.update(x.name for x in xs)
        for module, where, key, _ in edit.slots:
            if where in ("_parameters", "_modules", "_non_persistent") or (where == "__dict__" and key in _DICTS) or (
                    where == "_buffers" and key not in getattr(module, "_non_persistent_buffers_set", ())):
                state = True
            elif where == "__dict__":
                constants.update(n for n, x in info.tensors.items() if x.kind == "constant" and x.attr == key
                                 and self.model.get_submodule(x.module) is module)
        return state, frozenset(constants)

    @_locked
    def undo(self) -> str:
        """Undo the last edit; returns its description."""
        return self._swap(self.undo_stack, self.redo_stack, "undo")

    @_locked
    def redo(self) -> str:
        """Redo the last undone edit; returns its description."""
        return self._swap(self.redo_stack, self.undo_stack, "redo")

    def _swap(self, source: list[Edit], target: list[Edit], verb: str) -> str:
        """Put back the top edit of ``source``, keeping what it replaces on ``target``.

        The same :class:`Edit` object moves between the stacks (it marks the
        saved state). If putting it back fails, what was put back is undone
        and the edit stays on ``source``.
        """
        import torch

        if not source:
            raise EditError(f"nothing to {verb}")
        self.check_files()
        edit = source.pop()
        try:
            with torch.no_grad():
                if edit.undo_fn is not None:
                    (edit.undo_fn if verb == "undo" else edit.redo_fn)()
                else:
                    self._put_all(edit)
        except Exception as e:
            source.append(edit)
            self._changed()
            why = str(e) if isinstance(e, ModelTuiError) else f"{type(e).__name__}: {first_line(e)}"
            raise EditError(f"{verb} of '{edit.description}' failed ({why}); the edit stays on the {verb} stack") from None
        target.append(edit)
        self.log.append(f"{verb}: {edit.description}")
        self._changed()
        return edit.description

    def _put_all(self, edit: Edit) -> None:
        """Restore ``edit``'s slots and tensor states, storing in it what was there (all or nothing)."""
        done_slots = _put_slots(edit.slots)
        done: list[tuple[int, TensorState]] = []
        try:
            for key, s in edit.saved.items():
                done.append((key, _put(s)))
        except BaseException:
            for _, back in reversed(done):
                _put(back)
            _put_slots(done_slots)
            raise
        edit.slots = done_slots
        edit.saved = dict(done)

    @property
    def undo_bytes(self) -> int:
        return sum(e.nbytes for e in self.undo_stack) + sum(e.nbytes for e in self.redo_stack)

    def _changed(self) -> None:
        self.opened.refresh()


__all__ = ["Session", "Edit", "EditError", "TensorState", "in_state_dict"]
