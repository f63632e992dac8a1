"""Replace the checkpoint in a folder so that it is, at every moment, the old one or the new one.

A loader finds a checkpoint in a folder through ``model.safetensors.index.json``
(huggingface_hub, modeltui) or ``model.safetensors`` (transformers looks for
it first). The order of the steps keeps every state a complete checkpoint for
every loader, whenever the process is killed:

1. :func:`prepare_folder`: when the new shards have the names of shards the
   old index names (the same count of shards), each such old shard gets a
   second name first (a hard link, ``.model-00001-of-00002.backup.safetensors``)
   and the old index is rewritten to name those: it still names exactly the
   old bytes.
2. every new shard is written to a temp file, checked, and renamed into
   place (:func:`modeltui.core.shards.write_shard`); until the index changes,
   new files are names nobody reads.
3. the new index (:func:`modeltui.core.shards.write_index`); a new single
   ``model.safetensors`` that replaces an old sharded checkpoint gets an
   index naming it first, so no loader sees a mix.
4. :func:`finish_folder`: old shards, backups, an old ``model.safetensors``
   beside a new index, and that temporary index go.

A save that fails or is interrupted before step 3 puts the old names back
(:func:`roll_back`); after a kill, the next save removes what is left.
Other files in the folder (``config.json``, tokenizers) are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

from modeltui.core.save_checks import SaveError
from modeltui.core.shards import INDEX, SINGLE, ShardPlan, write_json
from modeltui.format import visible

BACKUP = ".backup.safetensors"


def backup_name(shard: str) -> str:
    """``model-00001-of-00002.safetensors`` -> ``.model-00001-of-00002.backup.safetensors``."""
    return "." + shard.removesuffix(".safetensors") + BACKUP


@dataclass
class Commit:
    """What the folder held before the save, and what the save did to it so far."""

    folder: str
    old_index: dict | None = None  # the old index's JSON
    old_files: list[str] = field(default_factory=list)  # shards the old index named
    old_single: bool = False  # an old model.safetensors
    backups: dict[str, str] = field(default_factory=dict)  # shard -> its backup name
    indexed_new: bool = False  # the new checkpoint is what the folder's index says (step 3 done)


def _fsync_dir(folder: str) -> None:
    from modeltui.core.save_atomic import _fsync_dir

    _fsync_dir(folder)


def _read_index(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    wm = data.get("weight_map") if isinstance(data, dict) else None
    return data if isinstance(wm, dict) and all(isinstance(v, str) for v in wm.values()) else None


def _write_index_json(folder: str, data: dict) -> None:
    from modeltui.core.save_atomic import _write_atomically

    write_json(os.path.join(folder, INDEX), json.dumps(data, indent=2).encode("utf-8") + b"\n", _write_atomically)


def prepare_folder(folder: str, plan: ShardPlan) -> Commit:
    """Make ``folder`` (creating it) ready for ``plan``'s files without ever breaking the checkpoint in it."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise SaveError(f"cannot create the folder {visible(folder)}: {e.strerror or e}; nothing was written") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SaveError(f"cannot write in {visible(folder)}: permission denied; nothing was written")
    commit = Commit(folder)
    index_path = os.path.join(folder, INDEX)
    commit.old_index = _read_index(index_path) if os.path.exists(index_path) else None
    named = set(commit.old_index["weight_map"].values()) if commit.old_index else set()
    commit.old_files = sorted(named)
    commit.old_single = os.path.isfile(os.path.join(folder, SINGLE))
    # backups a killed save left that no index names any more
    for n in os.listdir(folder):
        if n.startswith(".") and n.endswith(BACKUP) and n not in named:
            _remove(os.path.join(folder, n))
    new_files = {f for f, _ in plan.files}
    clash = sorted(f for f in named & new_files if os.path.isfile(os.path.join(folder, f)))
    if not clash:
        return commit
    for shard in clash:
        b = backup_name(shard)
        _link(os.path.join(folder, shard), os.path.join(folder, b))
        commit.backups[shard] = b
    _fsync_dir(folder)
    renamed = dict(commit.old_index)
    renamed["weight_map"] = {k: commit.backups.get(v, v) for k, v in commit.old_index["weight_map"].items()}
    try:
        _write_index_json(folder, renamed)
    except BaseException:
        for b in commit.backups.values():
            _remove(os.path.join(folder, b))
        commit.backups.clear()
        raise
    return commit


def index_new(plan: ShardPlan, commit: Commit) -> None:
    """Step 3: the folder's index now names the new checkpoint (or none is needed)."""
    from modeltui.core.shards import write_index

    if plan.sharded:
        write_index(commit.folder, plan)
    elif commit.old_index is not None:
        # a single file replacing shards: an index naming it, so no loader sees old shards beside it
        _write_index_json(commit.folder, plan.index())
    commit.indexed_new = True


def finish_folder(plan: ShardPlan, commit: Commit) -> list[str]:
    """Step 4: remove what the old checkpoint left; returns the names removed."""
    folder = commit.folder
    new_files = {f for f, _ in plan.files}
    gone = []
    for f in commit.old_files:
        if f not in new_files and not f.startswith("..") and os.path.dirname(f) == "":
            if _remove(os.path.join(folder, f)):
                gone.append(f)
    for b in commit.backups.values():
        _remove(os.path.join(folder, b))
    if plan.sharded and commit.old_single and SINGLE not in new_files:
        if _remove(os.path.join(folder, SINGLE)):
            gone.append(SINGLE)
    _fsync_dir(folder)
    if not plan.sharded and commit.old_index is not None:
        _remove(os.path.join(folder, INDEX))  # the temporary index naming model.safetensors
        _fsync_dir(folder)
    return gone


def roll_back(plan: ShardPlan, commit: Commit, placed: list[str]) -> None:
    """Undo a save that stopped before its index: old names back, new files gone (best effort)."""
    folder = commit.folder
    if commit.indexed_new:
        return
    for shard, b in commit.backups.items():
        src, dst = os.path.join(folder, b), os.path.join(folder, shard)
        tmp = dst + ".restore.tmp"
        try:
            _remove(tmp)
            os.link(src, tmp)
            os.replace(tmp, dst)  # a no-op when dst is that file already (never replaced)
        except OSError:
            pass
        _remove(tmp)
    if commit.backups and commit.old_index is not None:
        try:
            _write_index_json(folder, commit.old_index)
        except (SaveError, OSError):
            return  # the index naming the backups stays: still the old checkpoint
        for b in commit.backups.values():
            _remove(os.path.join(folder, b))
    old = set(commit.old_files) | ({SINGLE} if commit.old_single else set())
    for f in placed:
        if f not in old:
            _remove(os.path.join(folder, f))
    _fsync_dir(folder)


def _link(src: str, dst: str) -> None:
    """A second name for ``src``: a hard link, or a copy where the file system has none."""
    _remove(dst)
    try:
        os.link(src, dst)
        return
    except OSError:
        pass
    try:
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        _remove(dst)
        raise SaveError(f"cannot keep the old {visible(os.path.basename(src))} while writing the new one "
                        f"({e.strerror or e}); nothing was changed") from None


def _remove(path: str) -> bool:
    try:
        os.remove(path)
        return True
    except OSError:
        return False


def save_folder(folder: str, plan: ShardPlan, fetch) -> list[str]:
    """Write ``plan`` into ``folder`` (steps 1 to 4); returns old files removed.

    On any failure or interrupt before the new index is in place the folder
    is put back as it was; the error says so.
    """
    from modeltui.core.shards import write_shard

    commit = prepare_folder(folder, plan)
    placed: list[str] = []
    try:
        for i, (name, _) in enumerate(plan.files):
            write_shard(folder, plan, i, fetch)
            placed.append(name)
        index_new(plan, commit)
    except BaseException as e:
        roll_back(plan, commit, placed)
        if isinstance(e, SaveError) and placed:
            raise SaveError(f"{e} (the shards written before it were removed; the folder holds the old checkpoint)") from None
        raise
    return finish_folder(plan, commit)
