"""Forward passes on random inputs with per-module output shapes and times.

Hooks record each module's output shape, dtype and time; a stack of running
modules names the failing one when an exception escapes. Runs under
``torch.no_grad()`` on the model's device; lazy modules materialise on the
first run; data-dependent control flow simply runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from modeltui.core.errors import Cancelled, ModelTuiError
from modeltui.core.inputs import InputSpec, make_input


@dataclass(slots=True)
class ModuleRecord:
    """What one module produced in the last forward pass."""

    shapes: list[tuple[int, ...]]  # one per tensor in its output
    dtypes: list[str]
    ms: float  # wall time including its children
    calls: int = 1


@dataclass
class ForwardResult:
    """Outcome of a forward pass: records always, output or error."""

    inputs: list[InputSpec]
    records: dict[str, ModuleRecord] = field(default_factory=dict)  # module path -> record
    outputs: list[Any] = field(default_factory=list)  # output tensors (detached)
    output_names: list[str] = field(default_factory=list)  # "output", "output[0]", "output['logits']"
    error: str | None = None
    failed_module: str | None = None
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _tensors_in(obj, name: str, out: list, names: list, depth: int = 0) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out.append(obj)
        names.append(name)
    elif depth < 3 and isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            _tensors_in(x, f"{name}[{i}]", out, names, depth + 1)
    elif depth < 3 and isinstance(obj, dict):
        for k, x in obj.items():
            _tensors_in(x, f"{name}[{k!r}]", out, names, depth + 1)


def model_device(model):
    import torch

    for t in model.parameters():
        if not isinstance(t, torch.nn.parameter.UninitializedTensorMixin):
            return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def run_forward(
    model,
    specs: list[InputSpec],
    *,
    seed: int | None = 0,
    record: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> ForwardResult:
    """Run ``model`` on random inputs made from ``specs`` and record what happened.

    Never raises for an error inside the model: the result carries the
    message and the path of the innermost module that was running.
    """
    import torch

    if not specs:
        raise ModelTuiError("give at least one input shape, e.g. 2,20")
    dev = model_device(model)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=dev if dev.type in ("cpu", "cuda") else "cpu").manual_seed(seed)
    try:
        xs = [make_input(s, dev, model, generator=gen if gen is not None and gen.device == dev else None) for s in specs]
    except Exception as e:
        raise ModelTuiError(f"cannot make inputs {', '.join(map(str, specs))}: {e}") from None
    result = ForwardResult(list(specs))
    paths: dict[int, list[str]] = {}
    for path, mod in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(mod), []).append(path)
    stack: list[tuple[int, float]] = []
    handles = []

    def pre(mod, args):
        if should_stop is not None and should_stop():
            raise Cancelled()
        stack.append((id(mod), time.perf_counter()))

    def post(mod, args, output):
        key, t0 = stack.pop() if stack else (id(mod), time.perf_counter())
        ms = (time.perf_counter() - t0) * 1e3
        ts: list = []
        _tensors_in(output, "", ts, [])
        shapes = [tuple(t.shape) for t in ts]
        dtypes = [str(t.dtype).removeprefix("torch.") for t in ts]
        for p in paths.get(id(mod), ()):
            old = result.records.get(p)
            if old is None:
                result.records[p] = ModuleRecord(shapes, dtypes, ms)
            else:
                old.shapes, old.dtypes = shapes, dtypes
                old.ms += ms
                old.calls += 1

    if record:
        for mod in {id(m): m for m in model.modules()}.values():
            handles.append(mod.register_forward_pre_hook(pre))
            handles.append(mod.register_forward_hook(post))
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            out = model(*xs)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    except Cancelled:
        result.error = "cancelled"
        return result
    except Exception as e:
        failing = stack[-1][0] if stack else None
        result.failed_module = (paths.get(failing) or [None])[0] if failing is not None else None
        where = f" in module '{result.failed_module or '(root)'}' ({type(_find(model, failing)).__name__})" if failing is not None else ""
        lines = str(e).strip().splitlines()
        result.error = f"{type(e).__name__}{where}: {lines[0][:400] if lines else ''}"
        return result
    finally:
        result.ms = (time.perf_counter() - t0) * 1e3
        for h in handles:
            h.remove()
        model.train(was_training)
    outs: list = []
    names: list = []
    _tensors_in(out, "output", outs, names)
    result.outputs = [t.detach() for t in outs]
    result.output_names = names
    return result


def _find(model, key):
    for m in model.modules():
        if id(m) == key:
            return m
    return None
