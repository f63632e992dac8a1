"""Initialiser registry: every in-place ``torch.nn.init`` function, with arguments.

Each initialiser declares its arguments (with defaults and types) and which
tensor ranks it accepts, so a form can be built and validated before anything
is touched. Custom initialisers come by import path, as module functions
applied with ``.apply`` (the book's style) or as tensor functions.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from modeltui.core.errors import ModelTuiError
from modeltui.core.tensors import dtype_name

NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


class InitError(ModelTuiError):
    """An initialiser or its arguments do not fit; nothing was changed."""


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # "float" | "int" | "gain" (a number or a nonlinearity name) | "choice"
    default: Any
    choices: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class Initializer:
    name: str
    args: tuple[Arg, ...] = ()
    ranks: tuple[int, int] = (0, 99)  # inclusive range of tensor.dim() it accepts
    float_only: bool = True
    help: str = ""

    @property
    def min_rank(self) -> int:
        """The fewest dimensions a tensor needs for this initialiser (2 for xavier/kaiming/orthogonal)."""
        return self.ranks[0]

    @property
    def default_filter(self) -> str:
        """The filter a form should start with: "weights" when biases (1-d) cannot take it."""
        return "weights" if self.min_rank >= 2 else "all"

    def fits(self, t) -> str | None:
        """None if ``t`` can take this initialiser, else the reason why not."""
        lo, hi = self.ranks
        if not lo <= t.dim() <= hi:
            if hi >= 99:
                want = f"a tensor of at least {lo} dimensions"
            else:
                want = f"a {lo}-d tensor" if lo == hi else f"a {lo}-d to {hi}-d tensor"
            return f"{self.name} needs {want}, not {t.dim()}-d {list(t.shape)}"
        if self.float_only and not t.is_floating_point():
            return f"{self.name} needs a floating-point tensor, not {dtype_name(t.dtype)}"
        if self.name == "sparse_" and t.dim() == 2 and t.shape[0] == 0:
            return "sparse_ needs at least one row"
        return None


_G = Arg("gain", "gain", 1.0, NONLINEARITIES, "a number or a nonlinearity name (relu, tanh, ...)")
_MODE = Arg("mode", "choice", "fan_in", ("fan_in", "fan_out"))
_NL = Arg("nonlinearity", "choice", "leaky_relu", ("leaky_relu", "relu", "linear", "tanh", "sigmoid", "selu"))

REGISTRY: dict[str, Initializer] = {i.name: i for i in (
    Initializer("uniform_", (Arg("a", "float", 0.0), Arg("b", "float", 1.0)), help="U(a, b)"),
    Initializer("normal_", (Arg("mean", "float", 0.0), Arg("std", "float", 1.0)), help="N(mean, std²)"),
    Initializer("trunc_normal_", (Arg("mean", "float", 0.0), Arg("std", "float", 1.0), Arg("a", "float", -2.0), Arg("b", "float", 2.0)), help="N(mean, std²) cut to [a, b]"),
    Initializer("constant_", (Arg("val", "float", 0.0),), float_only=False, help="every value = val"),
    Initializer("ones_", (), float_only=False, help="every value = 1"),
    Initializer("zeros_", (), float_only=False, help="every value = 0"),
    Initializer("eye_", (), ranks=(2, 2), float_only=False, help="identity matrix (2-d only)"),
    Initializer("dirac_", (Arg("groups", "int", 1),), ranks=(3, 5), float_only=False, help="Dirac delta (conv weights, 3-5-d)"),
    Initializer("xavier_uniform_", (_G,), ranks=(2, 99), help="Glorot uniform"),
    Initializer("xavier_normal_", (_G,), ranks=(2, 99), help="Glorot normal"),
    Initializer("kaiming_uniform_", (Arg("a", "float", 0.0), _MODE, _NL), ranks=(2, 99), help="He uniform"),
    Initializer("kaiming_normal_", (Arg("a", "float", 0.0), _MODE, _NL), ranks=(2, 99), help="He normal"),
    Initializer("orthogonal_", (_G,), ranks=(2, 99), help="(semi-)orthogonal matrix"),
    Initializer("sparse_", (Arg("sparsity", "float", 0.1), Arg("std", "float", 0.01)), ranks=(2, 2), help="sparse columns (2-d only)"),
)}


def parse_args(init: Initializer, raw: dict[str, str]) -> dict[str, Any]:
    """Validate the form's text values into typed keyword arguments."""
    import torch

    out: dict[str, Any] = {}
    known = [a.name for a in init.args]
    unknown = [k for k in raw if k not in known]
    if unknown:
        takes = f"takes {', '.join(known)}" if known else "takes no arguments"
        raise InitError(f"{init.name} has no argument '{unknown[0]}' ({takes})")
    for a in init.args:
        text = str(raw.get(a.name, "")).strip()
        if text == "":
            out[a.name] = a.default
            continue
        if a.kind == "float":
            try:
                v = float(text)
            except ValueError:
                raise InitError(f"{init.name}: {a.name} must be a number, not '{text}'") from None
            if v != v:
                raise InitError(f"{init.name}: {a.name} must not be NaN")
            out[a.name] = v
        elif a.kind == "int":
            try:
                out[a.name] = int(text)
            except ValueError:
                raise InitError(f"{init.name}: {a.name} must be a whole number, not '{text}'") from None
            if out[a.name] < 1:
                raise InitError(f"{init.name}: {a.name} must be at least 1")
        elif a.kind == "gain":
            try:
                out[a.name] = float(text)
            except ValueError:
                if text not in NONLINEARITIES:
                    raise InitError(f"{init.name}: gain must be a number or one of {', '.join(NONLINEARITIES)}, not '{text}'") from None
                out[a.name] = torch.nn.init.calculate_gain(text)
        elif a.kind == "choice":
            if text not in a.choices:
                raise InitError(f"{init.name}: {a.name} must be one of {', '.join(a.choices)}, not '{text}'")
            out[a.name] = text
    if init.name in ("uniform_", "trunc_normal_") and out.get("a", 0) > out.get("b", 1):
        raise InitError(f"{init.name}: a ({out['a']}) must not exceed b ({out['b']})")
    if init.name in ("normal_", "trunc_normal_", "sparse_") and out.get("std", 1) < 0:
        raise InitError(f"{init.name}: std must not be negative")
    if init.name == "sparse_" and not 0 <= out.get("sparsity", 0) <= 1:
        raise InitError("sparse_: sparsity must lie between 0 and 1")
    return out


@dataclass
class Selection:
    """Which tensors an initialiser touches."""

    names: list[str]  # tensor names chosen
    skipped: list[str] = field(default_factory=list)  # left out by the initialiser's own needs (see editing.initialise)


def select_tensors(info, *, module: str | None = None, tensor: str | None = None, which: str = "all",
                   module_class: str = "", include_constants: bool = False) -> Selection:
    """Parameters (and constants if asked) of a module subtree or one tensor.

    ``which``: "all", "weights" (names ending in weight) or "biases";
    ``module_class``: only tensors whose module's class name is exactly this
    (like the book's ``type(m) == nn.Linear``).
    """
    if which not in ("all", "weights", "biases"):
        raise InitError(f"filter must be all, weights or biases, not '{which}'")
    if tensor is not None:
        if tensor not in info.tensors:
            raise InitError(f"no tensor named '{tensor}'")
        return Selection([tensor])
    prefix = module or ""
    if prefix not in info.modules:
        raise InitError(f"no module named '{prefix}'")
    kinds = {"parameter", "tensor"} | ({"constant"} if include_constants else set())  # "tensor": a checkpoint entry
    names = []
    for name, t in info.tensors.items():
        if prefix and not (t.module == prefix or t.module.startswith(prefix + ".")):
            continue
        if t.kind not in kinds:
            continue
        attr = t.attr.lower()
        if which == "weights" and "weight" not in attr:
            continue
        if which == "biases" and "bias" not in attr:
            continue
        if module_class and info.modules[t.module].type != module_class:
            continue
        names.append(name)
    return Selection(names)


def load_custom(path: str) -> Callable:
    """Import a custom initialiser ``pkg.mod:func`` (the cwd is importable)."""
    from modeltui.core.targets import import_object

    if ":" not in path:
        raise InitError(f"custom initialiser '{path}' must be an import path like pkg.module:func")
    try:
        fn = import_object(path)
    except ModelTuiError as e:
        raise InitError(str(e)) from None
    if not callable(fn):
        raise InitError(f"'{path}' is a {type(fn).__name__}, not a function")
    return fn


def custom_style(fn: Callable) -> str:
    """Guess "module" (applied with .apply) or "tensor" from the first parameter's name."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return "module"
    first = params[0].lower() if params else ""
    if first in ("t", "tensor", "w", "weight", "p", "param", "parameter", "x"):
        return "tensor"
    return "module"
