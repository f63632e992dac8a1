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
from typing import Any

from modeltui.core.errors import CheckpointError, ModelTuiError, TargetError, first_line
from modeltui.core.forward import model_device
from modeltui.core.inputs import InputSpec
from modeltui.core.structure import ModelInfo

DEMO_TARGET = "modeltui.demo:DemoNet"


@dataclass
class WeightsReport:
    """What ``--weights`` did: loaded keys and everything that did not fit."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # name, model shape, file shape
    note: str = ""
    label: str = "--weights"  # starts every line: the option's name on the command line

    def lines(self) -> list[str]:
        out = []
        if self.missing:
            out.append(f"{self.label}: {len(self.missing)} key(s) of the model are missing from {os.path.basename(self.path)}: {_few(self.missing)}")
        if self.unexpected:
            out.append(f"{self.label}: {len(self.unexpected)} unexpected key(s) in {os.path.basename(self.path)} ignored: {_few(self.unexpected)}")
        if self.note:
            out.append(f"{self.label}: {self.note}")
        for name, ms, fs in self.mismatched[:10]:
            out.append(f"{self.label}: '{name}' not loaded: the model has shape {list(ms)}, the file {list(fs)}")
        if len(self.mismatched) > 10:
            out.append(f"{self.label}: {len(self.mismatched) - 10} more mis-shaped key(s) not loaded")
        return out


def _few(names: list[str], n: int = 5) -> str:
    s = ", ".join(names[:n])
    return s + (f" and {len(names) - n} more" if len(names) > n else "")


@dataclass
class Opened:
    """An opened target: its description plus what gives its values."""

    info: ModelInfo
    model: Any = None  # nn.Module, or None for a bare checkpoint
    source: Any = None  # TensorSource for a checkpoint
    tensors: dict[str, Any] = field(default_factory=dict)  # name -> tensor for a module
    weights: WeightsReport | None = None
    device: str = "cpu"
    # a training checkpoint's whole object (epoch, optimizer state...), kept for saving back
    container: Any = None  # modeltui.core.container.Container | None
    path: str | None = None  # absolute path of the checkpoint file or folder (None for an import path)

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
            from modeltui.core.inspect import from_module

            old = self.info
            self.info, self.tensors = from_module(self.model, old.target)
            self.info.metadata = old.metadata
            keep = [w for w in old.warnings if "lazy parameter" not in w]
            self.info.warnings = keep + [w for w in self.info.warnings if w not in keep]

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def classify_target(target: str) -> str:
    """``"checkpoint"`` or ``"import"``; raises for something that is neither."""
    if os.path.exists(target):
        return "checkpoint"
    left, sep, _ = target.rpartition(":")
    if sep and left and not left.endswith(("/", "\\")):
        return "import"
    from modeltui.core.checkpoints import CHECKPOINT_EXTS

    if target.endswith(CHECKPOINT_EXTS + (".json",)) or os.sep in target or "/" in target:
        raise TargetError(f"{target}: no such file or folder")
    raise TargetError(
        f"'{target}' is neither an existing file or folder nor an import path (expected pkg.module:attr or file.py:attr)"
    )


def import_object(target: str) -> Any:
    """Resolve ``pkg.mod:attr`` or ``path/file.py:attr.sub`` to the object."""
    left, _, attr = target.rpartition(":")
    if not attr:
        raise TargetError(f"'{target}': nothing after ':' (expected pkg.module:attr)")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
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
    if isinstance(e, KeyboardInterrupt):
        return TargetError(f"importing '{what}' was interrupted")
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


def open_target(
    target: str | None = None,
    *,
    weights: str | None = None,
    device: str | None = None,
    input_specs: list[InputSpec] | tuple[InputSpec, ...] = (),
    trust: bool = False,
) -> Opened:
    """Open a TARGET with the command-line options applied.

    Raises :class:`TargetError` (with a user-facing message) for anything
    that cannot be opened; the caller decides how to show it.
    """
    from modeltui.core.devices import resolve_device

    dev = resolve_device(device) if device else None
    shown = target or "demo"
    if target is None:
        target = DEMO_TARGET
    kind = classify_target(target)
    if kind == "checkpoint":
        from modeltui.core.checkpoints import open_checkpoint

        info, model, source = open_checkpoint(target, trust=trust, target=shown)
        if model is None:
            if weights:
                raise TargetError("--weights needs an architecture as TARGET (pkg.module:attr), not a checkpoint")
            if input_specs:
                info.warnings.append("--input-shape ignored: a checkpoint without an architecture cannot run")
            if dev is not None and dev.type != "cpu":
                info.warnings.append(f"--device {device} ignored for a checkpoint without an architecture: its tensors stay where they were read")
            return Opened(info, None, source, path=os.path.abspath(target))
    else:
        obj = import_object(target)
        model = build_module(obj, target, dev.type if dev is not None else None)
    return _prepare(model, shown, weights=weights, dev=dev, input_specs=input_specs, trust=trust)


def open_module(model, name: str = "model") -> Opened:
    """Open an ``nn.Module`` already in hand (scripts, notebooks, tests)."""
    return _prepare(model, name, weights=None, dev=None, input_specs=(), trust=False)


def _prepare(model, shown: str, *, weights, dev, input_specs, trust) -> Opened:
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
        report = load_weights(model, weights, trust=trust)
        warnings.extend(report.lines())
    if input_specs:
        from modeltui.core.inputs import make_input

        where = dev or model_device(model)
        try:
            xs = [make_input(s, where, model) for s in input_specs]
        except Exception as e:
            raise TargetError(f"cannot make inputs {', '.join(map(str, input_specs))}: {e}") from None
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(*xs)
        except Exception as e:
            shapes = " and ".join(f"[{s}]" for s in input_specs)
            raise TargetError(f"forward pass with input {shapes} failed: {type(e).__name__}: {first_line(e)}") from None
        finally:
            model.train(was_training)
    from modeltui.core.inspect import from_module

    info, tensors = from_module(model, shown)
    info.warnings = warnings + info.warnings
    if report is not None:
        info.metadata["weights"] = os.path.basename(report.path)
    return Opened(info, model, None, tensors, report, str(dev or model_device(model)))


def load_weights(model, path: str, *, trust: bool = False, label: str = "--weights") -> WeightsReport:
    """Load a checkpoint's tensors onto ``model`` in place, reporting misfits.

    Mis-shaped keys are skipped, never half-loaded; tied parameters stay
    tied because values are copied into the existing tensors. ``label``
    starts every message (the option's name on the command line).
    """
    import torch

    from modeltui.core.checkpoints import open_checkpoint

    if not os.path.exists(path):
        raise TargetError(f"{label} {path}: no such file or folder")
    try:
        info, module, source = open_checkpoint(path, trust=trust)
    except CheckpointError as e:
        raise TargetError(f"{label}: {e}") from None
    if module is not None:
        file_tensors = dict(module.state_dict())
        get = file_tensors.__getitem__
        file_shapes = {k: tuple(v.shape) for k, v in file_tensors.items()}
    else:
        get = source.get
        file_shapes = {k: t.shape for k, t in info.tensors.items()}
    report = WeightsReport(path, label=label)
    own = model.state_dict(keep_vars=True)
    to_load: dict[str, Any] = {}
    for k, t in own.items():
        if k not in file_shapes:
            report.missing.append(k)
            continue
        fs = tuple(file_shapes[k])
        uninit = isinstance(t, torch.nn.parameter.UninitializedTensorMixin)
        if not uninit and tuple(t.shape) != fs:
            report.mismatched.append((k, tuple(t.shape), fs))
            continue
        if t.is_meta:
            continue
        to_load[k] = get(k)
    report.unexpected = [k for k in file_shapes if k not in own]
    if any(t.is_meta for t in own.values()):
        report.note = "on the meta device names and shapes are checked, values are not loaded"
    try:
        model.load_state_dict(to_load, strict=False)
    except Exception as e:
        raise TargetError(f"{label}: loading {os.path.basename(path)} failed: {first_line(e)}") from None
    report.loaded = list(to_load)
    if source is not None:
        source.close()
    return report
