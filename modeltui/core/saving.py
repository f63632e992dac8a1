"""Save safely: atomic, verified, tied tensors stored once, nothing dropped silently.

The file is written to a temp file in the destination folder, flushed,
fsynced, read back and compared (keys, shapes, dtypes, every value bit for
bit) and only then moved over the destination with ``os.replace``; the
folder is fsynced last. A failure at any point, an interrupt included
(Ctrl-C, a SIGTERM turned into ``SystemExit``), leaves the destination as it
was and removes the temp file. Temp files are hidden (``.NAME.*.tmp``) so
they never shadow a real checkpoint, and locked while written, so a later
save of the same name can tell one left by a killed process and remove it.

A training checkpoint (weights beside epoch, optimizer state...) saved to a
torch format keeps every other entry; saved to safetensors it holds the
weights only and the report lists what was left out.
"""

from __future__ import annotations

import errno
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from modeltui.core.errors import first_line
from modeltui.core.save_checks import (
    SAFETENSORS,
    TORCH,
    SaveError,
    check_tensors,
    conflict_reason,
    is_folder_destination,
    not_saved_names,
    resolve_destination,
)
from modeltui.core.saved_state import _container_for, extract_keys, module_state_dict, source_metadata, state_for_saving
from modeltui.core.save_temps import ACTIVE, discard_unfinished_saves, lock, pause_for_tests, remove_stale_temps
from modeltui.format import fmt_bytes, visible

__all__ = [
    "SAFETENSORS", "TORCH", "SaveError", "SaveReport", "discard_unfinished_saves", "extract_keys", "module_state_dict",
    "remove_stale_temps", "save_folder_state", "save_opened", "save_state_dict", "source_metadata", "state_for_saving",
]


@dataclass
class SaveReport:
    """What a save wrote, kept and left out."""

    path: str
    tensors: int  # names saved (aliases included)
    stored: int  # tensors actually stored (tied groups once)
    nbytes: int
    aliases: dict[str, str]
    kept_entries: list[str] = field(default_factory=list)  # a training checkpoint's other entries, written too
    dropped_entries: list[str] = field(default_factory=list)  # ...not written (safetensors holds weights only)
    not_saved: list[str] = field(default_factory=list)  # tensors of the model no state_dict holds (constants)
    removed_temps: list[str] = field(default_factory=list)  # stale temp files of killed saves, removed
    files: list[str] = field(default_factory=list)  # a folder save: the files written (shards, then the index)

    def summary(self, shown: str | None = None) -> str:
        """One line: ``saved OUT: 12 tensors, 1.2 MiB, ..., verified``."""
        tied = f", {len(self.aliases)} tied name(s) stored once" if self.aliases else ""
        kept = f"; kept {_few(self.kept_entries)}" if self.kept_entries else ""
        files = ""
        if self.files:
            files = f" ({len(self.files)} files: {_few(self.files, 2)})" if len(self.files) > 1 else f" ({visible(self.files[0])})"
        return f"saved {visible(shown or self.path)}{files}: {self.tensors} tensors, {fmt_bytes(self.nbytes)}{tied}, verified{kept}"

    def notes(self) -> list[str]:
        """What the user must be told: data the file does not hold."""
        out = []
        if self.dropped_entries:
            out.append(f"a .safetensors file holds weights only: the training state ({_few(self.dropped_entries)}) "
                       "is not included; save as .ckpt or .pt to keep it")
        if self.not_saved:
            out.append(f"{len(self.not_saved)} tensor(s) are not part of the state_dict and were not saved "
                       f"(constants, non-persistent buffers): {_few(self.not_saved)}")
        return out


def _few(names: Sequence[str], n: int = 5) -> str:
    s = ", ".join(visible(x, limit=60) for x in names[:n])
    return s + (f" and {len(names) - n} more" if len(names) > n else "")


def save_opened(opened, path: str, *, overwrite_source: bool = False, not_saved: Sequence[str] | None = None,
                extract: str | None = None, max_shard_size: int | None = None) -> SaveReport:
    """Save what ``opened`` holds to ``path``: the one entry point of the CLI and the save dialog.

    Refuses (:class:`SaveError`, nothing written) a path inside the
    multi-file checkpoint the model came from, or over a shard an index
    names, unless ``overwrite_source`` (the dialog asked with
    :func:`modeltui.core.save_checks.save_conflict` and the user said yes).
    A training checkpoint saved to .pt/.pth/.bin/.ckpt keeps its other
    entries; to .safetensors they are listed in ``dropped_entries``.
    ``not_saved`` names tensors the save cannot carry (default: the model's
    constants and non-persistent buffers). A folder (a path ending in ``/``
    or an existing folder) gets Hugging Face's sharded layout, files of at
    most ``max_shard_size`` bytes (:mod:`modeltui.core.shards`). ``extract``
    saves only the keys under that prefix, with the prefix removed.
    """
    folder = is_folder_destination(path)
    dest = os.path.realpath(os.path.abspath(path)) if folder else resolve_destination(path)
    if opened.source is not None:
        opened.source.check()  # never save values read from a file that changed underneath (FileChangedError)
    if not overwrite_source:
        conflict = conflict_reason(opened, dest, folder=folder)
        if conflict:
            raise SaveError(f"refused: {conflict[0]}; nothing was written ({conflict[1]})")
    sd = state_for_saving(opened)
    if extract:
        sd = extract_keys(sd, extract)
    container = None if extract else _container_for(opened, dest)
    if folder:
        report = save_folder_state(sd, dest, metadata=source_metadata(opened), max_shard_size=max_shard_size)
        if container is not None:
            report.dropped_entries = container.other_entries()
    elif container is not None and dest.endswith(TORCH):
        report = save_state_dict(sd, path, container=container)
        report.kept_entries = container.other_entries()
    else:
        report = save_state_dict(sd, path, metadata=source_metadata(opened) if dest.endswith(SAFETENSORS) else None)
        if container is not None:
            report.dropped_entries = container.other_entries()
    report.not_saved = list(not_saved) if not_saved is not None else not_saved_names(opened)
    return report


def save_folder_state(sd: dict[str, Any], folder: str, *, metadata: dict[str, str] | None = None,
                      max_shard_size: int | None = None) -> SaveReport:
    """Save ``sd`` into ``folder`` in Hugging Face's layout (shards of at most ``max_shard_size`` bytes, index last)."""
    from modeltui.core.folder_commit import save_folder
    from modeltui.core.shards import DEFAULT_MAX_SHARD, INDEX, OutTensor, plan_shards
    from modeltui.core.tensors import dtype_name, tensor_identity

    check_tensors(sd, True)
    tensors = [OutTensor(k, dtype_name(v.dtype), tuple(v.shape)) for k, v in sd.items()]
    by_id: dict[Any, list[str]] = {}
    for k, v in sd.items():
        key = tensor_identity(v)
        if key[0] == "mem":
            by_id.setdefault(key, []).append(k)
    plan = plan_shards(tensors, [g for g in by_id.values() if len(g) > 1], metadata=metadata,
                       max_shard_size=max_shard_size or DEFAULT_MAX_SHARD)
    save_folder(folder, plan, sd.__getitem__)
    files = [f for f, _ in plan.files] + ([INDEX] if plan.sharded else [])
    return SaveReport(folder, len(sd), len(plan.tensors), plan.total_size, dict(plan.aliases), files=files)


# ---------------------------------------------------------------- writing


def _dedupe(sd: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Keep one name per shared tensor; return (kept tensors, alias -> kept name)."""
    from modeltui.core.tensors import tensor_identity

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


def save_state_dict(sd: dict[str, Any], path: str, *, metadata: dict[str, str] | None = None, container=None) -> SaveReport:
    """Write ``sd`` to ``path`` (.safetensors or .pt/.pth/.bin/.ckpt) safely and verify it.

    With ``container`` (a torch format only) the file holds the container's
    whole object with its weights replaced by ``sd``.
    """
    import torch

    dest = resolve_destination(path)
    base = visible(os.path.basename(dest))
    safetensors = dest.endswith(SAFETENSORS)
    check_tensors(sd, safetensors)
    kept, aliases = _dedupe(sd)
    if safetensors:
        from modeltui.core.save_io import verify_safetensors, write_safetensors

        meta = {"format": "pt", **(metadata or {}), **aliases}

        def write(tmp: str, fd: int) -> None:
            with os.fdopen(os.dup(fd), "wb") as f:
                write_safetensors(f, kept, meta)

        def verify(tmp: str) -> None:
            verify_safetensors(tmp, sd, aliases)
    else:
        from modeltui.core.save_io import verify_torch

        cpu = {k: v.detach().to("cpu") for k, v in sd.items()}
        # .to("cpu") keeps sharing for CPU tensors; re-tie names moved from other devices
        for alias, real in aliases.items():
            cpu[alias] = cpu[real]
        if container is not None:
            obj = container.with_weights(cpu)
            at = {n: tuple(container.weights_key) + tuple(container.names.get(n, (n,))) for n in cpu}
        else:
            obj, at = cpu, {n: (n,) for n in cpu}
        ties = [(at[a], at[r]) for a, r in aliases.items()]
        trusted = bool(getattr(container, "trusted", False))

        def write(tmp: str, fd: int) -> None:
            torch.save(obj, tmp)

        def verify(tmp: str) -> None:
            verify_torch(tmp, obj, ties, trusted=trusted)

    nbytes = sum(_nbytes(v) for v in kept.values())
    removed = _write_atomically(dest, base, write, verify, nbytes)
    return SaveReport(os.path.abspath(path), len(sd), len(kept), nbytes, aliases, removed_temps=removed)


def _nbytes(t) -> int:
    """Bytes of a tensor's values (indices and values for a sparse one)."""
    import torch

    if t.layout == torch.strided:
        return t.numel() * t.element_size()
    from modeltui.core.save_io import tensor_parts

    return sum(p.numel() * p.element_size() for p in tensor_parts(t)[1])


def _write_atomically(dest: str, base: str, write: Callable[[str, int], None], verify: Callable[[str], None], nbytes: int) -> list[str]:
    """Temp file, write, fsync (overlapped with ``verify``), replace, folder fsync; returns stale temps removed."""
    folder = os.path.dirname(dest)
    unchanged = f"{base} is unchanged" if os.path.lexists(dest) else "nothing was written"
    removed = remove_stale_temps(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise SaveError(f"saving {base} failed: {_explain(e, folder)}; {unchanged}") from None
    ACTIVE.add(tmp)
    try:
        lock(fd)
        try:
            write(tmp, fd)
        except (RuntimeError, OSError) as e:
            raise _write_failure(e, tmp, nbytes) from None
        os.chmod(tmp, _file_mode(dest))
        pause_for_tests(tmp)
        # fsync (in the kernel, no GIL) while the read-back check runs from the page cache
        with ThreadPoolExecutor(1) as pool:
            synced = pool.submit(_fsync_file, tmp)
            try:
                verify(tmp)
            finally:
                synced.result()
        os.replace(tmp, dest)
        _fsync_dir(folder)
    except BaseException as e:  # Ctrl-C and SystemExit too: never leave a full-size temp file behind
        _remove(tmp)
        if isinstance(e, SaveError):
            raise SaveError(f"saving {base} failed: {e}; {unchanged}") from None
        if isinstance(e, OSError):
            raise SaveError(f"saving {base} failed: {_explain(e, folder)}; {unchanged}") from None
        if isinstance(e, Exception):
            raise SaveError(f"saving {base} failed: {type(e).__name__}: {visible(first_line(e))}; {unchanged}") from None
        raise
    finally:
        os.close(fd)
        ACTIVE.discard(tmp)
    return removed


def _write_failure(e: BaseException, tmp: str, nbytes: int) -> BaseException:
    """Name the cause of a failed write.

    torch's writer loses the errno: a full disk or the file size limit comes
    back as ``[enforce fail at inline_container.cc:672] . unexpected pos``.
    The limit and the free space tell which it was.
    """
    if isinstance(e, OSError) and e.errno is not None:
        return e
    text = str(e)
    if not any(s in text for s in ("inline_container", "PytorchStreamWriter", "file write failed")):
        return e
    try:
        size = os.stat(tmp).st_size
    except OSError:
        size = 0
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY and (soft <= nbytes or size >= soft - (1 << 16)):
            return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    except (ImportError, OSError, ValueError):
        pass
    try:
        st = os.statvfs(os.path.dirname(tmp))
        if st.f_bavail * st.f_frsize < max(nbytes - size, 0) + (1 << 20):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except (AttributeError, OSError):
        pass
    first = text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__
    return OSError(errno.EIO, f"the file could not be written ({first})")


# ---------------------------------------------------------------- small helpers


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
    folder = visible(folder)
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
    return visible(e.strerror or e, limit=300)


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

