"""Input specifications for forward passes: ``2,20`` or ``2,16:int64``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modeltui.core.errors import TargetError

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32")
_ALIASES = {"float": "float32", "half": "float16", "long": "int64", "int": "int64", "double": "float64", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input tensor: shape, dtype, and for integers an exclusive upper bound."""

    shape: tuple[int, ...]
    dtype: str | None = None  # None: int64 when the model starts with an Embedding, else float32
    high: int | None = None
    dist: str = "rand"  # rand | randn | randint

    def __str__(self) -> str:
        s = ",".join(map(str, self.shape))
        if self.dtype:
            s += f":{self.dtype}"
        return s


def parse_input_spec(text: str) -> InputSpec:
    """Parse ``2,20``, ``2x20``, ``[2, 20]`` or ``2,16:int64`` (one input)."""
    raw = text.strip()
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
    return InputSpec(shape, dtype)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def make_input(spec: InputSpec, device, model=None, generator=None):
    """A random tensor for ``spec`` (integers below the first Embedding's size)."""
    import torch

    name = spec.dtype or default_dtype(model)
    dtype = getattr(torch, name)
    if dtype.is_floating_point and spec.dist != "randint":
        draw = torch.randn if spec.dist == "randn" else torch.rand
        return draw(spec.shape, dtype=dtype, device=device, generator=generator)
    high = spec.high or _embedding_size(model) or (10 if dtype.is_floating_point else 2)
    return torch.randint(0, high, spec.shape, dtype=dtype, device=device, generator=generator)


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
