"""High-level edits, all through :class:`Session`: initialisers and value edits."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from modeltui.core.errors import ModelTuiError
from modeltui.core.initializers import (
    REGISTRY, InitError, Selection, custom_style, load_custom, parse_args, select_tensors,
)
from modeltui.core.session import EditError, Session
from modeltui.core.slicing import SliceError, check_slice, parse_slice
from modeltui.core.tensors import dtype_name, is_lazy
from modeltui.format import visible


@dataclass
class Moments:
    mean: float
    std: float


@dataclass
class InitReport:
    description: str
    names: list[str]
    before: dict[str, Moments]
    after: dict[str, Moments]
    seed: int | None = None  # the seed the initialiser ran with (in the description and the log too)
    skipped: list[str] = field(default_factory=list)  # weights the filter left out (fewer dimensions than it needs)


def fresh_seed() -> int:
    """A new seed for an initialiser run, from the OS (never the torch RNG, which a seed would repeat)."""
    import secrets

    return secrets.randbits(32)


def _moments(t) -> Moments:
    """Mean and std for the report; NaN where torch has none (meta, quantized…): the report must not fail an edit."""
    try:
        x = t.detach().double()
        return Moments(float(x.mean()) if x.numel() else math.nan, float(x.std(unbiased=False)) if x.numel() else math.nan)
    except (RuntimeError, NotImplementedError, TypeError):
        return Moments(math.nan, math.nan)


def _seeded(seed: int, fn):
    """Run ``fn`` with torch's RNG (CPU and CUDA) seeded with ``seed``; the RNG state is restored after."""
    import torch

    devices = [t for t in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return fn()


def _describe(what: str, names: list[str], seed: int) -> str:
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{what} on {shown}, seed {seed}"


def not_saved_reason(session: Session, name: str) -> str | None:
    """Why an edit of tensor ``name`` would not be saved (a constant, a non-persistent buffer), or None.

    A tensor that is also held under a saved name (tied) is saved through it.
    """
    from modeltui.core.session import in_state_dict

    info = session.opened.info
    x = info.tensors.get(name)
    if x is None or in_state_dict(x) or any(in_state_dict(info.tensors[o]) for o in x.group if o in info.tensors):
        return None
    name = visible(name)
    if x.kind == "constant":
        return (f"'{name}' is a constant (a plain tensor attribute, not a parameter or buffer): state_dict leaves it "
                "out, so no save keeps this edit")
    return f"'{name}' is a non-persistent buffer: state_dict leaves it out, so no save keeps this edit"


def initialise(session: Session, init_name: str, raw_args: dict[str, str] | None = None, *, module: str | None = None,
               tensor: str | None = None, which: str = "all", module_class: str = "", include_constants: bool = False,
               seed: int | None = None) -> InitReport:
    """Apply a built-in ``torch.nn.init`` initialiser to a selection, as one undoable edit.

    ``seed`` seeds torch's RNG for this run; None draws a fresh one
    (:func:`fresh_seed`). The seed used is in the description (and so the
    log) and in :attr:`InitReport.seed`.
    """
    import torch

    init = REGISTRY.get(init_name)
    if init is None:
        raise InitError(f"unknown initialiser '{init_name}' (one of {', '.join(REGISTRY)})")
    kwargs = parse_args(init, raw_args or {})
    sel = select_tensors(session.opened.info, module=module, tensor=tensor, which=which,
                         module_class=module_class, include_constants=include_constants)
    if not sel.names:
        raise InitError(f"{init_name}: no tensor matches the selection (filter '{which}'" + (f", class {module_class}" if module_class else "") + ")")
    pairs = session.tensors(sel.names)
    if which == "weights" and tensor is None and init.min_rank > 1:
        # the weights filter skips what a matrix initialiser cannot take (a LayerNorm's 1-d weight)
        sel.skipped = [n for n, t in pairs if not is_lazy(t) and t.dim() < init.min_rank]
        pairs = [(n, t) for n, t in pairs if n not in sel.skipped]
        if not pairs:
            raise InitError(f"{init_name} needs tensors of at least {init.min_rank} dimensions; every weight selected has fewer")
    for name, t in pairs:
        if is_lazy(t):
            raise InitError(f"{init_name}: '{name}' is an uninitialised lazy parameter; run a forward pass first")
        why = init.fits(t)
        if why:
            hint = " (try the 'weights' filter)" if which == "all" and t.dim() < 2 <= init.min_rank else ""
            raise InitError(f"{why}: '{name}'{hint}; nothing was changed")
    before = {n: _moments(t) for n, t in pairs}
    seed = fresh_seed() if seed is None else seed
    fn = getattr(torch.nn.init, init_name)
    args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in kwargs.items())
    desc = _describe(f"{init_name}({args})" if args else init_name, [n for n, _ in pairs], seed)

    def change():
        def run():
            for _, t in pairs:
                fn(t, **kwargs)
        _seeded(seed, run)

    session.apply(desc, [n for n, _ in pairs], change)
    after = {n: _moments(t) for n, t in session.tensors([n for n, _ in pairs])}
    return InitReport(desc, [n for n, _ in pairs], before, after, seed, sel.skipped)


def initialise_custom(session: Session, path: str, *, module: str | None = None, tensor: str | None = None,
                      style: str | None = None, which: str = "all", module_class: str = "",
                      include_constants: bool = False, seed: int | None = None) -> InitReport:
    """Apply a custom initialiser by import path.

    ``style`` "module": ``submodule.apply(fn)`` like the book; "tensor":
    ``fn(t)`` on each selected tensor; None guesses from the signature.
    ``seed`` as for :func:`initialise` (None: a fresh one). A module function
    may replace Parameters or their ``.data`` (another shape or dtype too):
    the session records every slot and tensor of the subtree, so undo puts
    all of it back.
    """
    fn = load_custom(path)
    style = style or custom_style(fn)
    if style not in ("module", "tensor"):
        raise InitError(f"style must be module or tensor, not '{style}'")
    seed = fresh_seed() if seed is None else seed
    info = session.opened.info
    if style == "module":
        if tensor is not None:
            raise InitError(f"'{path}' takes a module; select a module, not a tensor")
        root = module or ""
        if root not in info.modules:
            raise InitError(f"no module named '{root}'")
        sub = session.model.get_submodule(root) if root else session.model
        names = [n for n, t in info.tensors.items() if t.kind in ("parameter", "tensor") and (not root or t.module == root or t.module.startswith(root + "."))]
        pairs = session.tensors(names)
        before = {n: _moments(t) for n, t in pairs if not is_lazy(t)}
        desc = _describe(f"{path} (applied to modules)", [root or "(root)"], seed)
        session.apply(desc, names, lambda: _seeded(seed, lambda: sub.apply(fn)), prune_unchanged=True, modules=[sub])
    else:
        sel: Selection = select_tensors(info, module=module, tensor=tensor, which=which,
                                        module_class=module_class, include_constants=include_constants)
        if not sel.names:
            raise InitError(f"{path}: no tensor matches the selection")
        pairs = session.tensors(sel.names)
        before = {n: _moments(t) for n, t in pairs}
        desc = _describe(path, [n for n, _ in pairs], seed)

        def run():
            for _, t in pairs:
                r = fn(t)
                if r is not None and r is not t and hasattr(r, "shape"):
                    if tuple(r.shape) != tuple(t.shape):
                        raise InitError(f"{path} returned shape {list(r.shape)} for a tensor of shape {list(t.shape)}")
                    t.copy_(r)
        session.apply(desc, [n for n, _ in pairs], lambda: _seeded(seed, run))
    changed = session.undo_stack[-1]
    now = {n: session.opened.tensors[n] for n, _ in pairs if n in session.opened.tensors}  # a slot may be gone
    touched = [n for n, t in pairs if id(t) in changed.saved or now.get(n) is not t]
    after = {n: _moments(now[n]) for n in touched if n in now and not is_lazy(now[n])}
    return InitReport(desc, touched, before, after, seed)


# ---------------------------------------------------------------- value edits

_ASSIGN = re.compile(r"^\s*(\[[^\]]*\])?\s*(=|\+=|-=|\*=|/=)\s*(.+?)\s*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_value(text: str) -> float | int | bool:
    """A number, ``inf``, ``-inf``, ``nan``, ``True`` or ``False`` (nothing else)."""
    s = text.strip()
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("inf", "+inf", "-inf", "nan"):
        return float(low)
    if _NUMBER.match(s):
        return int(s) if re.fullmatch(r"[+-]?\d+", s) else float(s)
    raise EditError(f"'{s}' is not a number (use e.g. 42, -0.5, 1e-3, inf, nan, True)")


def parse_assignment(expr: str) -> tuple[str, str, float | int | bool]:
    """``"[0, 0] = 42"`` -> ``("[0, 0]", "=", 42)``; the slice may be left out."""
    m = _ASSIGN.match(expr)
    if not m:
        raise EditError(f"'{expr.strip()}' is not an edit: write [slice] op value, e.g. [0, 0] = 42, [:] += 1, *= 0.5")
    slice_text, op, value = m.group(1) or "", m.group(2), parse_value(m.group(3))
    return slice_text, op, value


def edit_values(session: Session, name: str, expr: str) -> str:
    """Apply ``expr`` (``[slice] op value``) to tensor ``name`` as one undoable edit."""
    import torch

    slice_text, op, value = parse_assignment(expr)
    (tname, t), = session.tensors([name])
    if is_lazy(t):
        raise EditError(f"'{name}' is an uninitialised lazy parameter; run a forward pass first")
    try:
        index = parse_slice(slice_text) if slice_text else ()
        check_slice(index, tuple(t.shape))
    except SliceError as e:
        raise EditError(f"slice {slice_text}: {e}") from None
    dtype = t.dtype
    if dtype == torch.bool:
        if op != "=":
            raise EditError(f"'{name}' is a bool tensor: only = True / False works")
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and value not in (0, 1)):
            raise EditError(f"'{name}' is a bool tensor: assign True or False")
    elif not (dtype.is_floating_point or dtype.is_complex):
        if isinstance(value, float):
            raise EditError(f"'{name}' is {dtype_name(dtype)}: {value!r} is not a whole number")
        if op == "/=":
            raise EditError(f"'{name}' is {dtype_name(dtype)}: /= would not stay an integer; use a float tensor")
        info = torch.iinfo(dtype)
        if op == "=" and not info.min <= int(value) <= info.max:
            raise EditError(f"{value} does not fit in {dtype_name(dtype)} ({info.min}..{info.max})")
    if op == "/=" and value == 0:
        raise EditError("division by zero")
    desc = f"{name}{slice_text} {op} {value}"

    def change():
        view = t[index] if index else t  # basic indexing only: always a view
        was_finite = bool(torch.isfinite(view).all()) if dtype.is_floating_point else True
        if op == "=":
            view.fill_(value)
        elif op == "+=":
            view.add_(value)
        elif op == "-=":
            view.sub_(value)
        elif op == "*=":
            view.mul_(value)
        elif op == "/=":
            view.div_(value)
        if dtype.is_floating_point and was_finite and math.isfinite(float(value)) and not bool(torch.isfinite(view).all()):
            raise EditError(f"{desc} overflows {dtype_name(dtype)}; nothing was changed")

    session.apply(desc, [name], change)
    return desc


__all__ = ["initialise", "initialise_custom", "edit_values", "parse_assignment", "not_saved_reason", "fresh_seed",
           "InitReport", "InitError", "EditError", "ModelTuiError"]

