"""Backward passes on random inputs: a loss, the grads, and their norms.

``run_backward`` runs the forward pass of :mod:`modeltui.core.forward` (with
its activation statistics) under autograd, makes a loss from the output and
calls ``backward()``. The grads are cleared first (set to None, as
``optimizer.zero_grad()`` does), or added to the grads already there with
``accumulate``; the result says which. Tied parameters are one Parameter, so
they get one grad, the sum over their uses; frozen parameters get none.

Grads are scratch state: they are not in the state_dict, so computing or
clearing them never marks the model unsaved and is not an undoable edit.
But a backward that fails (nothing requires grad, a loss that does not fit
the output, running out of memory, an error in the model, a cancel) puts
every grad back as it was, and the model itself is never changed: the pass
runs in eval mode, so BatchNorm statistics are not updated.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from modeltui.core.errors import ModelTuiError
from modeltui.core.forward import ForwardResult, ForwardRun, _tensors_in, run_forward
from modeltui.core.inputs import InputSpec
from modeltui.core.tensors import is_lazy

#: the losses a backward pass can use, with what each computes
LOSSES: dict[str, str] = {
    "sum": "the sum of every output value",
    "mean": "the mean of the output values (summed over output tensors)",
    "mse": "mean squared error against zeros",
    "ce": "cross-entropy against random class targets (classes on the last dimension)",
}


class BackwardError(ModelTuiError):
    """A backward pass cannot run (nothing requires grad, an unknown loss); nothing was changed."""


def check_backward(model, loss: str) -> None:
    """Raise :class:`BackwardError` when a backward with ``loss`` cannot run on ``model``."""
    if loss not in LOSSES:
        raise BackwardError(f"unknown loss '{loss}' (expected one of {', '.join(LOSSES)})")
    params = list(model.parameters())
    if not any(p.requires_grad for p in params):
        raise BackwardError("no parameter requires grad (every parameter is frozen): there is nothing to differentiate; "
                            "the model and its grads are unchanged")
    if any(p.is_meta and not is_lazy(p) for p in params):
        raise BackwardError("the model is on the meta device (structure only): it has no values to differentiate; "
                            "open it on cpu or cuda")


def make_loss(output, loss: str, generator=None):
    """``(loss tensor, what it was computed on)`` for the output of a forward pass.

    Raises :class:`BackwardError` for an output the loss does not fit: no
    floating-point tensor, nothing that depends on a parameter requiring
    grad, or (``ce``) no classifier-shaped tensor.
    """
    import torch
    import torch.nn.functional as F

    tensors: list = []
    names: list = []
    _tensors_in(output, "output", tensors, names)
    floats = [(n, t) for n, t in zip(names, tensors) if t.is_floating_point() or t.is_complex()]
    if not floats:
        kinds = ", ".join(sorted({str(t.dtype).removeprefix("torch.") for t in tensors})) or "no tensor"
        raise BackwardError(f"the output is {kinds}: a loss needs a floating-point output")
    live = [(n, t) for n, t in floats if t.requires_grad]
    if not live:
        raise BackwardError("the output does not depend on any parameter that requires grad "
                            "(is it detached, or computed under torch.no_grad()?)")
    if loss == "ce":
        fit = [(n, t) for n, t in live if not t.is_complex() and t.dim() >= 2 and t.shape[-1] >= 2 and t.numel()]
        if not fit:
            n, t = live[0]
            raise BackwardError(f"ce needs a classifier-shaped output (batch, …, classes) with at least 2 classes; "
                                f"{n} has shape [{', '.join(map(str, t.shape))}]: use sum, mean or mse")
        n, t = fit[0]
        logits = t.reshape(-1, t.shape[-1]).float()
        target = torch.randint(0, t.shape[-1], (logits.shape[0],), generator=generator,
                               device="cpu" if generator is None else generator.device).to(t.device)
        return F.cross_entropy(logits, target), f"cross-entropy of {n} ({t.shape[-1]} classes) against random targets"
    terms = []
    for _, t in live:
        x = t.abs() if t.is_complex() else t
        x = x if x.dtype in (torch.float32, torch.float64) else x.float()  # half sums overflow
        terms.append(x.sum() if loss == "sum" else x.mean() if loss == "mean" else x.pow(2).mean())
    shown = ", ".join(n for n, _ in live[:3]) + (f" and {len(live) - 3} more" if len(live) > 3 else "")
    return sum(terms[1:], terms[0]), f"{LOSSES[loss]} of {shown}"


def grad_norms(model) -> dict[str, float]:
    """The L2 norm of every parameter's grad, by every name of the parameter (tied names share one)."""
    import torch

    from modeltui.core.describe import walk_modules

    names: dict[int, list[str]] = {}
    grads: dict[int, Any] = {}
    for path, mod in walk_modules(model):
        for attr, p in mod._parameters.items():
            if p is None or p.grad is None or is_lazy(p):
                continue
            names.setdefault(id(p), []).append(f"{path}.{attr}" if path else attr)
            grads[id(p)] = p.grad
    if not grads:
        return {}
    keys = list(grads)
    by_device: dict[Any, list[int]] = {}
    for k in keys:
        by_device.setdefault(grads[k].device, []).append(k)
    out: dict[str, float] = {}
    for group in by_device.values():
        values = torch.stack([torch.linalg.vector_norm(_dense(grads[k]), dtype=torch.float32) for k in group]).tolist()
        for k, v in zip(group, values):
            for n in names[k]:
                out[n] = v
    return out


def _dense(g):
    return g.coalesce().values() if g.is_sparse else g


def module_grad_norms(model, paths, norms: dict[str, float]) -> dict[str, float]:
    """For each module path in ``paths``: the norm over the grads of its subtree's parameters (tied once)."""
    from modeltui.core.describe import walk_modules

    wanted = set(paths)
    by_id: dict[int, float] = {}
    for path, mod in walk_modules(model):
        for attr, p in mod._parameters.items():
            name = f"{path}.{attr}" if path else attr
            if p is not None and name in norms:
                by_id[id(p)] = norms[name]
    out: dict[str, float] = {}
    for path, mod in walk_modules(model):
        if path in wanted and path not in out:
            values = [by_id[id(p)] for p in mod.parameters() if id(p) in by_id]
            if values:
                out[path] = math.sqrt(sum(v * v for v in values))
    return out


def run_backward(
    model,
    specs: list[InputSpec],
    loss: str = "sum",
    *,
    accumulate: bool = False,
    seed: int | None = 0,
    run: ForwardRun | None = None,
    should_stop: Callable[[], bool] | None = None,
    device=None,
    record: bool = True,
    norms: bool = True,
) -> ForwardResult:
    """A forward pass with activation statistics, then ``loss.backward()``; grad norms in the result.

    Raises :class:`BackwardError` before running anything when it cannot
    run; any later failure is in ``result.error`` (as for
    :func:`~modeltui.core.forward.run_forward`) with every grad put back as
    it was. ``record=False, norms=False`` is the bare pass (a baseline).
    """
    import torch

    check_backward(model, loss)
    params = {id(p): p for p in model.parameters()}.values()
    before = [(p, p.grad) for p in params]
    for p in params:
        if p.requires_grad:
            p.grad = None

    def backward(out, result: ForwardResult) -> None:
        gen = None
        if seed is not None:
            dev = next((t.device for t in _outputs(out)), torch.device("cpu"))
            gen = torch.Generator(device=dev if dev.type in ("cpu", "cuda") else "cpu").manual_seed(seed + 1)
        value, note = make_loss(out, loss, gen)
        value.backward()
        result.loss, result.loss_note = float(value.detach()), note

    try:
        result = run_forward(model, specs, seed=seed, record=record, run=run, should_stop=should_stop,
                             device=device, then=backward)
        if result.ok and accumulate:
            try:
                _add_back(before)
            except BackwardError as e:
                result.error = str(e)
    except BaseException:
        _put_back(before)
        raise
    result.loss_kind, result.accumulated = loss, accumulate
    if not result.ok:
        _put_back(before)
        result.loss = None
        if result.oom:
            result.error = f"out of memory during the forward or backward pass ({result.error}); try a smaller input"
        if result.error != "cancelled":
            result.error += "; the model and its grads are as they were"
        _free_cache(model)
        return result
    if norms:
        result.grad_norms = grad_norms(model)
        if record:
            result.module_grad_norms = module_grad_norms(model, result.order, result.grad_norms)
    return result


def _outputs(out):
    tensors: list = []
    _tensors_in(out, "", tensors, [])
    return tensors


def _add_back(before) -> None:
    """Accumulate: add the grads there were before to the new ones (checked first, so all or nothing)."""
    for p, old in before:
        new = p.grad
        if old is not None and new is not None and (old.shape != new.shape or old.device != new.device):
            raise BackwardError(f"cannot accumulate: a grad of shape [{', '.join(map(str, old.shape))}] on {old.device} "
                                f"does not fit the new one; clear the grads first")
    for p, old in before:
        if old is None:
            continue
        if p.grad is None:
            p.grad = old
        else:
            p.grad.add_(old)


def _put_back(before) -> None:
    for p, old in before:
        p.grad = old


def _free_cache(model) -> None:
    """After a failure (out of memory above all), give the allocator's cached blocks back."""
    import torch

    if torch.cuda.is_available() and any(p.is_cuda for p in model.parameters()):
        torch.cuda.empty_cache()


def zero_grads(model) -> int:
    """Clear every parameter's grad (set it to None, as ``optimizer.zero_grad()`` does); returns how many had one."""
    count = 0
    for p in {id(p): p for p in model.parameters()}.values():
        if p.grad is not None:
            p.grad = None
            count += 1
    return count
