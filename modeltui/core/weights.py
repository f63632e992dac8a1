"""Load a checkpoint's tensors onto a model: ``-w/--weights`` and the ``w`` key.

What fits is copied into the model's own tensors (so tied parameters stay
tied); everything that does not fit is reported: keys missing from the file,
keys the model lacks, mis-shaped keys, and dtype casts. A key the file lacks
whose parameter is tied to a key it has is loaded through that key, not
missing. Uninitialised lazy parameters take the file's shapes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from modeltui.core.errors import CheckpointError, ModelTuiError, TargetError, first_line
from modeltui.core.tensors import is_lazy, same_bits

# mantissa bits (with the implicit one) of float dtypes: integers up to 2**bits are exact
_MANTISSA = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}


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
    tied: list[tuple[str, str]] = field(default_factory=list)  # (name the file lacks, tied name that loaded it)
    cast: list[tuple[str, str, str]] = field(default_factory=list)  # (name, file dtype, model dtype)
    materialised: list[str] = field(default_factory=list)  # lazy parameters given the file's shapes
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (name not loaded, tied name whose different values were)

    @property
    def fits(self) -> bool:
        """True when every key of the model and of the file found its match (as ``strict=True`` wants)."""
        return not (self.missing or self.unexpected or self.mismatched or self.conflicts)

    def lines(self) -> list[str]:
        """The report as warning lines (names raw: the caller makes them visible)."""
        base = os.path.basename(self.path)
        out = []
        if self.missing:
            out.append(f"{self.label}: {len(self.missing)} key(s) of the model are missing from {base}: {_few(self.missing)}")
        if self.unexpected:
            out.append(f"{self.label}: {len(self.unexpected)} unexpected key(s) in {base} ignored: {_few(self.unexpected)}")
        if self.note:
            out.append(f"{self.label}: {self.note}")
        for name, ms, fs in self.mismatched[:10]:
            out.append(f"{self.label}: '{name}' not loaded: the model has shape {list(ms)}, the file {list(fs)}")
        if len(self.mismatched) > 10:
            out.append(f"{self.label}: {len(self.mismatched) - 10} more mis-shaped key(s) not loaded")
        for name, kept in self.conflicts[:10]:
            out.append(f"{self.label}: '{name}' is tied to '{kept}' in the model but its values differ in {base}: "
                       f"'{kept}' was loaded, '{name}' ignored")
        if len(self.conflicts) > 10:
            out.append(f"{self.label}: {len(self.conflicts) - 10} more tied name(s) with different values ignored")
        casts: dict[tuple[str, str], list[str]] = {}
        for name, src, dst in self.cast:
            casts.setdefault((src, dst), []).append(name)
        for (src, dst), names in casts.items():
            how = "exact" if cast_is_exact(src, dst) else "loses precision or range"
            out.append(f"{self.label}: {len(names)} tensor(s) cast from {src} (file) to {dst} (model) on load, {how}: {_few(names)}")
        return out

    def misfit(self) -> str:
        """One line saying why the weights do not fit (for a strict, headless run)."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} key(s) of the model missing from the file ({_few(self.missing, 3)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s) ({_few(self.unexpected, 3)})")
        if self.mismatched:
            name, ms, fs = self.mismatched[0]
            more = f" and {len(self.mismatched) - 1} more" if len(self.mismatched) > 1 else ""
            parts.append(f"{len(self.mismatched)} mis-shaped key(s) ('{name}': model {list(ms)}, file {list(fs)}{more})")
        if self.conflicts:
            name, kept = self.conflicts[0]
            more = f" and {len(self.conflicts) - 1} more" if len(self.conflicts) > 1 else ""
            parts.append(f"{len(self.conflicts)} tied name(s) with other values in the file than the name they are tied to "
                         f"('{name}' differs from '{kept}'{more})")
        return f"{self.label} {os.path.basename(self.path)} does not fit the model: " + "; ".join(parts)


def _few(names: list[str], n: int = 5) -> str:
    s = ", ".join(names[:n])
    return s + (f" and {len(names) - n} more" if len(names) > n else "")


def cast_is_exact(src: str, dst: str) -> bool:
    """True when every value of dtype ``src`` survives a cast to ``dst`` (both torch names)."""
    import torch

    a, b = getattr(torch, src, None), getattr(torch, dst, None)
    if not isinstance(a, torch.dtype) or not isinstance(b, torch.dtype):
        return False
    if a == b or a == torch.bool:
        return True
    try:
        if torch.promote_types(a, b) != b:
            return False
    except RuntimeError:
        return False
    if not (a.is_floating_point or a.is_complex) and b.is_floating_point:
        return torch.iinfo(a).bits - (0 if not a.is_signed else 1) <= _MANTISSA.get(dst, 0)
    return True


def materialise_from_shapes(model, shapes: dict[str, tuple]) -> list[str]:
    """Give uninitialised lazy parameters and buffers the shapes ``shapes`` names.

    A lazy layer whose tensors are then all initialised gets its sizes
    (``in_features``...) from them and its default initialisation, as a
    forward pass would give it. Returns the names materialised.
    """
    import torch
    from torch.nn.modules.lazy import LazyModuleMixin

    from modeltui.core.describe import walk_modules

    done: list[str] = []
    seen: set[int] = set()
    with torch.no_grad():
        for path, mod in walk_modules(model):
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            touched = False
            for attr, t in list(mod._parameters.items()) + list(mod._buffers.items()):
                key = f"{path}.{attr}" if path else attr
                if is_lazy(t) and key in shapes:
                    t.materialize(tuple(shapes[key]))
                    done.append(key)
                    touched = True
            if touched and isinstance(mod, LazyModuleMixin) and not mod.has_uninitialized_params():
                _infer_sizes(mod)
                if hasattr(mod, "reset_parameters"):
                    mod.reset_parameters()
    return done


def _infer_sizes(mod) -> None:
    """Set the size a lazy layer would learn from its first input, from its materialised weight."""
    from torch import nn

    w = getattr(mod, "weight", None)
    if isinstance(mod, nn.Linear) and w is not None and w.dim() == 2:
        mod.in_features = int(w.shape[1])
    elif isinstance(mod, nn.modules.conv._ConvTransposeNd) and w is not None:
        mod.in_channels = int(w.shape[0])
    elif isinstance(mod, nn.modules.conv._ConvNd) and w is not None:
        mod.in_channels = int(w.shape[1]) * mod.groups
    elif isinstance(mod, nn.modules.batchnorm._NormBase):
        ref = w if w is not None else getattr(mod, "running_mean", None)
        if ref is not None and ref.dim() == 1:
            mod.num_features = int(ref.shape[0])


def load_weights(model, path: str, *, trust: bool = False, label: str = "--weights") -> WeightsReport:
    """Load a checkpoint's tensors onto ``model`` in place, reporting misfits.

    Mis-shaped keys are skipped, never half-loaded; tied parameters stay
    tied because values are copied into the existing tensors. ``label``
    starts every message (the option's name on the command line).
    """

    from modeltui.core.readers import read_checkpoint
    from modeltui.core.tensors import dtype_name

    if not os.path.exists(path):
        raise TargetError(f"{label} {path}: no such file or folder")
    try:
        ck = read_checkpoint(path, trust=trust)
    except CheckpointError as e:
        raise TargetError(f"{label}: {e}") from None
    try:
        if ck.module is not None:
            file_tensors = dict(ck.module.state_dict())
            get = file_tensors.__getitem__
            file_shapes = {k: tuple(v.shape) for k, v in file_tensors.items()}
            file_dtypes = {k: dtype_name(v.dtype) for k, v in file_tensors.items()}
        else:
            get = ck.source.get
            file_shapes = {k: tuple(t.shape) for k, t in ck.info.tensors.items()}
            file_dtypes = {k: t.dtype for k, t in ck.info.tensors.items()}
        report = WeightsReport(path, label=label)
        report.materialised = materialise_from_shapes(model, file_shapes)
        own = model.state_dict(keep_vars=True)
        fits: set[str] = set()
        absent: list[str] = []
        to_load: dict[str, Any] = {}
        for k, t in own.items():
            if k not in file_shapes:
                absent.append(k)
                continue
            fs = file_shapes[k]
            if is_lazy(t):  # the file's shape did not take
                report.mismatched.append((k, (), fs))
                continue
            if tuple(t.shape) != fs:
                report.mismatched.append((k, tuple(t.shape), fs))
                continue
            fits.add(k)
            if file_dtypes[k] != dtype_name(t.dtype):
                report.cast.append((k, file_dtypes[k], dtype_name(t.dtype)))
            if not t.is_meta:
                to_load[k] = get(k)
        # two names of one tied tensor with different values in the file: the first name's are loaded, never a mix
        first_of: dict[int, str] = {}
        for k in list(to_load):
            kept = first_of.setdefault(id(own[k]), k)
            if kept != k and not same_bits(to_load[k], to_load[kept]):
                report.conflicts.append((k, kept))
                del to_load[k]
        # a name the file lacks is not missing when its parameter is tied to a name that loads
        loaded_by: dict[int, str] = {}
        for k in fits:
            loaded_by.setdefault(id(own[k]), k)
        for k in absent:
            via = loaded_by.get(id(own[k]))
            if via is not None:
                report.tied.append((k, via))
            else:
                report.missing.append(k)
        report.unexpected = [k for k in file_shapes if k not in own]
        if any(t.is_meta for t in own.values()):
            report.note = "on the meta device names and shapes are checked, values are not loaded"
        try:
            model.load_state_dict(to_load, strict=False)
        except Exception as e:
            raise TargetError(f"{label}: loading {os.path.basename(path)} failed: {first_line(e)}") from None
        report.loaded = list(to_load)
        return report
    finally:
        if ck.source is not None:
            ck.source.close()


def load_weights_into(session, path: str, *, trust: bool = False) -> WeightsReport:
    """Load a checkpoint onto the session's model as one undoable edit; returns the WeightsReport.

    Only the tensors that will receive values are copied for undo (the file's
    listing is read first, which costs about what its header costs).
    Uninitialised lazy parameters first take the file's shapes and their
    layer's default initialisation, as a forward pass would give them; that
    step is not undone: undo restores those default values, and the layers
    stay materialised.
    """
    from modeltui.core.readers import read_checkpoint
    from modeltui.core.session import EditError

    path = os.path.expanduser(path.strip())
    if not path:
        raise EditError("give the checkpoint's path, e.g. runs/last.ckpt or model.safetensors")
    if not os.path.exists(path):
        raise EditError(f"{path}: no such file or folder")
    try:
        ck = read_checkpoint(path, trust=trust)
    except ModelTuiError as e:
        raise EditError(str(e)) from None
    if ck.source is not None:
        ck.source.close()
    if ck.module is not None:
        shapes = {k: tuple(v.shape) for k, v in ck.module.state_dict().items()}
    else:
        shapes = {k: tuple(t.shape) for k, t in ck.info.tensors.items()}
    grown: list[str] = []
    with session.lock:
        if any(t.shape is None for t in session.opened.info.tensors.values()):
            try:
                grown = materialise_from_shapes(session.model, shapes)
            except Exception as e:
                raise EditError(f"giving the lazy layers the shapes of {os.path.basename(path)} failed: {type(e).__name__}: {first_line(e)}") from None
            if grown:
                session.note(f"materialised {len(grown)} lazy parameter(s) from the shapes in {os.path.basename(path)}")
        info = session.opened.info
        names = [n for n, t in info.tensors.items() if n in shapes and t.shape is not None and shapes[n] == tuple(t.shape)]
        if not names:
            raise EditError(f"{os.path.basename(path)} has no tensor whose name and shape fit this model "
                            f"(it has {len(shapes)} tensors, e.g. '{next(iter(shapes), '')}')")
        desc = f"load weights from {os.path.basename(path)} ({len(names)} tensors)"
        report = session.apply(desc, names, lambda: load_weights(session.model, path, trust=trust, label="weights"))
    report.materialised = grown + report.materialised
    return report
