"""Hand-made malicious checkpoints: each pickle asks for code that would touch a sentinel file.

Every payload is live: ``torch.load(path, weights_only=False)`` (which
modeltui never calls without ``--trust``) runs it; ``test_payloads.py``
checks that in a child process, so a refusal proves something.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile

import torch


class Call:
    """Pickles as ``func(*args)``: the reduce protocol an attacker uses."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _touch_cmd(sentinel: str) -> str:
    return f"touch '{sentinel}'"


def _py_write(sentinel: str) -> str:
    return f"open({sentinel!r}, 'w').write('pwned')"


def _importlib_chain(sentinel: str) -> bytes:
    """Protocol-2 pickle of ``getattr(importlib.import_module('os'), 'system')('touch ...')``."""
    def s(text: str) -> bytes:
        raw = text.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE

    return (
        b"\x80\x02"
        + b"cbuiltins\ngetattr\n"
        + b"cimportlib\nimport_module\n" + s("os") + b"\x85R"  # import_module('os')
        + s("system") + b"\x86R"  # getattr(os, 'system')
        + s(_touch_cmd(sentinel)) + b"\x85R"  # system('touch ...')
        + b"."
    )


def _zip_with_pickle(path: str, pkl: bytes) -> None:
    """A torch zip checkpoint whose data.pkl is ``pkl`` (other records from a real save)."""
    buf = io.BytesIO()
    torch.save({}, buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = pkl if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, data)


def _weights() -> dict:
    return {"layer.weight": torch.ones(3, 2), "layer.bias": torch.zeros(3)}


def make_payloads(folder: str, sentinel: str) -> dict[str, tuple[str, str]]:
    """Write every payload into ``folder``; return ``name -> (path, what the refusal must name)``."""
    import subprocess
    import torch.utils.collect_env as collect_env

    os.makedirs(folder, exist_ok=True)
    out: dict[str, tuple[str, str]] = {}

    def save(name, obj, expect, **kw):
        p = os.path.join(folder, name)
        torch.save(obj, p, **kw)
        out[name] = (p, expect)

    save("os_system.pt", {"w": torch.ones(2), "x": Call(os.system, _touch_cmd(sentinel))}, "system")
    save("exec.pt", Call(exec, _py_write(sentinel)), "builtins.exec")
    save("eval.pt", [torch.ones(1), Call(eval, f"__import__('os').system({_touch_cmd(sentinel)!r})")], "builtins.eval")
    save("subprocess.pth", {"model": Call(subprocess.call, ["touch", sentinel])}, "subprocess.call")
    save("popen.bin", Call(subprocess.Popen, ["touch", sentinel]), "subprocess.Popen")
    save("torch_internal.pt", {"state_dict": _weights(), "meta": Call(collect_env.run, _touch_cmd(sentinel))},
         "torch.utils.collect_env.run")
    save("lightning_nested.ckpt", {
        "epoch": 3, "global_step": 120, "state_dict": _weights(),
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
        "hyper_parameters": {"lr": 0.1, "callback": Call(os.system, _touch_cmd(sentinel))},
    }, "system")
    save("legacy_os_system.pt", {"w": torch.ones(2), "x": Call(os.system, _touch_cmd(sentinel))}, "system",
         _use_new_zipfile_serialization=False)
    p = os.path.join(folder, "importlib.pt")
    _zip_with_pickle(p, _importlib_chain(sentinel))
    out["importlib.pt"] = (p, "importlib.import_module")
    p = os.path.join(folder, "plain_pickle.pt")  # a bare pickle, not torch's format
    with open(p, "wb") as f:
        pickle.dump(Call(os.system, _touch_cmd(sentinel)), f, protocol=2)
    out["plain_pickle.pt"] = (p, "system")
    # a sharded checkpoint whose second shard carries the payload
    shard_dir = os.path.join(folder, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    torch.save({"a.weight": torch.ones(2)}, os.path.join(shard_dir, "pytorch_model-00001-of-00002.bin"))
    torch.save({"b.weight": torch.ones(2), "evil": Call(os.system, _touch_cmd(sentinel))},
               os.path.join(shard_dir, "pytorch_model-00002-of-00002.bin"))
    index = {"metadata": {}, "weight_map": {"a.weight": "pytorch_model-00001-of-00002.bin",
                                              "b.weight": "pytorch_model-00002-of-00002.bin"}}
    import json

    with open(os.path.join(shard_dir, "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f)
    out["sharded/index.json"] = (os.path.join(shard_dir, "pytorch_model.bin.index.json"), "system")
    # a torch.distributed.checkpoint folder whose .metadata pickle carries the payload
    dcp = os.path.join(folder, "dcp")
    os.makedirs(dcp, exist_ok=True)
    with open(os.path.join(dcp, ".metadata"), "wb") as f:
        pickle.dump(Call(os.system, _touch_cmd(sentinel)), f, protocol=2)
    with open(os.path.join(dcp, "__0_0.distcp"), "wb") as f:
        f.write(b"\0" * 16)
    out["dcp/.metadata"] = (dcp, "system")
    return out


# payloads that torch.load(weights_only=False) runs directly (the control test)
LIVE_UNDER_TORCH_LOAD = ["os_system.pt", "exec.pt", "eval.pt", "subprocess.pth", "popen.bin", "torch_internal.pt",
                         "lightning_nested.ckpt", "legacy_os_system.pt", "importlib.pt", "plain_pickle.pt"]
