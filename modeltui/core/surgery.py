"""Structural edits: tie and untie parameters, cast the model's dtype, move it.

Tie, untie and cast are undoable edits of the session (they change which
tensor objects the model holds, so their undo records hold the objects they
replaced). A device move keeps every tensor's values and identity; it is
logged by the session but is not an undo step, and a move that fails or is
cancelled half way moves back what it had moved.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from modeltui.core.errors import Cancelled, ModelTuiError
from modeltui.core.session import EditError
from modeltui.core.tensors import dtype_name, is_lazy

CAST_DTYPES = ("float32", "bfloat16", "float16", "float64")
TIEABLE = ("parameter", "tensor")  # "tensor": an entry of a checkpoint made editable


def _parent(name: str) -> tuple[str, str]:
    """``"a.b.weight"`` -> ``("a.b", "weight")``; ``"weight"`` -> ``("", "weight")``."""
    if "." in name:
        head, _, tail = name.rpartition(".")
        return head, tail
    return "", name


def _what(info, name: str) -> str:
    """``"module"`` or ``"tensor"`` for a name of the model, or raise."""
    if name in info.tensors:
        return "tensor"
    if name in info.modules:
        return "module"
    raise EditError(f"'{name}' is neither a module nor a tensor of this model")


def _shown(path: str) -> str:
    return path or "(root)"


def _unshown(name: str) -> str:
    return "" if name == "(root)" else name


def plan_tie(session, source: str, dest: str) -> list[tuple[str, str]]:
    """``(source, dest)`` parameter names: which parameters of ``dest`` become which of ``source``; refuses mismatches."""
    info = session.opened.info
    source, dest = source.strip(), dest.strip()
    if not source or not dest:
        raise EditError("give both a source and a target (a module path or a parameter name)")
    source, dest = _unshown(source), _unshown(dest)
    ks, kd = _what(info, source), _what(info, dest)
    if source == dest:
        raise EditError("the source and the target are the same")
    pairs: list[tuple[str, str]] = []
    if ks == "tensor" and kd == "tensor":
        pairs = [(source, dest)]
    elif ks == "module" and kd == "module":
        if dest.startswith(source + ".") or source.startswith(dest + ".") or "" in (source, dest):
            raise EditError("one module contains the other: tie parameters or sibling modules instead")
        sp, tp = _subtree_params(info, source), _subtree_params(info, dest)
        pairs = [(sp[rel], tp[rel]) for rel in tp if rel in sp]
        if not pairs:
            raise EditError(f"'{_shown(source)}' and '{_shown(dest)}' have no parameters with the same names to tie")
    else:
        tensor, module = (source, dest) if ks == "tensor" else (dest, source)
        attr = info.tensors[tensor].attr
        own = f"{module}.{attr}" if module else attr
        if own not in info.tensors:
            raise EditError(f"module '{_shown(module)}' has no parameter named '{attr}' to tie with '{tensor}'")
        pairs = [(source, own)] if ks == "tensor" else [(own, dest)]
    for s, t in pairs:
        _check_pair(session, info, s, t)
    if all(session.opened.tensor(s) is session.opened.tensor(t) for s, t in pairs):
        raise EditError(f"'{pairs[0][1]}' is already tied to '{pairs[0][0]}'" if len(pairs) == 1 else "these parameters are already tied")
    return pairs


def _subtree_params(info, path: str) -> dict[str, str]:
    """Parameters under module ``path``, by name relative to it."""
    prefix = f"{path}." if path else ""
    return {n[len(prefix):]: n for n, t in info.tensors.items() if n.startswith(prefix) and t.kind in TIEABLE}


def _check_pair(session, info, s: str, t: str) -> None:

    for n in (s, t):
        if info.tensors[n].kind not in TIEABLE:
            raise EditError(f"'{n}' is a {info.tensors[n].kind}, not a parameter: only parameters can be tied")
    ps, pt = session.opened.tensor(s), session.opened.tensor(t)
    for n, p in ((s, ps), (t, pt)):
        if is_lazy(p):
            raise EditError(f"'{n}' is an uninitialised lazy parameter: run a forward pass first")
    if tuple(ps.shape) != tuple(pt.shape):
        raise EditError(f"cannot tie '{t}' {list(pt.shape)} to '{s}' {list(ps.shape)}: the shapes differ")
    if ps.dtype != pt.dtype:
        raise EditError(f"cannot tie '{t}' ({_dt(pt)}) to '{s}' ({_dt(ps)}): the dtypes differ")
    if ps.device != pt.device:
        raise EditError(f"cannot tie '{t}' on {pt.device} to '{s}' on {ps.device}: move the model to one device first")


def _dt(t) -> str:
    return dtype_name(t.dtype)


def tie(session, source: str, dest: str) -> str:
    """Make ``dest`` (the dialog's "target") use ``source``'s Parameter objects; returns the edit's description."""
    pairs = plan_tie(session, source, dest)
    model = session.model
    slots = []
    for s, t in pairs:
        mod_path, attr = _parent(t)
        slots.append((model.get_submodule(mod_path)._parameters, attr, session.opened.tensor(s)))
    if len(pairs) == 1:
        desc = f"tie {pairs[0][1]} to {pairs[0][0]}"
    else:
        desc = f"tie {len(pairs)} parameters of {_shown(dest)} to {_shown(source)}"
    return _swap(session, desc, slots, recipe=("tie", {"pairs": [list(p) for p in pairs]}))


def untie(session, name: str) -> str:
    """Give ``name`` (a parameter or a module) its own copy of what it shares."""
    info = session.opened.info
    name = _unshown(name.strip())
    kind = _what(info, name)
    model = session.model
    if kind == "module":
        return _untie_module(session, info, model, name)
    x = info.tensors[name]
    if x.kind not in TIEABLE:
        raise EditError(f"'{name}' is a {x.kind}; only parameters are tied and untied")
    if not x.tied_with:
        raise EditError(f"'{name}' is not tied to anything")
    owner = model.get_submodule(x.module)
    others = [n for n in x.tied_with if not (model.get_submodule(info.tensors[n].module) is owner and info.tensors[n].attr == x.attr)]
    if not others:
        where = ", ".join([_shown(x.module)] + info.modules[x.module].shared_with)
        raise EditError(f"'{name}' is shared because its module is used at {where}: untie the module '{_shown(x.module)}' instead")
    desc = f"untie {name} (own copy; was tied with {', '.join(others[:3])}{'…' if len(others) > 3 else ''})"
    return _own_copies(session, [(owner, x.attr)], desc, [name])


def _untie_module(session, info, model, path: str) -> str:
    if not path:
        raise EditError("the root module cannot be untied; choose a submodule or a parameter")
    m = info.modules[path]
    if m.shared_with:
        parent_path, attr = _parent(path)
        modules = model.get_submodule(parent_path)._modules
        new = copy.deepcopy(modules[attr])
        desc = f"untie module {path} (own copy; was also used at {', '.join(m.shared_with[:3])})"
        return _swap(session, desc, [(modules, attr, new)], held_bytes=_nbytes(list(new.parameters()) + list(new.buffers())),
                     recipe=("untie_module", {"path": path}))
    prefix = path + "."
    slots, seen, names = [], set(), []
    outside: dict[int, bool] = {}  # per tied group (one tuple shared by its names): reaches outside the module?
    for n, t in info.tensors.items():
        if not n.startswith(prefix) or t.kind not in TIEABLE or not t.group:
            continue
        reaches = outside.get(id(t.group))
        if reaches is None:
            reaches = outside[id(t.group)] = any(not o.startswith(prefix) for o in t.group)
        if reaches:
            owner = model.get_submodule(t.module)
            if (id(owner), t.attr) not in seen:
                seen.add((id(owner), t.attr))
                slots.append((owner, t.attr))
                names.append(n)
    if not slots:
        raise EditError(f"nothing under '{path}' is tied to a parameter outside it")
    return _own_copies(session, slots, f"untie {len(slots)} parameter(s) of {path}", names)


def _own_copies(session, slots, desc: str, names: list[str]) -> str:
    """Give each ``(module, attr)`` parameter an independent copy of its values."""
    from torch import nn

    session.check_files()  # the copies read the values: never from a file that changed underneath

    news = [(owner._parameters, attr, nn.Parameter(owner._parameters[attr].detach().clone(),
                                                   requires_grad=owner._parameters[attr].requires_grad))
            for owner, attr in slots]
    return _swap(session, desc, news, held_bytes=_nbytes([p for _, _, p in news]), recipe=("untie", {"names": list(names)}))


def _swap(session, desc: str, slots, *, held_bytes: int = 0, recipe=None) -> str:
    """One undoable edit putting ``new`` at ``mapping[key]`` for each ``(mapping, key, new)``.

    The mappings are a module's ``_parameters`` or ``_modules``; undo puts
    back the objects that were there.
    """
    olds = [(mapping, key, mapping[key]) for mapping, key, _ in slots]

    def do():
        for mapping, key, new in slots:
            mapping[key] = new

    def undo():
        for mapping, key, old in olds:
            mapping[key] = old

    session.apply_structural(desc, do, undo, held_bytes=held_bytes, recipe=recipe)
    return desc


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# ---------------------------------------------------------------- dtype cast


def _unique_tensors(model) -> list[Any]:
    """Parameters and buffers of ``model``, each object once."""
    seen: set[int] = set()
    out = []
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def cast(session, dtype_name: str, keep: tuple[str, ...] | list[str] = ()) -> str:
    """Cast every floating-point parameter and buffer to ``dtype_name`` (undoable).

    ``keep``: glob patterns (``*norm*``, ``*.bias``); a tensor any of whose
    names matches one keeps its dtype.
    """
    import fnmatch

    import torch

    if dtype_name not in CAST_DTYPES:
        raise EditError(f"cannot cast to '{dtype_name}': choose one of {', '.join(CAST_DTYPES)}")
    dtype = getattr(torch, dtype_name)
    model = session.model
    keep = tuple(k.strip() for k in keep if k.strip())
    kept = {id(t) for n, t in session.opened.tensors.items() if any(fnmatch.fnmatchcase(n, k) for k in keep)}
    todo, skipped = [], 0
    for t in _unique_tensors(model):
        if is_lazy(t):
            raise EditError("the model has uninitialised lazy parameters: run a forward pass before casting")
        if t.is_floating_point() and t.dtype != dtype:
            if id(t) in kept:
                skipped += 1
            else:
                todo.append(t)
    if not todo:
        if skipped:
            raise EditError(f"every floating-point tensor matches a pattern to keep ({', '.join(keep)}): nothing to cast")
        raise EditError(f"every floating-point tensor is already {dtype_name}")
    old_data = [t.data for t in todo]
    old_grads = [t.grad for t in todo]
    held = _nbytes(old_data)

    # from the current data (a device move since keeps its placement); undo restores the
    # exact old bits, on whatever device the tensor is now
    def do():
        for t in todo:
            t.data = t.data.to(dtype)
            if t.grad is not None:
                t.grad = t.grad.to(dtype)

    def undo():
        for t, d, g in zip(todo, old_data, old_grads):
            t.data = d if d.device == t.device else d.to(t.device)
            if g is not None or t.grad is not None:
                t.grad = g if g is None or g.device == t.device else g.to(t.device)

    desc = f"cast {len(todo)} tensor(s) to {dtype_name}" + (f" (kept {skipped} matching {', '.join(keep)})" if keep else "")
    session.apply_structural(desc, do, undo, held_bytes=held, recipe=("cast", {"dtype": dtype_name, "keep": list(keep)}))
    return desc


# ---------------------------------------------------------------- device move


def move(session, device: str, *, progress: Callable[[int, int], None] | None = None,
         should_stop: Callable[[], bool] | None = None) -> str:
    """Move every parameter and buffer (and gradient) to ``device``, keeping ties.

    Tensor objects keep their identity (only ``.data`` changes), so undo
    records and ties stay valid. On an error or a cancel, the tensors moved
    so far go back and the error is raised: nothing moves.
    """
    import torch

    from modeltui.core.devices import resolve_device

    try:
        dev = resolve_device(device)
    except ModelTuiError as e:
        raise EditError(str(e)) from None
    session.check_files()
    model = session.model
    tensors = _unique_tensors(model)
    if any(is_lazy(t) for t in tensors):
        raise EditError("the model has uninitialised lazy parameters: run a forward pass before moving it")
    if dev.type == "meta":
        raise EditError("moving to meta would drop every value; open the target with -d meta instead")
    if any(t.is_meta for t in tensors):
        raise EditError("tensors on the meta device have no values to move; reopen the target on a real device")
    todo = [t for t in tensors if t.device != dev or (t.grad is not None and t.grad.device != dev)]
    if not todo:
        raise EditError(f"the model is already on {dev}")
    total = _nbytes(todo)
    done_bytes = 0
    moved: list[tuple[Any, Any, Any]] = []  # tensor, old data, old grad
    try:
        with torch.no_grad():
            for t in todo:
                if should_stop is not None and should_stop():
                    raise Cancelled("device move cancelled")
                old, g = t.data, t.grad
                new = old.to(dev)
                newg = g.to(dev) if g is not None else None
                t.data = new
                if g is not None:
                    t.grad = newg
                moved.append((t, old, g))
                done_bytes += t.numel() * t.element_size()
                if progress is not None:
                    progress(done_bytes, total)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
    except BaseException as e:
        with torch.no_grad():
            for t, old, g in reversed(moved):
                t.data = old
                t.grad = g
        if isinstance(e, Cancelled):
            raise
        if isinstance(e, ModelTuiError):
            raise EditError(str(e)) from None
        if isinstance(e, Exception):
            from modeltui.core.errors import first_line

            raise EditError(f"moving to {dev} failed: {type(e).__name__}: {first_line(e)}; the model stays where it was") from None
        raise
    session.opened.device = str(dev)
    desc = f"moved {len(todo)} tensor(s) to {dev}"
    session.note(desc)
    return desc
