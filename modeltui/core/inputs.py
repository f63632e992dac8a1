"""Input specifications for forward passes: ``2,20``, ``2,16:int64``, ``attention_mask=2,16``.

A spec with a name is passed as a keyword argument of ``forward``; the
others fill its positional arguments in order. Mask-like inputs (the name,
or the name of the parameter a positional input fills, contains ``mask``)
are ones unless asked otherwise.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from modeltui.core.errors import TargetError

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool")
_ALIASES = {"float": "float32", "half": "float16", "long": "int64", "int": "int64", "double": "float64", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input tensor: shape, dtype, and for integers an exclusive upper bound."""

    shape: tuple[int, ...]
    dtype: str | None = None  # None: int64 for masks and when the model starts with an Embedding, else float32
    high: int | None = None
    dist: str = "rand"  # rand | randn | randint | ones
    name: str | None = None  # a keyword argument of forward; None: the next positional one

    def __str__(self) -> str:
        s = ",".join(map(str, self.shape))
        if self.dtype:
            s += f":{self.dtype}"
        return f"{self.name}={s}" if self.name else s


_NAMED = re.compile(r"^\s*([A-Za-z_]\w*)\s*=(.*)$", re.S)


def is_mask_name(name: str | None) -> bool:
    """True for an input that reads as a mask (``attention_mask``, ``src_key_padding_mask``)."""
    return bool(name) and "mask" in name.lower()


def default_dist(name: str | None) -> str:
    """How an input named ``name`` is drawn by default: ones for masks, else uniform."""
    return "ones" if is_mask_name(name) else "rand"


def parse_input_spec(text: str) -> InputSpec:
    """Parse ``2,20``, ``2x20``, ``[2, 20]``, ``2,16:int64`` or ``name=2,16:int64`` (one input)."""
    raw = text.strip()
    name = None
    named = _NAMED.match(raw)
    if named:
        name, raw = named.group(1), named.group(2).strip()
        if not raw:
            raise TargetError(f"input '{text}' has no shape after '=' (expected e.g. {name}=2,16)")
    elif "=" in raw:
        raise TargetError(f"input '{text}': the name before '=' must be a Python identifier (e.g. attention_mask=2,16)")
    shape_part, _, dtype_part = raw.partition(":")
    shape_part = shape_part.strip().strip("[]()").strip()
    parts = [p for p in re.split(r"[,\s]+|(?<=\d)[x×](?=\d)", shape_part) if p]
    if not parts:
        raise TargetError(f"input shape '{text}' is empty (expected e.g. 2,20)")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise TargetError(f"input shape '{text}' is not a list of integers (expected e.g. 2,20 or 2,16:int64)") from None
    if any(d < 0 for d in shape):
        raise TargetError(f"input shape '{text}' has a negative size")
    if len(shape) > 8 or _numel(shape) > 1 << 31:
        raise TargetError(f"input shape '{text}' is too large")
    dtype = dtype_part.strip().lower().removeprefix("torch.") or None
    dtype = _ALIASES.get(dtype, dtype) if dtype else None
    if dtype is not None and dtype not in DTYPES:
        raise TargetError(f"input dtype '{dtype_part}' is not one of {', '.join(DTYPES)}")
    return InputSpec(shape, dtype, name=name, dist=default_dist(name))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def make_input(spec: InputSpec, device, model=None, generator=None):
    """A random tensor for ``spec`` (integers below the first Embedding's size; ones for ``dist="ones"``)."""
    import torch

    if spec.dist == "ones":
        dtype = getattr(torch, spec.dtype or "int64")
        return torch.ones(spec.shape, dtype=dtype, device=device)
    name = spec.dtype or default_dtype(model)
    dtype = getattr(torch, name)
    if dtype == torch.bool:
        return torch.randint(0, 2, spec.shape, device=device, generator=generator).bool()
    if dtype.is_floating_point and spec.dist != "randint":
        draw = torch.randn if spec.dist == "randn" else torch.rand
        return draw(spec.shape, dtype=dtype, device=device, generator=generator)
    high = spec.high or _embedding_size(model) or (10 if dtype.is_floating_point else 2)
    return torch.randint(0, high, spec.shape, dtype=dtype, device=device, generator=generator)


def build_inputs(specs, device, model=None, generator=None) -> tuple[list, dict]:
    """The ``(args, kwargs)`` of a forward call: named specs by keyword, the others in order."""
    names = [s.name for s in specs if s.name]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise TargetError(f"input '{dup}' is given twice")
    if model is not None and names:
        params = forward_parameters(model)
        takes_any = _takes_any_keyword(model)
        known = [p for p, _ in params]
        unknown = next((n for n in names if n not in known), None)
        if unknown and not takes_any:
            raise TargetError(f"{type(model).__name__}.forward has no parameter '{unknown}' (it takes: {', '.join(known) or 'nothing'})")
    positional = [s for s in specs if not s.name]
    if model is not None and positional:
        import dataclasses

        slots = _positional_names(model)
        # a positional input that fills a mask parameter is ones, as a named one is (unless another draw was asked for)
        positional = [dataclasses.replace(s, dist="ones") if s.dist == "rand" and i < len(slots) and is_mask_name(slots[i]) else s
                      for i, s in enumerate(positional)]
    args = [make_input(s, device, model, generator) for s in positional]
    kwargs = {s.name: make_input(s, device, model, generator) for s in specs if s.name}
    return args, kwargs


def forward_parameters(model) -> list[tuple[str, bool]]:
    """``(name, has_default)`` of each named parameter of ``model.forward``, in order.

    ``*args`` and ``**kwargs`` are left out; an unreadable signature gives [].
    """
    sig = _signature(model)
    if sig is None:
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [(p.name, p.default is not inspect.Parameter.empty) for p in sig.parameters.values() if p.kind in kinds]


def _positional_names(model) -> list[str]:
    """The names of ``model.forward``'s parameters that positional arguments fill, in order."""
    sig = _signature(model)
    if sig is None:
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


def _signature(model):
    try:
        return inspect.signature(model.forward)
    except (TypeError, ValueError, AttributeError):
        return None


def _takes_any_keyword(model) -> bool:
    sig = _signature(model)
    return sig is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def default_dtype(model) -> str:
    """int64 when the first module with parameters is an Embedding, else float32."""
    if model is None:
        return "float32"
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return "int64"
        if any(True for _ in m.parameters(recurse=False)):
            return "float32"
    return "float32"


def _embedding_size(model) -> int | None:
    if model is None:
        return None
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return m.num_embeddings
    return None


def infer_input_specs(model) -> list[InputSpec]:
    """A plausible input from the first layer: Linear in_features, Conv in_channels,
    Embedding (integers below num_embeddings), RNN input_size, Transformer d_model."""
    if model is None:
        return []
    from torch import nn

    if isinstance(model, nn.Transformer):
        d = model.encoder.layers[0].linear1.in_features if len(model.encoder.layers) else 32
        bf = getattr(model, "batch_first", False)
        return [InputSpec((2, 10, d) if bf else (10, 2, d)), InputSpec((2, 7, d) if bf else (7, 2, d))]
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return [InputSpec((2, 16), "int64", m.num_embeddings)]
        if isinstance(m, (nn.RNNBase,)):
            return [InputSpec((2, 10, m.input_size) if m.batch_first else (10, 2, m.input_size))]
        if isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, nn.modules.lazy.LazyModuleMixin):
            n = len(m.kernel_size)
            return [InputSpec((2, m.in_channels) + (32,) * n)]
        if isinstance(m, nn.Linear) and not isinstance(m, nn.modules.lazy.LazyModuleMixin):
            return [InputSpec((2, m.in_features))]
        if isinstance(m, nn.modules.lazy.LazyModuleMixin):
            return [InputSpec((2, 20))]
        if isinstance(m, nn.MultiheadAttention):
            return [InputSpec((2, 10, m.embed_dim))]
        if any(True for _ in m.parameters(recurse=False)):
            p = next(m.parameters(recurse=False))
            if p.dim() == 2:
                return [InputSpec((2, p.shape[0]))]
            break
    return [InputSpec((2, 20))]
