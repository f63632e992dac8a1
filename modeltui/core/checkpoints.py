"""Open checkpoints of every supported format without reading tensor data.

- ``.safetensors``: the header only (``json`` + ``struct``), no torch needed.
- ``.pt .pth .bin .ckpt``: zip format with ``torch.load(mmap=True,
  weights_only=True)``; the legacy format cannot be mapped and is read whole.
- folders: ``*.index.json`` with shards, several ``*.safetensors``, or a
  ``torch.distributed.checkpoint`` folder (``.metadata``).

``weights_only`` is always passed explicitly, so an environment variable can
never switch the safe unpickler off; ``--trust`` is the only way.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

from modeltui.core.errors import CheckpointError, ModelTuiError, TargetError, UnsafeCheckpointError, first_line
from modeltui.core.pickle_scan import MAX_PICKLE_BYTES, PickleTooLarge, pickle_globals, torch_allowed_globals, zip_pickle_globals
from modeltui.core.safetensors_header import read_header
from modeltui.core.sources import DictSource, SafetensorsSource, TensorSource  # the sources live there; imported from here too
from modeltui.core.structure import ModelInfo, from_state_dict_entries

PT_EXTS = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar")
SAFETENSORS_EXTS = (".safetensors",)
CHECKPOINT_EXTS = PT_EXTS + SAFETENSORS_EXTS

# Keys under which training frameworks keep the weights, most likely first.
_WEIGHT_KEYS = (
    "state_dict", "model_state_dict", "model", "module", "net", "network",
    "weights", "params", "model_ema", "ema", "ema_model", "state",
)
_NOT_WEIGHTS = ("optim", "scheduler", "scaler", "lr_")


# TensorSource, DictSource and SafetensorsSource live in modeltui.core.sources (imported above).


# ---------------------------------------------------------------- dispatch


def open_checkpoint(path: str, *, trust: bool = False, target: str | None = None) -> tuple[ModelInfo, Any, TensorSource | None]:
    """Open ``path``: returns ``(info, module_or_None, tensor_source)``.

    A pickled full module (only with ``trust``) comes back as a module.
    """
    # Listing allocates one small object per tensor and module; the cyclic
    # GC would rescan them many times over for nothing (2x on big headers).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _open_checkpoint(path, trust=trust, target=target)
    except ModelTuiError:
        raise
    except MemoryError:
        raise CheckpointError(f"{os.path.basename(path)}: ran out of memory reading it (corrupt sizes?)") from None
    except Exception as e:
        # untrusted bytes reach zipfile, json, torch's readers: whatever they
        # raise on a corruption nobody foresaw becomes the same clean error
        raise CheckpointError(
            f"{os.path.basename(os.path.normpath(path))}: corrupt or unreadable checkpoint ({type(e).__name__}: {_short(e)})"
        ) from None
    finally:
        if was_enabled:
            gc.enable()


def _short(e: BaseException) -> str:
    """The informative start of a reader's message (torch's zip errors run on for lines)."""
    text = first_line(e)
    cut = text.find(". This is an internal miniz error")
    return text[:cut] if cut > 0 else text


def _open_checkpoint(path: str, *, trust: bool, target: str | None):
    target = target or path
    if os.path.isdir(path):
        return _open_folder(path, trust=trust, target=target)
    if not os.path.isfile(path):
        raise TargetError(f"{path}: not a file or folder")
    with open(path, "rb") as f:
        magic = f.read(8)
    if path.endswith(".index.json"):
        return _open_index(path, trust=trust, target=target)
    if path.endswith(SAFETENSORS_EXTS) or (not magic.startswith(b"PK") and _looks_like_safetensors(magic)):
        return _open_safetensors_files(target, [path])
    return _open_pt(path, trust=trust, target=target)


def _looks_like_safetensors(magic: bytes) -> bool:
    if len(magic) < 8:
        return False
    n = int.from_bytes(magic, "little")
    return 2 <= n < 100_000_000


# ---------------------------------------------------------------- safetensors


def _open_safetensors_files(target: str, paths: list[str], expected: dict[str, str] | None = None):
    entries = []
    files: dict[str, str] = {}
    aliases: dict[str, str] = {}
    metadata: dict[str, Any] = {}
    for p in paths:
        es, meta = read_header(p)
        names = set()
        for e in es:
            if e.name in files:
                raise CheckpointError(f"{os.path.basename(p)}: tensor '{e.name}' also appears in {os.path.basename(files[e.name])}")
            files[e.name] = p
            names.add(e.name)
            entries.append((e.name, e.shape, e.dtype, "cpu"))
        for k, v in meta.items():
            # safetensors' save_model records a deduplicated name -> kept name
            if v in names and k not in names and k not in ("format",):
                aliases[k] = v
            else:
                metadata[k] = v
    warnings: list[str] = []
    if expected is not None:
        missing = [k for k, f in expected.items() if k not in files and k not in aliases]
        if missing:
            warnings.append(f"index names {len(missing)} tensor(s) missing from their shards, e.g. '{missing[0]}'")
    info = from_state_dict_entries(target, entries, aliases=aliases, metadata=metadata, warnings=warnings, sort=True)
    return info, None, SafetensorsSource(files, aliases)


# ---------------------------------------------------------------- torch.save files


def _torch():
    import torch

    return torch


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


def _unsafe_globals(path: str, is_zip: bool) -> list[str]:
    try:
        if is_zip:
            found = zip_pickle_globals(path)
        else:
            with open(path, "rb") as f:
                found = pickle_globals(f, max_pickles=4)
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


def _open_pt(path: str, *, trust: bool, target: str):
    torch = _torch()
    name = os.path.basename(path)
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except Exception as e:  # BadZipFile, NotImplementedError ("zip file version 6.4"), struct.error...
            raise CheckpointError(f"{name}: corrupt zip archive ({e})") from None
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            if not trust:
                raise _refusal(path, [], "a TorchScript archive carries code")
            try:
                m = torch.jit.load(path, map_location="cpu")
            except Exception as e:
                raise CheckpointError(f"{name}: cannot load TorchScript archive: {e}") from None
            return _module_result(m, target)
    else:
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            raise CheckpointError(f"{name}: corrupt or truncated zip archive (its table of contents is missing or damaged)")
        if not head or head[0] != 0x80:
            raise CheckpointError(f"{name}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    if not trust:
        found = _unsafe_globals(path, is_zip)
        if found:
            raise _refusal(path, found)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust, mmap=is_zip)
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
        raise CheckpointError(f"{name}: corrupt or truncated checkpoint ({type(e).__name__}: {_short(e)})") from None
    except Exception as e:
        if trust:
            raise CheckpointError(f"{name}: loading failed: {type(e).__name__}: {first_line(e)}") from None
        raise CheckpointError(f"{name}: corrupt or unreadable checkpoint ({type(e).__name__}: {first_line(e)})") from None
    warnings = [] if is_zip else [f"{name} is in the legacy (non-zip) format: its data was read into memory"]
    return _result_from_object(obj, path, target, warnings)


def _weights_only_reason(e: BaseException) -> str:
    for line in str(e).splitlines():
        line = line.strip()
        if "Unsupported" in line or "not an allowed global" in line:
            return line.removeprefix("WeightsUnpickler error: ")[:300]
    return first_line(e)


def _module_result(module, target: str):
    from modeltui.core.inspect import from_module

    info, _ = from_module(module, target)
    return info, module, None


def _result_from_object(obj: Any, path: str, target: str, warnings: list[str]):
    torch = _torch()
    if isinstance(obj, torch.nn.Module):
        info, module, src = _module_result(obj, target)
        info.warnings.extend(warnings)
        return info, module, src
    flat, where, metadata = find_state_dict(obj)
    if not flat:
        raise CheckpointError(f"{os.path.basename(path)}: holds no tensors (a {type(obj).__name__})")
    if where:
        metadata["weights_key"] = where
    info = state_dict_info(target, flat, metadata=metadata, warnings=warnings)
    return info, None, DictSource(flat, path)


def state_dict_info(target: str, flat: Mapping[str, Any], *, metadata=None, warnings=None) -> ModelInfo:
    """The key tree of a ``name -> tensor`` mapping, with shared storage tied."""
    from modeltui.core.inspect import dtype_name, tensor_identity

    entries = [(k, tuple(t.shape), dtype_name(t.dtype), str(t.device)) for k, t in flat.items()]
    keys = {k: tensor_identity(t) for k, t in flat.items()}
    return from_state_dict_entries(target, entries, storage_keys=keys, metadata=metadata, warnings=warnings)


def find_state_dict(obj: Any) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Find the weights in a loaded checkpoint object.

    Returns ``(flat name -> tensor, key path where found, metadata)``. Nested
    mappings are flattened with dots; the other entries of a training
    checkpoint (epoch, optimizer state, hyper-parameters) become metadata.
    """
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return {"tensor": obj}, "", {}
    if not isinstance(obj, Mapping):
        return {}, "", {"object": summarize(obj)}
    top = _flatten_tensors(obj)
    best_key, best = "", {}
    for k in _WEIGHT_KEYS:
        v = obj.get(k)
        if isinstance(v, Mapping):
            flat = _flatten_tensors(v)
            if flat:
                best_key, best = k, flat
                break
    if not best:
        for k, v in obj.items():
            if isinstance(v, Mapping) and not any(w in str(k).lower() for w in _NOT_WEIGHTS):
                flat = _flatten_tensors(v)
                if len(flat) > len(best):
                    best_key, best = str(k), flat
    direct = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if best and len(best) >= len(direct):
        metadata = {str(k): summarize(v) for k, v in obj.items() if k != best_key}
        return best, best_key, metadata
    if direct or top:
        chosen = direct if direct else top
        metadata = {str(k): summarize(v) for k, v in obj.items() if not isinstance(v, torch.Tensor) and (direct or not isinstance(v, Mapping))}
        return dict(chosen), "", metadata
    return {}, "", {str(k): summarize(v) for k, v in obj.items()}


def _flatten_tensors(m: Mapping, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    torch = _torch()
    out: dict[str, Any] = {}
    for k, v in m.items():
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[key] = v
        elif isinstance(v, Mapping) and depth < 8 and not any(w in str(k).lower() for w in _NOT_WEIGHTS):
            out.update(_flatten_tensors(v, key + ".", depth + 1))
    return out


def summarize(v: Any, depth: int = 0) -> Any:
    """A JSON-safe, bounded summary of a metadata value."""
    torch = _torch()
    if v is None or isinstance(v, (bool, int)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    if isinstance(v, str):
        return v if len(v) <= 200 else v[:200] + "…"
    if isinstance(v, torch.Tensor):
        if v.numel() == 1 and not v.is_meta:
            try:
                return summarize(v.item(), depth)
            except Exception:
                pass
        return f"tensor{list(v.shape)} {str(v.dtype).removeprefix('torch.')}"
    if isinstance(v, Mapping):
        if depth >= 2:
            return f"{{… {len(v)} keys}}"
        items = list(v.items())
        out = {str(k): summarize(x, depth + 1) for k, x in items[:50]}
        if len(items) > 50:
            out["…"] = f"{len(items) - 50} more keys"
        return out
    if isinstance(v, (list, tuple)):
        if len(v) <= 10 and depth < 2:
            return [summarize(x, depth + 1) for x in v]
        return f"{type(v).__name__} of {len(v)} items"
    return f"<{type(v).__name__}>"


# ---------------------------------------------------------------- folders


def _open_folder(path: str, *, trust: bool, target: str):
    names = sorted(os.listdir(path))
    if ".metadata" in names:
        from modeltui.core.dcp import open_dcp

        return open_dcp(path, target)
    index = [n for n in names if n.endswith(".index.json")]
    if index:
        pick = next((n for n in index if "safetensors" in n), index[0])
        return _open_index(os.path.join(path, pick), trust=trust, target=target)
    st = [os.path.join(path, n) for n in names if n.endswith(".safetensors")]
    if st:
        return _open_safetensors_files(target, st)
    pts = [os.path.join(path, n) for n in names if n.endswith(PT_EXTS)]
    if len(pts) == 1:
        return _open_pt(pts[0], trust=trust, target=target)
    raise TargetError(
        f"{path}: folder holds no checkpoint (expected *.index.json with shards, *.safetensors, one .pt/.bin file, or a torch.distributed.checkpoint .metadata)"
    )


def _open_index(index_path: str, *, trust: bool, target: str):
    folder = os.path.dirname(index_path)
    name = os.path.basename(index_path)
    try:
        with open(index_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{name}: not a valid index ({e})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{name}: no 'weight_map' of tensor name -> shard file")
    shards: list[str] = []
    for shard in weight_map.values():
        if shard not in shards:
            shards.append(shard)
    for shard in shards:
        p = os.path.normpath(os.path.join(folder, shard))
        if os.path.dirname(os.path.abspath(p)) != os.path.abspath(folder) and not os.path.abspath(p).startswith(os.path.abspath(folder) + os.sep):
            raise CheckpointError(f"{name}: shard '{shard}' lies outside the checkpoint folder")
        if not os.path.isfile(p):
            raise CheckpointError(f"{name}: shard '{shard}' named by the index is missing")
    paths = [os.path.join(folder, s) for s in shards]
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    if all(p.endswith(".safetensors") for p in paths):
        info, module, src = _open_safetensors_files(target, paths, expected=weight_map)
        info.metadata.update({"index": name, "shards": len(paths), **{k: summarize(v) for k, v in meta.items()}})
        return info, module, src
    flat: dict[str, Any] = {}
    warnings: list[str] = []
    for p in paths:
        info_p, module, src = _open_pt(p, trust=trust, target=p)
        if module is not None:
            raise CheckpointError(f"{os.path.basename(p)}: a shard holds a whole module, not tensors")
        for k in info_p.tensors:
            flat[k] = src.get(k)
        warnings.extend(info_p.warnings)
    missing = [k for k in weight_map if k not in flat]
    if missing:
        warnings.append(f"index names {len(missing)} tensor(s) missing from their shards, e.g. '{missing[0]}'")
    info = state_dict_info(target, flat, metadata={"index": name, "shards": len(paths)}, warnings=warnings)
    return info, None, DictSource(flat, paths)
