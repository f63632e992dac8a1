"""What a save is allowed to do, decided before anything is written.

- where it goes: a trailing ``/`` or an existing folder is a folder in
  Hugging Face's sharded layout (:func:`is_folder_destination`; one file
  through :func:`resolve_destination` refuses it), a symlink is written
  through to its target, the name's extension decides the format;
- what it holds: every value a tensor with values (no lazy or meta
  parameters), every dtype and layout one the format can store;
- whom it could hurt: a file inside the multi-file checkpoint folder the
  model came from, or over a shard some ``*.index.json`` names, would break
  that checkpoint. Headless saves refuse; the app asks (:func:`save_conflict`)
  and then passes ``overwrite_source=True``.

No torch at import time: the save dialog calls these on the UI thread.
"""

from __future__ import annotations

import json
import os
from typing import Any

from modeltui.core.errors import ModelTuiError
from modeltui.core.tensors import dtype_name, is_lazy
from modeltui.format import visible

SAFETENSORS = (".safetensors",)
TORCH = (".pt", ".pth", ".bin", ".ckpt")


class SaveError(ModelTuiError):
    """Saving failed or was refused; the message says whether anything was written."""


def is_folder_destination(path: str) -> bool:
    """True when ``path`` names a folder (it ends with ``/`` or is one): the sharded layout goes there."""
    return path.endswith(("/", os.sep)) or bool(os.altsep and path.endswith(os.altsep)) or os.path.isdir(os.path.realpath(path))


def resolve_destination(path: str) -> str:
    """The absolute file ``path`` names, symlinks followed; raises :class:`SaveError` if it cannot be one.

    A symlink is written through: its target gets the new contents and the
    link stays a link (``os.replace`` on the link itself would replace the
    link with a plain file and leave the old target behind).
    """
    shown = visible(path)
    if path.endswith(("/", os.sep)) or (os.altsep and path.endswith(os.altsep)):
        bare = path.rstrip("/" + os.sep + (os.altsep or ""))
        raise SaveError(f"{shown} ends with '/', which names a folder; this save writes one file: "
                        f"give a file name{', e.g. ' + visible(bare) if bare.endswith(SAFETENSORS + TORCH) else ''}; nothing was written")
    full = os.path.abspath(path)
    real = os.path.realpath(full)
    if os.path.isdir(real):
        raise SaveError(f"{shown} is a folder; this save writes one file: give a file name, "
                        f"e.g. {visible(os.path.join(path, 'model.safetensors'))}; nothing was written")
    if not full.endswith(SAFETENSORS + TORCH):
        raise SaveError(f"{visible(os.path.basename(full))}: unknown format; use .safetensors, .pt, .pth, .bin or .ckpt; nothing was written")
    return real


def check_tensors(sd: dict[str, Any], safetensors: bool) -> None:
    """Refuse, before writing, values that are not tensors, have no values, or that the format cannot store."""
    import torch

    from modeltui.core.tensors import dtype_name

    for name, t in sd.items():
        shown = visible(name, limit=200)
        if not isinstance(t, torch.Tensor):
            raise SaveError(f"'{shown}' is not a tensor; nothing was written")
        if is_lazy(t):
            raise SaveError(f"'{shown}' is a lazy parameter that has no shape yet: run a forward pass first "
                            "(f in the app, or -i SHAPE on the command line); nothing was written")
        if t.is_meta:
            raise SaveError(f"'{shown}' is on the meta device and has no values to save; nothing was written")
        if not safetensors:
            continue
        if t.layout != torch.strided:
            raise SaveError(f"safetensors cannot store {dtype_name(t.layout)} tensors ('{shown}'): "
                            "save as .pt; nothing was written")
        if safetensors_code(t.dtype) is None:
            raise SaveError(f"safetensors cannot store {dtype_name(t.dtype)} ('{shown}'): save as .pt; nothing was written")


def safetensors_code(dtype) -> str | None:
    """The safetensors dtype code of a torch dtype (``torch.float32`` -> ``"F32"``), None if it has none."""
    from modeltui.core.readers.safetensors import DTYPES

    name = dtype_name(dtype)
    for code, (torch_name, _) in DTYPES.items():
        if torch_name == name:
            return code
    return None


def not_saved_names(opened) -> list[str]:
    """Tensors the model holds that a state_dict leaves out: constants and non-persistent buffers."""
    info = getattr(opened, "info", None)
    if info is None or opened.model is None:
        return []
    return [n for n, t in info.tensors.items() if t.kind == "constant" or (t.kind == "buffer" and not t.persistent)]


# ---------------------------------------------------------------- checkpoint folders


def _source_folders(opened) -> list[str]:
    """Multi-file checkpoints the model was read from: the TARGET folder, a ``-w`` folder."""
    out = []
    for p in (getattr(opened, "path", None), getattr(getattr(opened, "weights", None), "path", None)):
        if p and os.path.isdir(p):
            out.append(os.path.realpath(p))
    return out


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _index_naming(path: str) -> str | None:
    """The ``*.index.json`` beside ``path`` whose weight map names it as a shard, if any."""
    folder, base = os.path.split(path)
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".index.json")]
    except OSError:
        return None
    for n in names:
        try:
            with open(os.path.join(folder, n), encoding="utf-8") as f:
                wm = json.load(f).get("weight_map")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(wm, dict) and any(isinstance(v, str) and os.path.normpath(v) == base for v in wm.values()):
            return n
    return None


def _same_file(a: str | None, b: str) -> bool:
    try:
        return bool(a) and os.path.samefile(a, b)
    except OSError:
        return False


def conflict_reason(opened, dest: str, *, folder: bool = False) -> tuple[str, str] | None:
    """``(why writing dest would break a checkpoint, where to save instead)``, or None when it would not.

    ``dest`` is absolute and resolved (:func:`resolve_destination`), or
    (``folder``) the folder of a sharded save.
    """
    if folder:
        for source in _source_folders(opened):
            if os.path.realpath(dest) == source:
                return (f"{visible(source)} is the checkpoint folder this model was read from; writing a checkpoint there "
                        "replaces the one it was read from", "save to another folder")
        return None
    for folder in _source_folders(opened):
        if _inside(dest, folder):
            instead = f"save beside the folder instead, e.g. {visible(_beside(folder))}"
            if os.path.exists(dest):
                return (f"{visible(dest)} is one of the files of the checkpoint folder {visible(folder)} this model was read from; "
                        "overwriting it with the whole model breaks that checkpoint", instead)
            return (f"{visible(dest)} is inside the checkpoint folder {visible(folder)} this model was read from; "
                    "a new file there becomes part of that checkpoint (its tensors would appear twice)", instead)
    index = _index_naming(dest)
    if index and not _same_file(getattr(opened, "path", None), dest):
        return (f"{visible(os.path.basename(dest))} is a shard named by {visible(index)}; overwriting it with the whole "
                f"model breaks the checkpoint in {visible(os.path.dirname(dest))}", "save under another name")
    return None


def save_conflict(opened, path: str) -> str | None:
    """The question the save dialog asks before writing ``path``, or None to save without asking.

    Asks when the file would break a checkpoint (see :func:`conflict_reason`)
    or when it exists; for a folder (the sharded layout), when it holds a
    checkpoint or any other file (``/`` or a home folder typed by mistake). After a yes, pass ``overwrite_source=True`` to
    :func:`modeltui.core.saving.save_opened`. A path that cannot be saved to
    at all raises :class:`SaveError` with the reason.
    """
    if is_folder_destination(path):
        dest = os.path.realpath(os.path.abspath(path))
        conflict = conflict_reason(opened, dest, folder=True)
        if conflict:
            return f"{conflict[0]}. Write it anyway?"
        held = [n for n in ("model.safetensors", "model.safetensors.index.json") if os.path.exists(os.path.join(dest, n))]
        if held:
            return (f"{visible(path)} already holds a checkpoint ({', '.join(held)}). Replace it? "
                    "Other files there (config.json, tokenizers) are kept.")
        try:
            others = [n for n in os.listdir(dest) if not n.startswith(".")]
        except OSError:
            others = []
        if others:
            return (f"{visible(path)} is a folder holding other files ({_few(sorted(others), 3)}). Write the checkpoint "
                    "into it (model.safetensors, or shards and an index)? The other files are kept.")
        return None
    dest = resolve_destination(path)
    conflict = conflict_reason(opened, dest)
    if conflict:
        return f"{conflict[0]}. Write it anyway?"
    if not os.path.lexists(dest):
        return None
    question = f"{visible(path)} exists. Overwrite it?"
    container = getattr(opened, "container", None)
    if container is not None and container.other_entries():
        entries = _few(container.other_entries())
        if dest.endswith(TORCH):
            question += f" Its other entries ({entries}) are kept."
        else:
            question += f" safetensors holds weights only: {entries} are not included."
    return question


def _few(names: list[str], n: int = 5) -> str:
    s = ", ".join(visible(x, limit=60) for x in names[:n])
    return s + (f" and {len(names) - n} more" if len(names) > n else "")


def default_save_path(opened, target: str | None, weights: str | None) -> str:
    """Where the save dialog suggests writing; never inside a multi-file checkpoint folder.

    The ``-w`` file itself (saving back), a bare checkpoint file as
    ``.safetensors`` beside it, a checkpoint folder as ``FOLDER.safetensors``
    next to the folder, else ``NAME.safetensors`` named after the target.
    """
    from modeltui.core.editable import is_bare

    if weights and os.path.isfile(weights):
        return weights
    if weights and os.path.isdir(weights):
        return _beside(weights)
    if target and is_bare(opened):  # a checkpoint without an architecture: the target is its path
        if os.path.isfile(target):
            stem, ext = os.path.splitext(target)
            return target if ext == ".safetensors" else stem + ".safetensors"
        return _beside(target)
    name = (target or "model").rpartition(":")[2].rpartition(".")[2] or "model"
    return name + ".safetensors"


def _beside(folder: str) -> str:
    """``FOLDER.safetensors`` next to ``folder`` (relative if ``folder`` was)."""
    norm = os.path.normpath(folder)
    if os.path.isabs(norm) or os.path.basename(norm) in (".", "..", ""):
        norm = os.path.abspath(folder)
    parent, name = os.path.split(norm)
    return os.path.join(parent, (name or "model") + ".safetensors")
