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

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

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
from modeltui.core.save_atomic import _write_atomically
from modeltui.core.save_temps import discard_unfinished_saves, remove_stale_temps
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
            out.append(f"safetensors holds weights only: the training state ({_few(self.dropped_entries)}) "
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
