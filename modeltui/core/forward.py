"""Forward passes on random inputs with per-module output shapes and times.

Hooks record each module's output shape, dtype and time; a stack of running
modules names the failing one when an exception escapes. Runs under
``torch.no_grad()`` on the model's device; lazy modules materialise on the
first run; data-dependent control flow simply runs.

Every run owns its hooks and its stop flag (a :class:`ForwardRun`): the
hooks act only in the thread of their run, so a run abandoned while stuck
in pure Python (it never reaches a hook to notice its cancel) cannot stop,
slow or record into a later run; they are removed when it ends.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from modeltui.core.errors import Cancelled, ModelTuiError
from modeltui.core.inputs import InputSpec, build_inputs
from modeltui.core.tensors import is_lazy


@dataclass(slots=True)
class ModuleRecord:
    """What one module produced in the last forward pass."""

    shapes: list[tuple[int, ...]]  # one per tensor in its output
    ms: float  # wall time including its children (summed when it runs more than once)


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
    """The device of the model's first initialised parameter (or buffer); cpu for none."""
    import torch

    for t in model.parameters():
        if not is_lazy(t):
            return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


class ForwardRun:
    """One forward pass's own state: its stop flag and whether it is inside the model.

    Keep it to cancel the run (:meth:`cancel`) and, after a cancel, to tell
    whether the run has left the model (``inside`` is False) or is stuck in
    code that calls no submodule, where no hook can stop it: it then goes on
    in the background (``seconds_since_progress`` keeps growing) and its
    hooks stay inert for every other run.
    """

    def __init__(self, should_stop: Callable[[], bool] | None = None):
        self._stop = threading.Event()
        self._should_stop = should_stop
        self.inside = False  # between entering the model and leaving it (by return or exception)
        self.thread_id: int | None = None
        self.model_id: int | None = None
        self.last_progress = time.monotonic()  # last module entered or left

    def cancel(self) -> None:
        """Ask the run to stop at the next module it enters."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set() or (self._should_stop is not None and bool(self._should_stop()))

    def seconds_since_progress(self) -> float:
        """Seconds since the run last entered or left a module."""
        return time.monotonic() - self.last_progress


_inside: set[ForwardRun] = set()
_inside_lock = threading.Lock()


def runs_inside(model=None) -> list[ForwardRun]:
    """Forward runs still inside ``model`` (any model for None), e.g. one abandoned while stuck."""
    with _inside_lock:
        return [r for r in _inside if model is None or r.model_id == id(model)]


def run_forward(
    model,
    specs: list[InputSpec],
    *,
    seed: int | None = 0,
    record: bool = True,
    should_stop: Callable[[], bool] | None = None,
    run: ForwardRun | None = None,
    device=None,
) -> ForwardResult:
    """Run ``model`` on random inputs made from ``specs`` and record what happened.

    Named specs (``attention_mask=2,16``) are keyword arguments, the others
    positional. ``run`` (made here when not given) carries the stop flag;
    ``should_stop`` is polled as well. ``device`` defaults to the model's.
    Never raises for an error inside the model: the result carries the
    message and the path of the innermost module that was running.
    """
    import torch

    from modeltui.core.describe import walk_modules

    if not specs:
        raise ModelTuiError("give at least one input shape, e.g. 2,20")
    stoppable = run is not None or should_stop is not None
    run = run or ForwardRun(should_stop)
    if should_stop is not None and run._should_stop is None:
        run._should_stop = should_stop
    dev = torch.device(device) if device is not None else model_device(model)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=dev if dev.type in ("cpu", "cuda") else "cpu").manual_seed(seed)
    try:
        args, kwargs = build_inputs(specs, dev, model, generator=gen if gen is not None and gen.device == dev else None)
    except Exception as e:
        raise ModelTuiError(f"cannot make inputs {', '.join(map(str, specs))}: {e}") from None
    result = ForwardResult(list(specs))
    paths: dict[int, list[str]] = {}
    for path, mod in walk_modules(model):
        paths.setdefault(id(mod), []).append(path)
    stack: list[tuple[int, float]] = []
    handles = []
    owner = threading.get_ident()

    def pre(mod, args):
        if threading.get_ident() != owner or not run.inside:
            return  # another run's call, or this run has ended: inert
        run.last_progress = time.monotonic()
        if run.cancelled:
            raise Cancelled()
        stack.append((id(mod), time.perf_counter()))

    def post(mod, args, output):
        if threading.get_ident() != owner or not run.inside:
            return
        run.last_progress = time.monotonic()
        key, t0 = stack.pop() if stack else (id(mod), time.perf_counter())
        ms = (time.perf_counter() - t0) * 1e3
        ts: list = []
        _tensors_in(output, "", ts, [])
        shapes = [tuple(t.shape) for t in ts]
        for p in paths.get(id(mod), ()):
            old = result.records.get(p)
            if old is None:
                result.records[p] = ModuleRecord(shapes, ms)
            else:
                old.shapes = shapes
                old.ms += ms

    if record or stoppable:  # record=False with nothing to stop it: the bare pass (a baseline)
        for mod in {id(m): m for _, m in walk_modules(model)}.values():
            handles.append(mod.register_forward_pre_hook(pre))  # cancellation, and the failing module's name
            if record:
                handles.append(mod.register_forward_hook(post))
    was_training = model.training
    model.eval()
    run.thread_id, run.model_id = owner, id(model)
    run.inside = True
    with _inside_lock:
        _inside.add(run)
    t0 = time.perf_counter()
    try:
        if run.cancelled:
            raise Cancelled()
        with torch.no_grad():
            out = model(*args, **kwargs)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if run.cancelled:
            raise Cancelled()
    except Cancelled:
        result.error = "cancelled"
        return result
    except Exception as e:
        failing = stack[-1][0] if stack else None
        result.failed_module = (paths.get(failing) or [None])[0] if failing is not None else None
        shown = _shown_path(result.failed_module or "(root)")
        where = f" in module '{shown}' ({type(_find(model, failing)).__name__})" if failing is not None else ""
        lines = str(e).strip().splitlines()
        result.error = f"{type(e).__name__}{where}: {lines[0][:400] if lines else ''}"
        if isinstance(e, RecursionError):
            result.error += " (the model nests too deeply for Python's recursion limit)"
        return result
    finally:
        run.inside = False
        with _inside_lock:
            _inside.discard(run)
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


def _shown_path(path: str, limit: int = 120) -> str:
    """A module path cut to its last ``limit`` characters (a model nested 1,000 deep has long ones)."""
    return path if len(path) <= limit else "…" + path[-limit:]


def _find(model, key):
    from modeltui.core.describe import walk_modules

    for _, m in walk_modules(model):
        if id(m) == key:
            return m
    return None
