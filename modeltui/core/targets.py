"""Turn a TARGET string and the command-line options into an opened model.

A TARGET is an import path (``pkg.mod:attr``, ``path/file.py:attr``, dotted
``attr.sub``), a checkpoint file or folder, or nothing (the bundled demo).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modeltui.core.errors import ModelTuiError, TargetError
from modeltui.core.forward import model_device
from modeltui.core.inputs import InputSpec
from modeltui.core.readers.torchfile import ensure_cwd_importable
from modeltui.core.request import DEMO_IMPORT, OpenRequest, classify_target
from modeltui.core.structure import ModelInfo
from modeltui.core.weights import WeightsReport, load_weights

if TYPE_CHECKING:
    from torch import nn

    from modeltui.core.forward import ForwardResult
    from modeltui.core.readers.base import TensorSource
    from modeltui.core.readers.containers import Container

__all__ = ["DEMO_TARGET", "OpenRequest", "Opened", "WeightsReport", "classify_target", "import_object", "build_module",
           "load_weights", "open_module", "open_request", "open_target"]

DEMO_TARGET = DEMO_IMPORT


@dataclass
class Opened:
    """An opened target: its description plus what gives its values."""

    info: ModelInfo
    model: nn.Module | None = None  # None for a checkpoint without an architecture
    source: TensorSource | None = None  # gives a checkpoint's values
    tensors: dict[str, Any] = field(default_factory=dict)  # name -> tensor for a module
    weights: WeightsReport | None = None
    device: str = "cpu"
    # a training checkpoint's whole object (epoch, optimizer state...), kept for saving back
    container: Container | None = None
    path: str | None = None  # absolute path of the checkpoint file or folder (None for an import path)
    # the forward pass run at start with -i (per-module output shapes for the tree), or None
    forward: ForwardResult | None = None
    # an architecture's key surgery: state_dict name -> the name a save writes (None: not saved); see core.keys
    keys: dict[str, str | None] = field(default_factory=dict)

    def tensor(self, name: str):
        """The values of tensor ``name`` (read from the file when needed)."""
        if name in self.tensors:
            return self.tensors[name]
        if self.source is not None:
            return self.source.get(name)
        raise KeyError(name)

    def refresh(self) -> None:
        """Rebuild ``info`` after the model changed (module targets only)."""
        if self.model is not None:
            from modeltui.core.describe import from_module

            old = self.info
            self.info, self.tensors = from_module(self.model, old.label)
            self.info.metadata = old.metadata
            keep = [w for w in old.warnings if "lazy parameter" not in w]
            self.info.warnings = keep + [w for w in self.info.warnings if w not in keep]
            self.info.saved_keys = dict(self.keys)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def import_object(target: str) -> Any:
    """Resolve ``pkg.mod:attr`` or ``path/file.py:attr.sub`` to the object."""
    left, _, attr = target.rpartition(":")
    if not attr:
        raise TargetError(f"'{target}': nothing after ':' (expected pkg.module:attr)")
    ensure_cwd_importable()
    if left.endswith(".py") or os.sep in left or "/" in left:
        path = os.path.abspath(left)
        if not os.path.isfile(path):
            raise TargetError(f"{left}: no such Python file")
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        modname = "_modeltui_target_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"{left}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        try:
            spec.loader.exec_module(module)
        except KeyboardInterrupt:
            sys.modules.pop(modname, None)
            raise
        except BaseException as e:
            sys.modules.pop(modname, None)
            raise _import_failure(left, e) from None
    else:
        try:
            module = importlib.import_module(left)
        except ModuleNotFoundError as e:
            if e.name and (left == e.name or left.startswith(e.name + ".")):
                raise TargetError(f"cannot import module '{left}': no module named '{e.name}' (is the current folder the project root?)") from None
            raise _import_failure(left, e) from None
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            raise _import_failure(left, e) from None
    obj: Any = module
    walked = []
    for part in attr.split("."):
        walked.append(part)
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = left + (":" + ".".join(walked[:-1]) if len(walked) > 1 else "")
            raise TargetError(f"'{where}' has no attribute '{part}'") from None
    return obj


def _import_failure(what: str, e: BaseException) -> TargetError:
    if isinstance(e, SystemExit):
        return TargetError(f"importing '{what}' called sys.exit({e.code})")
    return TargetError(f"importing '{what}' failed: {type(e).__name__}: {e}")


def build_module(obj: Any, target: str, device: str | None):
    """Make an ``nn.Module`` from an instance, a subclass or a factory."""
    import torch
    from torch import nn

    def build(fn, what):
        try:
            if device == "meta":
                with torch.device("meta"):
                    return fn()
            return fn()
        except ModelTuiError:
            raise
        except Exception as e:
            raise TargetError(f"{what} '{target}' failed: {type(e).__name__}: {e}") from None

    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, type):
        if not issubclass(obj, nn.Module):
            raise TargetError(f"'{target}' is the class {obj.__name__}, which is not an nn.Module subclass")
        model = build(obj, "building")
        return model
    if callable(obj):
        model = build(obj, "calling")
        if not isinstance(model, nn.Module):
            raise TargetError(f"'{target}' returned a {type(model).__name__}, not an nn.Module")
        return model
    raise TargetError(
        f"'{target}' is a {type(obj).__name__}, not an nn.Module, an nn.Module subclass or a function returning one"
    )


def _empty_build(obj: Any, model) -> str | None:
    """A warning when a class built with no arguments came out empty although it takes some."""
    import inspect

    from torch import nn

    if not isinstance(obj, type) or model._modules or model._parameters or model._buffers:
        return None
    if obj.__init__ is nn.Module.__init__:
        return None  # no constructor of its own (nn.Module's takes *args for its own reasons)
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None
    if not params:
        return None
    shown = ", ".join(("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name for p in params)
    return (f"{obj.__name__} was built with no arguments and is empty (its constructor takes {shown}): "
            "point at an instance or a function that builds one with its arguments")


def open_target(
    target: str | None = None,
    *,
    weights: str | None = None,
    device: str | None = None,
    input_specs: list[InputSpec] | tuple[InputSpec, ...] = (),
    trust: bool = False,
    strict: bool = False,
) -> Opened:
    """Open a TARGET with the command-line options applied (see :func:`open_request`)."""
    return open_request(OpenRequest.make(target, weights=weights, device=device, input_specs=input_specs,
                                         trust=trust, strict=strict))


def open_request(request: OpenRequest) -> Opened:
    """Open what ``request`` names, with its options.

    ``request.strict`` (headless runs) refuses weights that do not fit: any
    key missing, unexpected or mis-shaped raises, as
    ``load_state_dict(strict=True)`` does; otherwise what fits is loaded and
    the rest reported. Raises :class:`TargetError` (with a user-facing
    message) for anything that cannot be opened; the caller decides how to
    show it.
    """
    from modeltui.core.devices import resolve_device

    ensure_cwd_importable()
    device, weights, input_specs = request.device, request.weights, request.input_specs
    dev = resolve_device(device) if device else None
    shown = request.label
    path = None
    warnings: list[str] = []
    if request.is_checkpoint:
        from modeltui.core.readers import read_checkpoint

        ck = read_checkpoint(request.target, trust=request.trust, label=shown)
        path = os.path.abspath(request.target)
        model = ck.module
        if model is None:
            info = ck.info
            if weights:
                raise TargetError("--weights needs an architecture as TARGET (pkg.module:attr), not a checkpoint")
            if input_specs:
                info.warnings.append("--input-shape ignored: a checkpoint without an architecture cannot run")
            if dev is not None and dev.type != "cpu":
                info.warnings.append(f"--device {device} ignored for a checkpoint without an architecture: its tensors stay where they were read")
            return Opened(info, None, ck.source, path=path, container=ck.container)
    else:
        obj = import_object(request.import_path)
        model = build_module(obj, request.import_path, dev.type if dev is not None else None)
        empty = _empty_build(obj, model)
        if empty:
            warnings.append(empty)
    opened = _prepare(model, shown, weights=weights, dev=dev, input_specs=input_specs, trust=request.trust,
                      strict=request.strict, strip_to_fit=request.strip_to_fit)
    opened.info.warnings[:0] = warnings
    opened.path = path
    return opened


def open_module(model, name: str = "model") -> Opened:
    """Open an ``nn.Module`` already in hand (scripts, notebooks, tests)."""
    return _prepare(model, name, weights=None, dev=None, input_specs=(), trust=False)


def _prepare(model, shown: str, *, weights, dev, input_specs, trust, strict: bool = False, strip_to_fit: bool = False) -> Opened:
    import torch

    warnings: list[str] = []
    if dev is not None:
        try:
            current = {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
            if dev.type == "meta":
                if current != {torch.device("meta")}:
                    model = model.to("meta")
            elif current != {dev}:
                model = model.to(dev)
        except Exception as e:
            raise TargetError(f"moving the model to {dev} failed: {type(e).__name__}: {e}") from None
    report = None
    if weights:
        report = load_weights(model, weights, trust=trust, auto_strip=strip_to_fit)
        if strict and not report.fits:
            raise TargetError(report.misfit() + "; pass --no-strict to go on with the keys that fit")
        warnings.extend(report.lines())
    result = None
    if input_specs:
        from modeltui.core.forward import run_forward

        try:
            result = run_forward(model, list(input_specs), device=dev)
        except ModelTuiError as e:
            raise TargetError(str(e)) from None
        if not result.ok:
            shapes = " and ".join(f"[{s}]" for s in input_specs)
            raise TargetError(f"forward pass with input {shapes} failed: {result.error}")
    from modeltui.core.describe import from_module

    info, tensors = from_module(model, shown)
    info.warnings = warnings + info.warnings
    if report is not None:
        info.metadata["weights"] = os.path.basename(report.path)
    opened = Opened(info, model, None, tensors, report, str(dev or model_device(model)))
    opened.forward = result
    return opened
