"""Key surgery in the app, through the session: rename, drop and freeze, and the prefixes wrappers add.

What a key is depends on the target:

- a checkpoint without an architecture (made editable as a tree of
  :class:`~modeltui.core.describe.KeyPrefix` modules): its keys *are* the
  tree. A rename or a drop builds a new tree holding the same tensor objects
  (values are never copied; tied names stay one object) and swaps it in;
  undo swaps the old tree back.
- an architecture: its module and parameter names come from its code (its
  ``forward`` uses them), so they never change. A rename or a drop changes
  the state_dict keys a save writes (:attr:`Opened.keys`: state_dict name ->
  saved name, None for not saved); the tree shows them (``→ new`` and
  ``✗ not saved``). Refused: renaming or dropping a tensor no state_dict
  holds (a constant, a non-persistent buffer: it has no key), and freezing
  anything in a checkpoint without an architecture (nothing trains there).

Every operation is one undoable edit with a recipe for the exported script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modeltui.core.keyplan import KeyPlanError, check_names, prefix_pattern, renamed
from modeltui.core.session import EditError, in_state_dict
from modeltui.format import fmt_bytes, visible

PREVIEW = 5  # renames shown in a preview (the dialog fits 80x24)


def _q(name: str) -> str:
    return "'" + visible(name or "(root)", limit=120) + "'"


def is_bare(opened) -> bool:
    from modeltui.core.editable import is_bare as bare

    return bare(opened)


def current_keys(opened) -> dict[str, str]:
    """``tensor name -> the key a save writes it under`` for every tensor a save writes."""
    info = opened.info
    if is_bare(opened):
        return {n: n for n in info.tensors}
    keys = opened.keys
    out = {}
    for n, x in info.tensors.items():
        if in_state_dict(x):
            k = keys.get(n, n)
            if k is not None:
                out[n] = k
    return out


def _under(info, path: str) -> list[str]:
    """Names of the tensors at or below module or tensor ``path``."""
    if path in info.tensors:
        return [path]
    if path == "":
        return list(info.tensors)
    prefix = path + "."
    return [n for n in info.tensors if n.startswith(prefix)]


# ---------------------------------------------------------------- rename


@dataclass
class RenamePreview:
    """What a rename would do: the first renames, how many, and why it is refused (if it is)."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    count: int = 0
    error: str = ""

    def lines(self) -> list[str]:
        if self.error:
            return []
        out = [f"{visible(a, limit=60)} → {visible(b, limit=60)}" for a, b in self.pairs]
        if self.count > len(self.pairs):
            out.append(f"… and {self.count - len(self.pairs)} more")
        return out


def _plan(opened, pattern: str, replacement: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(tensor name -> new key, current keys)`` of a rename; raises :class:`KeyPlanError`."""
    keys = current_keys(opened)
    by_key = {k: n for n, k in keys.items()}
    mapping = renamed(list(by_key), pattern, replacement)
    if not mapping:
        sample = next(iter(by_key), "")
        raise KeyPlanError(f"the pattern matches no key (keys look like {_q(sample)})")
    check_names(list(by_key), mapping, tree=is_bare(opened))
    return {by_key[k]: new for k, new in mapping.items()}, keys


def preview_rename(opened, pattern: str, replacement: str, limit: int = PREVIEW) -> RenamePreview:
    """The dialog's live preview: never raises, the refusal is in ``error``."""
    try:
        changes, keys = _plan(opened, pattern, replacement)
    except KeyPlanError as e:
        return RenamePreview(error=str(e))
    pairs = [(keys[n], new) for n, new in list(changes.items())[:limit]]
    return RenamePreview(pairs, len(changes))


def prefix_rename(old: str, new: str) -> tuple[str, str]:
    """``(pattern, replacement)`` renaming the prefix ``old`` (a node's path) to ``new``."""
    old, new = old.strip(), new.strip()
    if not old:
        return "^", (new + "." if new and not new.endswith(".") else new).replace("\\", "\\\\")
    return prefix_pattern(old), new.replace("\\", "\\\\")


def rename(session, pattern: str, replacement: str) -> str:
    """Rename every key ``re.sub(pattern, replacement, key)`` changes, as one undoable edit."""
    opened = session.opened
    try:
        changes, keys = _plan(opened, pattern, replacement)
    except KeyPlanError as e:
        raise EditError(str(e)) from None
    first = next(iter(changes))
    what = f"{keys[first]} → {changes[first]}" + (f" and {len(changes) - 1} more" if len(changes) > 1 else "")
    desc = f"rename {len(changes)} key(s): {what}"
    recipe = ("rename", {"pattern": pattern, "replacement": replacement})
    if is_bare(opened):
        _swap_tree(session, desc, changes, set(), recipe)
    else:
        new_keys = dict(opened.keys)
        for n, k in changes.items():
            new_keys[n] = k
        _swap_keys(session, desc, new_keys, recipe)
    return desc


def strip_prefix(session, prefix: str) -> str:
    """Remove ``prefix`` (``module.``) from every key that starts with it (one undoable edit)."""
    if not prefix:
        raise EditError("give the prefix to strip, e.g. module.")
    return rename(session, "^" + re.escape(prefix), "")


# ---------------------------------------------------------------- drop


@dataclass
class DropPlan:
    """What dropping a node removes: tensor names (tied ones count once in bytes)."""

    path: str
    names: list[str]
    nbytes: int

    def question(self) -> str:
        what = _q(self.names[0]) if len(self.names) == 1 else f"{len(self.names)} tensors under {_q(self.path)}"
        return f"Drop {what} ({fmt_bytes(self.nbytes)})?"


def plan_drop(opened, path: str) -> DropPlan:
    """The tensors a drop of ``path`` (a module or a tensor) removes; refuses what has no key."""
    info = opened.info
    if path not in info.tensors and path not in info.modules:
        raise EditError(f"{_q(path)} is neither a module nor a tensor of this model")
    keys = current_keys(opened)
    names = [n for n in _under(info, path) if n in keys]
    if not names:
        if path in info.tensors:
            raise EditError(f"{_q(path)} is a {info.tensors[path].kind} that no state_dict holds: it has no key to drop")
        raise EditError(f"nothing under {_q(path)} is saved: no key to drop")
    if len(names) == len(keys):
        raise EditError("dropping this would leave nothing to save")
    seen, nbytes = set(), 0
    for n in names:
        x = info.tensors[n]
        first = x.group[0] if x.group else n  # a tied group counts once
        if first in seen:
            continue
        seen.add(first)
        nbytes += x.nbytes
    return DropPlan(path, names, nbytes)


def drop(session, path: str) -> str:
    """Drop the tensors at or under ``path`` from the checkpoint (an architecture: from what is saved)."""
    opened = session.opened
    plan = plan_drop(opened, path)
    what = plan.names[0] if len(plan.names) == 1 else f"{len(plan.names)} tensors under {path or '(root)'}"
    recipe = ("drop", {"names": list(plan.names)})
    if is_bare(opened):
        desc = f"drop {what} ({fmt_bytes(plan.nbytes)})"
        _swap_tree(session, desc, {}, set(plan.names), recipe)
    else:
        desc = f"drop {what} from what is saved ({fmt_bytes(plan.nbytes)}; the model keeps it)"
        new_keys = dict(opened.keys)
        for n in plan.names:
            new_keys[n] = None
        _swap_keys(session, desc, new_keys, recipe)
    return desc


# ---------------------------------------------------------------- freeze


def freeze(session, path: str, trainable: bool | None = None) -> str:
    """Set ``requires_grad`` of every parameter at or under ``path``; ``None`` toggles (freeze if any trains)."""
    opened = session.opened
    if is_bare(opened):
        raise EditError("a checkpoint without an architecture does not train: freezing needs a model "
                        "(open it as pkg.mod:Net -w CKPT)")
    info = opened.info
    if path not in info.tensors and path not in info.modules:
        raise EditError(f"{_q(path)} is neither a module nor a tensor of this model")
    names = [n for n in _under(info, path) if info.tensors[n].kind == "parameter" and info.tensors[n].shape is not None]
    if not names:
        raise EditError(f"there are no (initialised) parameters at or under {_q(path)}")
    objs, seen = [], set()
    for n, t in session.tensors(names):
        if id(t) not in seen:
            seen.add(id(t))
            objs.append(t)
    if trainable is None:
        trainable = not any(t.requires_grad for t in objs)
    if trainable:
        objs = [t for t in objs if t.is_floating_point() or t.is_complex()]
    todo = [t for t in objs if t.requires_grad != trainable]
    if not todo:
        raise EditError(f"every parameter under {_q(path)} is already {'trainable' if trainable else 'frozen'}")
    inside = set(names)
    ids = {id(t) for t in todo}
    outside = sorted({o for n in names for o in info.tensors[n].group if o not in inside and id(opened.tensor(o)) in ids})
    verb = "unfreeze" if trainable else "freeze"
    desc = f"{verb} {len(todo)} parameter(s) of {path or '(root)'}"
    if outside:
        desc += f" (tied, so also {', '.join(outside[:3])}{'…' if len(outside) > 3 else ''})"
    olds = [(t, t.requires_grad) for t in todo]

    def do():
        for t, _ in olds:
            t.requires_grad_(trainable)

    def undo():
        for t, was in olds:
            t.requires_grad_(was)

    session.apply_structural(desc, do, undo, state=False,
                             recipe=("freeze", {"names": sorted({n for n in names}), "trainable": trainable}))
    return desc


# ---------------------------------------------------------------- applying


def _swap_keys(session, desc: str, new_keys: dict, recipe) -> None:
    opened = session.opened
    old = opened.keys
    new = {n: k for n, k in new_keys.items() if k != n}

    def do():
        opened.keys = new

    def undo():
        opened.keys = old

    session.apply_structural(desc, do, undo, recipe=recipe)


def _swap_tree(session, desc: str, changes: dict[str, str], dropped: set[str], recipe) -> None:
    """Swap in a new key tree holding the same tensor objects under the new names."""
    from modeltui.core.editable import NotEditable, build_key_tree

    opened = session.opened
    old_root = opened.model
    items = [(changes.get(n, n), opened.tensors[n]) for n in opened.info.tensors if n not in dropped]
    try:
        new_root = build_key_tree(items)
    except NotEditable as e:
        raise EditError(str(e)) from None

    def do():
        opened.model = new_root

    def undo():
        opened.model = old_root

    session.apply_structural(desc, do, undo, recipe=recipe)


def wrapper_on_open(opened) -> str:
    """The wrapper prefix every key of a bare checkpoint starts with (``module.``), or ``""``."""
    from modeltui.core.keyplan import wrapper_prefix

    if not is_bare(opened):
        return ""
    ordered = getattr(opened.info.tensors, "sorted_names", None)
    if ordered is not None:  # a lazy listing: the first and last names in string order decide for all
        names = ordered()
        return wrapper_prefix(names[:1] + names[-1:])
    return wrapper_prefix(opened.info.tensors)
