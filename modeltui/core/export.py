"""Export the session as a standalone Python script (torch and safetensors only, no modeltui).

The script repeats, on the original target, every edit that the current
state is made of (the undo stack, in order; undone edits are not in it),
then saves the result as modeltui would: tied tensors once (the other names
recorded in the safetensors metadata), the source's own metadata kept.
Initialisers carry their seeds, so a run gives the same bits; a test runs an
exported script and compares its output with modeltui's own save.

What a script cannot repeat is refused with the edit it is about: a custom
module function on a checkpoint without an architecture, an architecture
still holding lazy parameters, a torch.distributed.checkpoint folder.
For an architecture, the values its constructor draws are random (the
script cannot know modeltui's); a script of an architecture without ``-w``
reproduces the tensors its edits set, and the docstring says so.
"""

from __future__ import annotations

import datetime
import os

from modeltui.core.errors import ModelTuiError
from modeltui.format import visible


class ExportError(ModelTuiError):
    """The session cannot be written as a script; nothing was written."""


_COMMON = '''
def seeded(seed, fn):
    """Run fn with torch's RNG seeded (as modeltui's initialisers do); the RNG state is put back after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            fn()


def import_object(path):
    """pkg.module:attr or file.py:attr (the user's own code: a custom initialiser, the architecture)."""
    import importlib
    import importlib.util
    import os
    left, _, attr = path.rpartition(":")
    sys.path.insert(0, os.getcwd())
    if left.endswith(".py") or "/" in left:
        spec = importlib.util.spec_from_file_location("_exported_" + os.path.basename(left)[:-3], os.path.abspath(left))
        obj = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(obj)
    else:
        obj = importlib.import_module(left)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_tensors(path, weights_key=(), chains=None):
    """name -> tensor of a checkpoint file or folder; tensors sharing memory become one object (tied)."""
    import json
    import os
    from safetensors import safe_open
    files, aliases, sd = [path], {}, {}
    if os.path.isdir(path):
        index = sorted(n for n in os.listdir(path) if n.endswith(".index.json"))
        if index:
            pick = next((n for n in index if "safetensors" in n), index[0])
            with open(os.path.join(path, pick)) as f:
                shards = list(dict.fromkeys(json.load(f)["weight_map"].values()))
            files = [os.path.join(path, s) for s in shards]
        else:
            files = [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".safetensors")]
    for f in files:
        if f.endswith(".safetensors"):
            part = load_file(f)
            with safe_open(f, "pt") as h:
                meta = h.metadata() or {}
            aliases.update({a: r for a, r in meta.items() if r in part and a not in part and a != "format"})
            sd.update(part)
        else:
            obj = torch.load(f, map_location="cpu", weights_only=True)
            for k in weights_key:
                obj = obj[k]
            if chains:
                for name, chain in chains.items():
                    node = obj
                    for k in chain:
                        node = node[k]
                    sd[name] = node
            else:
                sd.update(obj)
    for a, r in aliases.items():
        sd[a] = sd[r]
    first = {}
    for name, t in list(sd.items()):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        sd[name] = first.setdefault(key, t)
    return sd


def cast_tensors(named, dtype, keep):
    """Cast every floating-point tensor once (tied names stay one), except those any of whose names match keep."""
    import fnmatch
    kept = {id(t) for n, t in named if any(fnmatch.fnmatchcase(n, k) for k in keep)}
    done = set()
    for _, t in named:
        if id(t) in done or id(t) in kept or not t.is_floating_point() or t.dtype == dtype:
            continue
        done.add(id(t))
        t.data = t.data.to(dtype)


def save(sd, out, metadata):
    """Save as modeltui does: tied tensors once, the other names in the metadata ({"format": "pt"} first)."""
    if out.endswith(".safetensors"):
        kept, first, aliases = {}, {}, {}
        for name, t in sd.items():
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
            if key in first:
                aliases[name] = first[key]
                continue
            first[key] = name
            kept[name] = t.detach().contiguous()
        save_file(kept, out, metadata={"format": "pt", **metadata, **aliases})
    else:
        torch.save({k: v.detach() for k, v in sd.items()}, out)
    print(f"saved {out}: {len(sd)} tensors")
'''

_MODEL = '''
def T(name):
    """The tensor object of the model at name (a parameter, buffer or plain tensor attribute)."""
    mod, attr = parent(name)
    for where in ("_parameters", "_buffers"):
        if attr in vars(mod).get(where, {}):
            return vars(mod)[where][attr]
    return vars(mod)[attr]


def parent(name):
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def load_weights(path, strip=""):
    """As modeltui's -w / w: every key whose name and shape fit is copied in (ties stay tied)."""
    file = load_tensors(path, *WEIGHTS_LAYOUT.get(path, ((), None)))
    if strip:
        file = {(k[len(strip):] if k.startswith(strip) and k[len(strip):] not in file else k): v for k, v in file.items()}
    own = model.state_dict(keep_vars=True)
    fit = {k: file[k] for k, t in own.items() if k in file and tuple(t.shape) == tuple(file[k].shape)}
    model.load_state_dict(fit, strict=False)


def all_tensors():
    return list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
'''


def _r(v) -> str:
    """A Python literal for a recipe argument (inf and nan included)."""
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return f"float({str(v)!r})"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_r(k)}: {_r(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        inner = ", ".join(_r(x) for x in v)
        return f"({inner},)" if isinstance(v, tuple) and len(v) == 1 else (f"({inner})" if isinstance(v, tuple) else f"[{inner}]")
    return repr(v)


_OPS = {"=": "fill_", "+=": "add_", "-=": "sub_", "*=": "mul_", "/=": "div_"}


def _lines(op: str, a: dict, bare: bool) -> list[str]:
    """Python lines repeating one recipe; ``T`` is ``sd.__getitem__`` (bare) or the model's tensor at a name."""
    get = "sd[{}]" if bare else "T({})"
    if op == "init":
        kw = ", ".join(f"{k}={_r(v)}" for k, v in a["kwargs"].items())
        return [f"seeded({a['seed']}, lambda: [torch.nn.init.{a['fn']}({get.format('n')}{', ' + kw if kw else ''}) for n in {_r(a['names'])}])"]
    if op == "init_custom":
        if a["style"] == "module":
            if bare:
                raise ExportError(f"'{a['path']}' is a module function run on a checkpoint without an architecture: "
                                  "a script cannot repeat it")
            root = f"model.get_submodule({a['root']!r})" if a["root"] else "model"
            return [f"fn = import_object({a['path']!r})", f"seeded({a['seed']}, lambda: {root}.apply(fn))"]
        return [f"fn = import_object({a['path']!r})",
                f"seeded({a['seed']}, lambda: [(lambda t, r: t.copy_(r) if r is not None and r is not t and hasattr(r, 'shape') else None)"
                f"({get.format('n')}, fn({get.format('n')})) for n in {_r(a['names'])}])"]
    if op == "edit":
        view = f"{get.format(_r(a['name']))}[{_r(a['index'])}]" if a["index"] else get.format(_r(a["name"]))
        return ["with torch.no_grad():", f"    {view}.{_OPS[a['op']]}({_r(a['value'])})"]
    if op == "tie":
        if bare:
            return [f"sd[{_r(dest)}] = sd[{_r(src)}]" for src, dest in a["pairs"]]
        return [f"parent({_r(dest)})[0]._parameters[parent({_r(dest)})[1]] = T({_r(src)})" for src, dest in a["pairs"]]
    if op == "untie":
        if bare:
            return [f"sd[{_r(n)}] = sd[{_r(n)}].detach().clone()" for n in a["names"]]
        return [f"m, attr = parent({_r(n)}); m._parameters[attr] = torch.nn.Parameter(m._parameters[attr].detach().clone(), "
                "requires_grad=m._parameters[attr].requires_grad)" for n in a["names"]]
    if op == "untie_module":
        return ["import copy", f"m, attr = parent({_r(a['path'])}); m._modules[attr] = copy.deepcopy(m._modules[attr])"]
    if op == "cast":
        named = "list(sd.items())" if bare else "all_tensors()"
        return [f"cast_tensors({named}, torch.{a['dtype']}, {_r(a['keep'])})"]
    if op == "load_weights":
        return [f"load_weights({_r(a['path'])}, strip={_r(a['strip'])})"]
    if op == "rename":
        rx = f"RX = re.compile({_r(a['pattern'])})"
        if bare:
            return [rx, f"sd = {{RX.sub({_r(a['replacement'])}, k): v for k, v in sd.items()}}"]
        return [rx, f"KEYS = {{n: RX.sub({_r(a['replacement'])}, k) for n, k in KEYS.items()}}"]
    if op == "drop":
        return [f"for n in {_r(a['names'])}:", f"    {'sd' if bare else 'KEYS'}.pop(n, None)"]
    if op == "freeze":
        return [f"for n in {_r(a['names'])}:", f"    T(n).requires_grad_({a['trainable']!r})"]
    raise ExportError(f"an edit of kind '{op}' cannot be written as a script")


def _layout(opened) -> tuple[tuple, dict | None]:
    """(weights_key, flat name -> chain) of a training checkpoint container, or ((), None) for a flat file."""
    c = getattr(opened, "container", None)
    if c is None:
        return (), None
    chains = {n: tuple(ch) for n, ch in c.names.items()}
    flat = all(ch == (n,) for n, ch in chains.items())
    return tuple(c.weights_key), (None if flat else chains)


def _file_layout(path: str, trust: bool) -> tuple[tuple, dict | None]:
    """The weights layout of a ``-w`` file, read from its listing (nothing else)."""
    from modeltui.core.readers import read_checkpoint

    ck = read_checkpoint(path, trust=trust)
    try:
        return _layout(ck)
    finally:
        if ck.source is not None:
            ck.source.close()


def script_for(session, request, out: str) -> str:
    """The text of a script repeating ``session`` on ``request``'s target and saving to ``out``."""
    from modeltui.core.editable import is_bare
    from modeltui.core.saved_state import source_metadata

    opened = session.opened
    bare = is_bare(opened)
    edits = list(session.undo_stack)
    if any(t.shape is None for t in opened.info.tensors.values()):
        raise ExportError("the model still has uninitialised lazy parameters: run a forward pass first (a script cannot repeat it)")
    if request.target and os.path.isdir(request.target) and os.path.exists(os.path.join(request.target, ".metadata")):
        raise ExportError("a script cannot read a torch.distributed.checkpoint folder with torch and safetensors alone")
    body: list[str] = []
    for i, e in enumerate(edits, 1):
        if e.recipe is None:
            raise ExportError(f"edit {i} ('{visible(e.description, limit=80)}') cannot be written as a script")
        body.append(f"# {i}. {e.description}")
        body.extend(_lines(*e.recipe, bare=bare))
    target = os.path.abspath(request.target) if request.target and not request.kind == "import" else request.import_path
    key, chains = _layout(opened)
    weights = [os.path.abspath(request.weights)] if request.weights else []
    weights += [e.recipe[1]["path"] for e in edits if e.recipe and e.recipe[0] == "load_weights"]
    layouts = {p: _file_layout(p, request.trust) for p in dict.fromkeys(weights)}
    head = [
        "#!/usr/bin/env python3",
        f'"""Repeat a modeltui session on {visible(request.label)} and save the result.',
        "",
        f"Exported by modeltui on {datetime.date.today().isoformat()}; needs torch and safetensors only.",
        "    python THIS_SCRIPT [TARGET] [OUT]",
        "Edits, in order:",
        *[f"  {i}. {visible(e.description, limit=150)}" for i, e in enumerate(edits, 1)],
    ]
    if not bare and not request.weights:
        head.append("The architecture's own initial values are random: tensors no edit sets differ from modeltui's.")
    head += ['"""', "import re", "import sys", "", "import torch", "from safetensors.torch import load_file, save_file", "",
             f"TARGET = sys.argv[1] if len(sys.argv) > 1 else {target!r}",
             f"OUT = sys.argv[2] if len(sys.argv) > 2 else {out!r}",
             f"METADATA = {_r(source_metadata(opened))}"]
    code = "\n".join(head) + "\n" + _COMMON
    if bare:
        code += f"\nsd = load_tensors(TARGET, {_r(key)}, {_r(chains)})\n"
        tail = "save(sd, OUT, METADATA)"
    else:
        code += f"\nWEIGHTS_LAYOUT = {_r({p: l for p, l in layouts.items() if l != ((), None)})}\n{_MODEL}\nobj = import_object(TARGET)\n"
        code += ("model = obj if isinstance(obj, torch.nn.Module) else obj()\n"
                 "if any(isinstance(t, torch.nn.parameter.UninitializedTensorMixin) for _, t in all_tensors()):\n"
                 "    sys.exit('the model has lazy layers: modeltui shaped them with a forward pass, which this script does not repeat')\n")
        if request.weights:
            report = opened.weights
            strip = getattr(report, "stripped", "") if report is not None else ""
            code += f"load_weights({os.path.abspath(request.weights)!r}, strip={strip!r})  # -w at open\n"
        code += "KEYS = {k: k for k in model.state_dict()}\n"
        tail = "sd = model.state_dict()\nsave({KEYS[k]: v for k, v in sd.items() if k in KEYS}, OUT, METADATA)"
    return code + "\n" + "\n".join(body) + ("\n\n" if body else "\n") + tail + "\n"


def export_script(session, request, path: str, out: str) -> str:
    """Write the script to ``path`` (atomically, mode 0755); returns a one-line report."""
    from modeltui.core.save_atomic import _write_atomically

    text = script_for(session, request, out)
    compile(text, path, "exec")  # a script that does not parse is a bug here, never the user's problem
    dest = os.path.abspath(os.path.expanduser(path))
    data = text.encode("utf-8")

    def write(tmp: str, fd: int) -> None:
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(data)

    def verify(tmp: str) -> None:
        with open(tmp, "rb") as f:
            if f.read() != data:
                raise ExportError("the script reads back changed")

    _write_atomically(dest, visible(os.path.basename(dest)), write, verify, len(data))
    os.chmod(dest, 0o755)
    return f"wrote {visible(dest)}: {len(session.undo_stack)} edit(s); run it with python {visible(os.path.basename(dest))}"


__all__ = ["ExportError", "export_script", "script_for"]
