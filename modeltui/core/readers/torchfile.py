"""Read ``torch.save`` files (``.pt .pth .bin .ckpt``) without running their code.

The zip format is memory-mapped (``torch.load(mmap=True, weights_only=True)``);
the legacy format and compressed zips cannot be mapped and are read whole.
``weights_only`` is always passed explicitly, so an environment variable can
never switch the safe unpickler off; ``--trust`` is the only way.

The loaded object may be a flat state_dict, a training checkpoint with the
weights inside (Lightning's ``{"state_dict": ..., "epoch": ...}``), a list or
tuple of tensors (:mod:`modeltui.core.readers.containers` finds them), or (only
with ``--trust``) a whole pickled module.
"""

from __future__ import annotations

import importlib
import os
import pickle
import struct
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modeltui.core.errors import CheckpointError, UnsafeCheckpointError, first_line
from modeltui.core.readers.base import Listing, TensorSource, _paths
from modeltui.core.readers.filewatch import Region, WatchedFile, mapped_regions, register, unregister
from modeltui.core.readers.containers import MAX_NESTING, MAX_VISITS, Container, FoundWeights, find_state_dict, locate_weights, summarize
from modeltui.core.readers.pickle_scan import MAX_PICKLE_BYTES, PickleTooLarge, pickle_globals, torch_allowed_globals, zip_pickle_globals
from modeltui.core.structure import ModelInfo, from_state_dict_entries

if TYPE_CHECKING:
    from torch import nn

PT_EXTS = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar")

__all__ = ["MAX_NESTING", "PT_EXTS", "read_torch", "DictSource", "PtFile", "ensure_cwd_importable", "find_state_dict", "locate_weights", "read_pt",
           "result_from_object", "short_reason", "state_dict_info", "summarize"]


@dataclass
class PtFile:
    """What a ``torch.save`` file held: a module, or tensors and where they sat."""

    info: ModelInfo
    module: nn.Module | None = None  # a pickled nn.Module (only with --trust)
    tensors: dict[str, Any] = field(default_factory=dict)  # flat name -> tensor
    container: Container | None = None  # when the weights sit in a bigger object
    zip: bool = False  # a zip archive (its tensors may be mapped from it), not a legacy pickle read whole


def ensure_cwd_importable() -> None:
    """Make the current folder importable, as uvicorn and flask do (for import paths and pickled classes)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _torch():
    import torch

    return torch


def short_reason(e: BaseException) -> str:
    """The informative start of a reader's message (torch's zip errors run on for lines)."""
    text = first_line(e)
    cut = text.find(". This is an internal miniz error")
    return text[:cut] if cut > 0 else text


# ---------------------------------------------------------------- refusals


def _refusal(path: str, found: list[str], detail: str = "") -> UnsafeCheckpointError:
    name = os.path.basename(path)
    what = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    msg = f"{name}: refused to load: the file's pickle asks for code that could run on load"
    msg += f" ({what})" if what else (f" ({detail})" if detail else "")
    msg += f". Open it only if you trust where it came from: modeltui {path} --trust"
    return UnsafeCheckpointError(msg, found)


def _normalise(g: str) -> str:
    """The Python 3 name an unpickler resolves ``g`` to (protocol <= 2 pickles use Python 2 names:
    ``__builtin__.exec`` is ``builtins.exec``, ``commands.call`` is ``subprocess.call``)."""
    import _compat_pickle

    mod, _, name = g.rpartition(".")
    if (mod, name) in _compat_pickle.NAME_MAPPING:
        mod, name = _compat_pickle.NAME_MAPPING[(mod, name)]
    elif mod in _compat_pickle.IMPORT_MAPPING:
        mod = _compat_pickle.IMPORT_MAPPING[mod]
    return f"{mod}.{name}" if mod else name


def _pickle_globals(path: str, is_zip: bool) -> list[str]:
    if is_zip:
        return zip_pickle_globals(path)
    with open(path, "rb") as f:
        return pickle_globals(f, max_pickles=4)


def _unsafe_globals(path: str, is_zip: bool) -> list[str]:
    try:
        found = _pickle_globals(path, is_zip)
    except PickleTooLarge as e:
        raise CheckpointError(
            f"{os.path.basename(path)}: its pickle is {e.size / 2**20:,.0f} MB, far more than a list of tensors needs "
            f"(at most {MAX_PICKLE_BYTES >> 20} MB); refused. Open it only if you trust where it came from: --trust"
        ) from None
    except Exception:  # unreadable here: torch's own allow-list still decides
        return []
    allowed = torch_allowed_globals()
    if not allowed:
        return []
    out = []
    for g in map(_normalise, found):
        if g not in allowed and g not in out:
            out.append(g)
    return out


def _import_pickled_modules(path: str, is_zip: bool) -> None:
    """Under ``--trust``: import the modules the pickle names first, so a module
    that fails on import is reported as such, not as a corrupt file."""
    try:
        found = _pickle_globals(path, is_zip)
    except Exception:
        return
    for g in found:
        mod = _normalise(g).rpartition(".")[0]
        if not mod or mod in sys.modules:
            continue
        try:
            importlib.import_module(mod)
        except ImportError:
            continue  # torch.load names it, with the hint about the folder
        except (Exception, SystemExit) as e:
            what = f"called sys.exit({e.code})" if isinstance(e, SystemExit) else f"failed: {type(e).__name__}: {first_line(e)}"
            raise CheckpointError(
                f"{os.path.basename(path)}: importing module '{mod}', which the pickled object needs, {what}"
            ) from None


# ---------------------------------------------------------------- reading


def read_pt(path: str, *, trust: bool, label: str) -> PtFile:
    """Load a ``torch.save`` file safely (code runs only with ``trust``)."""
    torch = _torch()
    name = os.path.basename(path)
    is_zip = zipfile.is_zipfile(path)
    warnings: list[str] = []
    mmap = is_zip
    if is_zip:
        try:
            with zipfile.ZipFile(path) as z:
                infos = z.infolist()
        except Exception as e:  # BadZipFile, NotImplementedError ("zip file version 6.4"), struct.error...
            raise CheckpointError(f"{name}: corrupt zip archive ({e})") from None
        names = [i.filename for i in infos]
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            if not trust:
                raise _refusal(path, [], "a TorchScript archive carries code")
            try:
                m = torch.jit.load(path, map_location="cpu")
            except Exception as e:
                raise CheckpointError(f"{name}: cannot load TorchScript archive: {e}") from None
            return _module_result(m, label)
        if any(i.compress_type != zipfile.ZIP_STORED and "/data/" in i.filename for i in infos):
            # a mapped compressed record would be read as its compressed bytes
            mmap = False
            warnings.append(f"{name} is a compressed zip archive: it cannot be memory-mapped, so its data was read into memory")
    else:
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            raise CheckpointError(f"{name}: corrupt or truncated zip archive (its table of contents is missing or damaged)")
        if not head or head[0] != 0x80:
            raise CheckpointError(f"{name}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
        warnings.append(f"{name} is in the legacy (non-zip) format: its data was read into memory")
    if trust:
        ensure_cwd_importable()
        _import_pickled_modules(path, is_zip)
    else:
        found = _unsafe_globals(path, is_zip)
        if found:
            raise _refusal(path, found)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust, mmap=mmap)
    except pickle.UnpicklingError as e:
        if trust:
            raise CheckpointError(f"{name}: cannot unpickle: {first_line(e)}") from None
        found, reason = _unsafe_globals(path, is_zip), _weights_only_reason(e)
        if found or "global" in reason.lower():
            raise _refusal(path, found, reason) from None
        raise CheckpointError(f"{name}: corrupt checkpoint: its pickle cannot be read ({reason})") from None
    except (AttributeError, ImportError) as e:
        if trust:
            raise CheckpointError(
                f"{name}: the pickled object needs code that is not importable here ({first_line(e)}); "
                "run modeltui from the folder that defines it, or load its weights onto the architecture: modeltui pkg.mod:Net -w FILE"
            ) from None
        raise CheckpointError(f"{name}: corrupt or unreadable checkpoint ({type(e).__name__}: {first_line(e)})") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError, IndexError, TypeError, struct.error) as e:
        raise CheckpointError(f"{name}: corrupt or truncated checkpoint ({type(e).__name__}: {short_reason(e)})") from None
    except Exception as e:
        if trust:
            raise CheckpointError(f"{name}: loading failed: {type(e).__name__}: {first_line(e)}") from None
        raise CheckpointError(f"{name}: corrupt or unreadable checkpoint ({type(e).__name__}: {first_line(e)})") from None
    result = result_from_object(obj, path, label, warnings, trust=trust)
    result.zip = is_zip
    return result


def _weights_only_reason(e: BaseException) -> str:
    for line in str(e).splitlines():
        line = line.strip()
        if "Unsupported" in line or "not an allowed global" in line:
            return line.removeprefix("WeightsUnpickler error: ")[:300]
    return first_line(e)


def _module_result(module, label: str) -> PtFile:
    from modeltui.core.describe import from_module

    info, _ = from_module(module, label)
    return PtFile(info, module)


def result_from_object(obj: Any, path: str, label: str, warnings: list[str], *, trust: bool = False) -> PtFile:
    """Describe a loaded checkpoint object: a module, or the tensors found in it."""
    torch = _torch()
    if isinstance(obj, torch.nn.Module):
        result = _module_result(obj, label)
        result.info.warnings.extend(warnings)
        return result
    found = locate_weights(obj)
    name = os.path.basename(path)
    if not found.flat:
        why = f"holds no tensors (a {type(obj).__name__})"
        if found.too_deep:
            why = f"holds no tensors in the first {MAX_NESTING} levels of nesting (a {type(obj).__name__} that nests deeper; modeltui searches {MAX_NESTING} levels)"
        elif found.cut_short:
            why = f"holds no tensors in the first {MAX_VISITS:,} entries it searched (a {type(obj).__name__})"
        raise CheckpointError(f"{name}: {why}")
    metadata = dict(found.metadata)
    if found.key:
        metadata["weights_key"] = ".".join(map(str, found.key))
    if found.too_deep:
        warnings.append(f"entries nested deeper than {MAX_NESTING} levels were not searched for tensors")
    if found.cut_short:
        warnings.append(f"the search for tensors stopped after {MAX_VISITS:,} entries; some may be missing")
    if found.clashes:
        warnings.append(f"{found.clashes} tensor(s) not listed: their dotted name is already taken by another tensor")
    info = state_dict_info(label, found.flat, metadata=metadata, warnings=warnings)
    container = None
    if _needs_container(obj, found, torch):
        from modeltui.core.readers.containers import Container

        container = Container(os.path.abspath(path), obj, found.key, dict(found.names), trusted=trust)
    return PtFile(info, None, found.flat, container)


def _needs_container(obj: Any, found: FoundWeights, torch) -> bool:
    """False for a plain flat state_dict (string keys, only tensors).

    A bare tensor (the book's ``torch.save(x, 'x-file')``) gets one, so a
    save to a torch file writes a tensor again, not ``{"tensor": x}``.
    """
    if isinstance(obj, Mapping) and not found.key:
        return not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    return True


def state_dict_info(label: str, flat: Mapping[str, Any], *, metadata=None, warnings=None) -> ModelInfo:
    """The key tree of a ``name -> tensor`` mapping, with shared storage tied."""
    from modeltui.core.tensors import dtype_name, tensor_identity

    entries = [(k, tuple(t.shape), dtype_name(t.dtype), str(t.device)) for k, t in flat.items()]
    keys = {k: tensor_identity(t) for k, t in flat.items()}
    return from_state_dict_entries(label, entries, storage_keys=keys, metadata=metadata, warnings=warnings)


def read_torch(path: str, *, trust: bool, label: str) -> Listing:
    """List a ``torch.save`` file: its tensors (values memory-mapped) or, with ``trust``, a pickled module."""
    pt: PtFile = read_pt(path, trust=trust, label=label)
    if pt.module is not None:
        return Listing(pt.info, pt.module)
    return Listing(pt.info, None, DictSource(pt.tensors, path if pt.zip else None), pt.container)


# ---------------------------------------------------------------- values


class DictSource(TensorSource):
    """Tensors already loaded (memory-mapped by ``torch.load(mmap=True)`` for zip ``.pt`` files).

    ``path`` names the zip file (or the zip shard files) they came from, as
    :func:`read_pt` found them. Each is kept open, so :meth:`check` sees a
    truncation or a rewrite in place, and the mappings torch made are
    registered so unedited values are read with ``pread``. A legacy (non-zip)
    file was read whole: it is not passed, nothing to watch.
    """

    def __init__(self, tensors: Mapping[str, Any], path: str | list[str] | tuple[str, ...] | None = None):
        self.tensors = tensors
        self.files: list[WatchedFile] = []
        self._regions: list[Region] = []
        for p in _paths(path):
            try:
                self.files.append(WatchedFile(p))
            except OSError:
                continue
        if self.files:
            addresses = _storage_addresses(tensors.values())
            for f in self.files:
                self._regions.extend(mapped_regions(f.path, f, addresses))
            register(self, self._regions)

    def get(self, name: str):
        return self.tensors[name]

    def check(self) -> None:
        for f in self.files:
            f.check()

    def close(self) -> None:
        unregister(self._regions)
        self._regions = []
        for f in self.files:
            f.close()


def _storage_addresses(tensors) -> list[int]:
    import torch

    out = set()
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type == "cpu" and not t.is_sparse and not t.is_quantized:
            try:
                ptr = t.untyped_storage().data_ptr()
            except (RuntimeError, NotImplementedError):
                continue
            if ptr:
                out.add(ptr)
    return list(out)
