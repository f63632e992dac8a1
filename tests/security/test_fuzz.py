"""Property-based fuzzing: corrupted and truncated checkpoints of every format.

For random byte flips, overwritten ranges, insertions, deletions and
truncations of small valid checkpoints, opening gives either a listing whose
every tensor reads back with the listed shape and dtype, or the clean
ModelTuiError: never another exception, never a hang, never code run.

    pytest tests/security/test_fuzz.py              # CI: 40 examples per format
    pytest tests/security/test_fuzz.py --fuzz 2000  # a long run
"""

import json
import os
import shutil
import signal
import tempfile
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeltui.core import open_target
from modeltui.core.errors import ModelTuiError
from modeltui.core.tensors import dtype_name

FORMATS = ["safetensors", "pt_zip", "pt_legacy", "lightning_ckpt", "sharded_safetensors", "sharded_bin", "dcp"]
COUNTS: dict[str, dict[str, int]] = {f: {"listed": 0, "error": 0} for f in FORMATS}


def _tensors():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, generator=g)
    return {"enc.weight": w, "enc.bias": torch.zeros(3, dtype=torch.float16), "steps": torch.tensor(7),
            "mask": torch.tensor([True, False, True]), "head.weight": w}  # head.weight tied to enc.weight


def build_base(folder: str) -> dict[str, tuple[str, list[str]]]:
    """One small valid checkpoint per format: ``fmt -> (path to open, files that may be corrupted)``."""
    from safetensors.torch import save_file

    sd = _tensors()
    untied = {k: v.clone() for k, v in sd.items()}
    out = {}

    def p(*parts):
        return os.path.join(folder, *parts)

    save_file({k: v for k, v in untied.items() if k != "head.weight"}, p("m.safetensors"),
              metadata={"format": "pt", "head.weight": "enc.weight"})
    out["safetensors"] = (p("m.safetensors"), [p("m.safetensors")])
    torch.save(sd, p("m.pt"))
    out["pt_zip"] = (p("m.pt"), [p("m.pt")])
    torch.save(sd, p("legacy.pt"), _use_new_zipfile_serialization=False)
    out["pt_legacy"] = (p("legacy.pt"), [p("legacy.pt")])
    torch.save({"epoch": 2, "global_step": 10, "state_dict": sd, "hyper_parameters": {"lr": 0.1, "name": "x"},
                "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]}]},
               p("l.ckpt"))
    out["lightning_ckpt"] = (p("l.ckpt"), [p("l.ckpt")])
    for kind, ext in (("sharded_safetensors", "safetensors"), ("sharded_bin", "bin")):
        d = p(kind)
        os.makedirs(d)
        parts = [{"enc.weight": untied["enc.weight"], "enc.bias": untied["enc.bias"]},
                 {"steps": untied["steps"], "mask": untied["mask"]}]
        wm = {}
        for i, part in enumerate(parts):
            name = f"model-{i + 1:05d}-of-00002.{ext}"
            if ext == "safetensors":
                save_file(part, os.path.join(d, name))
            else:
                torch.save(part, os.path.join(d, name))
            wm.update({k: name for k in part})
        index = os.path.join(d, f"model.{ext}.index.json")
        with open(index, "w") as f:
            json.dump({"metadata": {"total_size": 42}, "weight_map": wm}, f)
        out[kind] = (index, [index] + [os.path.join(d, n) for n in sorted(set(wm.values()))])
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({k: v.clone() for k, v in untied.items()}, checkpoint_id=p("dcp"))
    files = sorted(os.path.join(p("dcp"), n) for n in os.listdir(p("dcp")))
    out["dcp"] = (p("dcp"), files)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(str(tmp_path_factory.mktemp("fuzzbase")))


@st.composite
def mutations(draw):
    """A list of edits applied in order to a byte string (positions are fractions of its length)."""
    frac = st.floats(0, 1, allow_nan=False)
    op = st.one_of(
        st.tuples(st.just("truncate"), frac),
        st.tuples(st.just("flip"), frac, st.integers(0, 7)),
        st.tuples(st.just("overwrite"), frac, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("insert"), frac, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), frac, st.integers(1, 32)),
        st.tuples(st.just("set_byte"), frac, st.sampled_from([0, 0xFF, 0x7F, 0x80, ord("{"), ord('"'), ord("9")])),
    )
    return draw(st.lists(op, min_size=1, max_size=4))


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for o in ops:
        if not b:
            break
        i = min(int(o[1] * len(b)), len(b) - 1)
        kind = o[0]
        if kind == "truncate":
            del b[i:]
        elif kind == "flip":
            b[i] ^= 1 << o[2]
        elif kind == "overwrite":
            b[i:i + len(o[2])] = o[2]
        elif kind == "insert":
            b[i:i] = o[2]
        elif kind == "delete":
            del b[i:i + o[2]]
        elif kind == "set_byte":
            b[i] = o[2]
    return bytes(b)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang("opening a fuzzed checkpoint took more than 20 s")


def check_one(path: str) -> str:
    """Open and read everything; return 'listed' or 'error'; raise on anything else."""
    try:
        opened = open_target(path)
    except ModelTuiError:
        return "error"
    try:
        for name, info in opened.info.tensors.items():
            try:
                t = opened.tensor(name)
            except ModelTuiError:
                continue  # a clean error when the values are read
            assert tuple(t.shape) == tuple(info.shape), name
            assert dtype_name(t.dtype) == info.dtype, name
        _edit_and_save(opened)
    finally:
        opened.close()
    return "listed"


def _edit_and_save(opened) -> None:
    """A listed file also goes through the surgery path: editable, saved, read back equal."""
    from modeltui.core.editable import make_editable
    from modeltui.core.saving import save_state_dict, state_for_saving

    try:
        make_editable(opened)
        sd = state_for_saving(opened)
    except ModelTuiError:
        return
    with tempfile.TemporaryDirectory() as d:
        for ext in (".safetensors", ".pt"):
            try:
                save_state_dict(sd, os.path.join(d, "out" + ext))
            except ModelTuiError as e:
                assert "cannot" in str(e) or "failed" in str(e) or "not" in str(e), str(e)


def _settings(request):
    n = request.config.getoption("--fuzz") or 40
    return settings(max_examples=n, deadline=None, derandomize=n <= 40, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz_format(fmt, base, request):
    path, files = base[fmt]
    originals = {f: open(f, "rb").read() for f in files}
    work = tempfile.mkdtemp()
    try:
        @_settings(request)
        @given(which=st.integers(0, len(files) - 1), ops=mutations())
        def run(which, ops):
            # a fresh copy of the checkpoint with one file corrupted
            shutil.rmtree(work, ignore_errors=True)
            root = path if fmt == "dcp" else os.path.dirname(path)
            if fmt == "dcp" or fmt.startswith("sharded"):
                shutil.copytree(root, work)
            else:
                os.makedirs(work)
            target = os.path.join(work, os.path.relpath(path, root)) if fmt != "dcp" else work
            victim = os.path.join(work, os.path.relpath(files[which], root))
            with open(victim, "wb") as f:
                f.write(mutate(originals[files[which]], ops))
            old = signal.signal(signal.SIGALRM, _alarm)
            signal.alarm(20)
            try:
                COUNTS[fmt][check_one(target)] += 1
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)

        run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nfuzz {fmt}: {COUNTS[fmt]['listed']} listed correctly, {COUNTS[fmt]['error']} clean errors")
    assert sum(COUNTS[fmt].values()) > 0
