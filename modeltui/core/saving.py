"""Save a state_dict safely: atomic, verified, tied tensors stored once.

The file is written to a temp file in the destination folder, flushed,
fsynced, read back and compared (keys, shapes, dtypes, every value bit for
bit) and only then moved over the destination with ``os.replace``; the
folder is fsynced last. A failure at any point leaves the destination as it
was. Temp files are hidden (``.NAME.*.tmp``) so they never shadow a real
checkpoint.
"""

from __future__ import annotations

import errno
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from modeltui.core.errors import ModelTuiError

SAFETENSORS = (".safetensors",)
TORCH = (".pt", ".pth", ".bin", ".ckpt")


class SaveError(ModelTuiError):
    """Saving failed; the destination is unchanged."""


@dataclass
class SaveReport:
    path: str
    tensors: int  # names saved (aliases included)
    stored: int  # tensors actually stored (tied groups once)
    nbytes: int
    aliases: dict[str, str]


def state_for_saving(opened) -> dict[str, Any]:
    """The state_dict of a module target, or every tensor of a checkpoint."""
    if opened.model is not None:
        return dict(opened.model.state_dict())
    return {name: opened.tensor(name) for name in opened.info.tensors}


def save_opened(opened, path: str) -> SaveReport:
    """Save what ``opened`` holds to ``path``: the one entry point of the CLI and the save dialog."""
    if opened.source is not None:
        opened.source.check()  # never save values read from a file that changed underneath (FileChangedError)
    return save_state_dict(state_for_saving(opened), path)


def _dedupe(sd: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Keep one name per shared tensor; return (kept tensors, alias -> kept name)."""
    from modeltui.core.inspect import tensor_identity

    kept: dict[str, Any] = {}
    first: dict[Any, str] = {}
    aliases: dict[str, str] = {}
    for name, t in sd.items():
        key = tensor_identity(t)
        if key in first and key[0] == "mem":
            aliases[name] = first[key]
            continue
        first.setdefault(key, name)
        kept[name] = t
    return kept, aliases


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    """Best effort: some file systems (and Windows) cannot fsync a folder."""
    try:
        _fsync_file(folder)
    except OSError:
        pass


def _explain(e: OSError, folder: str) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk holding {folder} is full"
    if e.errno == errno.EFBIG:
        return "the file would pass the size limit for files (ulimit -f) or the file system's largest file"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write in {folder}: {e.strerror}"
    if e.errno == errno.ENOENT:
        return f"folder {folder} does not exist"
    if e.errno == errno.ENOTDIR:
        return f"{folder} is not a folder"
    return f"{e.strerror or e}"


def save_state_dict(sd: dict[str, Any], path: str, *, metadata: dict[str, str] | None = None) -> SaveReport:
    """Write ``sd`` to ``path`` (.safetensors or .pt/.pth/.bin/.ckpt) safely and verify it."""
    import torch

    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    base = os.path.basename(path)
    if not base.endswith(SAFETENSORS + TORCH):
        raise SaveError(f"{base}: unknown format; use .safetensors, .pt, .pth, .bin or .ckpt")
    if os.path.isdir(path):
        raise SaveError(f"{path} is a folder")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise SaveError(f"'{bad[0]}' is not a tensor")
    meta_dev = [k for k, v in sd.items() if v.is_meta]
    if meta_dev:
        raise SaveError(f"'{meta_dev[0]}' is on the meta device and has no values to save")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise SaveError(f"saving {base} failed: {_explain(e, folder)}; nothing was changed") from None
    os.close(fd)
    try:
        kept, aliases = _dedupe(sd)
        if base.endswith(SAFETENSORS):
            from safetensors.torch import save_file

            meta = {"format": "pt", **(metadata or {}), **aliases}
            save_file({k: v.detach().to("cpu").contiguous() for k, v in kept.items()}, tmp, metadata=meta)
        else:
            cpu = {k: v.detach().to("cpu") for k, v in sd.items()}
            # .to("cpu") keeps sharing for CPU tensors; re-tie names moved from other devices
            for alias, real in aliases.items():
                cpu[alias] = cpu[real]
            torch.save(cpu, tmp)
        # after writing: safetensors >= 0.7 writes a new file of its own (mode 0600) over ``tmp``
        os.chmod(tmp, _file_mode(path))
        # fsync (in the kernel, no GIL) while the read-back check runs from the page cache
        with ThreadPoolExecutor(1) as pool:
            synced = pool.submit(_fsync_file, tmp)
            try:
                _verify(tmp, sd, aliases, base.endswith(SAFETENSORS))
            finally:
                synced.result()
        os.replace(tmp, path)
        _fsync_dir(folder)
    except OSError as e:
        _remove(tmp)
        raise SaveError(f"saving {base} failed: {_explain(e, folder)}; {base} is unchanged") from None
    except SaveError:
        _remove(tmp)
        raise
    except Exception as e:
        _remove(tmp)
        raise SaveError(f"saving {base} failed: {type(e).__name__}: {e}; {base} is unchanged") from None
    nbytes = sum(v.numel() * v.element_size() for v in kept.values())
    return SaveReport(path, len(sd), len(kept), nbytes, aliases)


def _file_mode(path: str) -> int:
    """The mode the saved file gets: the old file's, or what umask gives a new one.

    ``mkstemp`` makes its file 0600; without this a re-saved checkpoint would
    silently stop being readable by the group.
    """
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    mask = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    mask = int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    if mask is None:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _remove(p: str) -> None:
    try:
        os.remove(p)
    except OSError:
        pass


def _verify(tmp: str, sd: dict[str, Any], aliases: dict[str, str], safetensors: bool) -> None:
    """Read the written file back and compare keys, shapes, dtypes and every value bit for bit."""
    if safetensors:
        _verify_safetensors(tmp, sd, aliases)
    else:
        _verify_torch(tmp, sd, aliases)


def _compare(name: str, got, want) -> None:
    from modeltui.core.inspect import dtype_name
    from modeltui.core.session import _same_bits

    want = want.detach().to("cpu")
    if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
        raise SaveError(f"verification failed: '{name}' came back as {list(got.shape)} {dtype_name(got.dtype)}")
    if not _same_bits(got.contiguous(), want.contiguous()):
        raise SaveError(f"verification failed: the values of '{name}' differ after writing")


def _missing(found, sd) -> None:
    if set(found) != set(sd):
        missing = sorted(set(sd) - set(found)) or sorted(set(found) - set(sd))
        raise SaveError(f"verification failed: the keys differ after writing, e.g. '{missing[0]}'")


def _verify_safetensors(tmp: str, sd: dict[str, Any], aliases: dict[str, str]) -> None:
    """Header through both our validator and safetensors' own; values through a mapped view."""
    from safetensors import safe_open

    from modeltui.core.checkpoints import SafetensorsSource
    from modeltui.core.safetensors_header import read_header

    entries, metadata = read_header(tmp)
    with safe_open(tmp, framework="pt") as f:  # the library itself must accept the file
        lib_keys = set(f.keys())
    _missing(list(lib_keys) + list(aliases), sd)
    _missing([e.name for e in entries] + list(aliases), sd)
    for alias, real in aliases.items():
        if metadata.get(alias) != real:
            raise SaveError(f"verification failed: the alias '{alias}' -> '{real}' is not in the file's metadata")
    source = SafetensorsSource({e.name: tmp for e in entries})
    try:
        for e in entries:
            _compare(e.name, source.get(e.name), sd[e.name])
    finally:
        source.close()


def _verify_torch(tmp: str, sd: dict[str, Any], aliases: dict[str, str]) -> None:
    """Load with torch (weights only, mmapped) and compare."""
    import torch

    try:
        obj = torch.load(tmp, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:
        raise SaveError(f"verification failed: torch cannot load the written file: {e}") from None
    if not isinstance(obj, dict):
        raise SaveError("verification failed: the written file does not hold a dict of tensors")
    _missing(obj, sd)
    for name, t in sd.items():
        _compare(name, obj[name], t)
    from modeltui.core.inspect import tensor_identity

    for alias, real in aliases.items():
        if tensor_identity(obj[alias]) != tensor_identity(obj[real]):
            raise SaveError(f"verification failed: '{alias}' did not come back tied to '{real}'")
