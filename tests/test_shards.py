"""Hugging Face's sharded layout: the plan, the files, the index written last, and replacing a checkpoint safely."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open

from modeltui.core import open_target
from modeltui.core.saving import SaveError, save_folder_state, save_opened
from modeltui.core.shards import INDEX, OutTensor, parse_size, plan_shards
from modeltui.core.tensors import dtype_name, same_bits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def state(value: float, n: int = 1000, tied: bool = True) -> dict:
    sd = {f"layers.{i}.w": torch.full((n,), value + i) for i in range(6)}
    sd["embed.weight"] = torch.full((n,), value * 10)
    if tied:
        sd["lm_head.weight"] = sd["embed.weight"]
    return sd


def loaded(folder) -> dict:
    o = open_target(str(folder))
    try:
        return {n: o.tensor(n).clone() for n in o.info.tensors}
    finally:
        o.close()


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(same_bits(a[k], b[k]) for k in a)


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("500MB") == 5 * 10**8 and parse_size("2GiB") == 2 * 2**30
    assert parse_size("1024") == 1024 and parse_size("1.5KB") == 1500
    for bad in ("", "5XB", "-1MB", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_the_plan_matches_huggingface_hubs_split():
    from huggingface_hub import split_torch_state_dict_into_shards

    sd = {f"h.{i}.w": torch.zeros(100 * (i % 4 + 1)) for i in range(12)}
    sd["huge"] = torch.zeros(5000)  # bigger than the limit: a file of its own
    plan = plan_shards([OutTensor(k, dtype_name(v.dtype), tuple(v.shape)) for k, v in sd.items()], max_shard_size=3000)
    theirs = split_torch_state_dict_into_shards(sd, max_shard_size=3000)
    assert dict((f, names) for f, names in plan.files) == theirs.filename_to_tensors
    assert plan.file_of() == theirs.tensor_to_filename and plan.total_size == theirs.metadata["total_size"]
    # deterministic, and one file when everything fits
    again = plan_shards([OutTensor(k, dtype_name(v.dtype), tuple(v.shape)) for k, v in sd.items()], max_shard_size=3000)
    assert again.files == plan.files
    one = plan_shards([OutTensor("a", "float32", (2,))], max_shard_size=3000)
    assert one.files == [("model.safetensors", ["a"])] and not one.sharded


def test_sharded_save_layout_metadata_and_tied_names(tmp_path):
    sd = state(1.0)
    out = tmp_path / "out"
    report = save_folder_state(sd, str(out) + "/", metadata={"source": "unit test"}, max_shard_size=12_000)
    files = sorted(os.listdir(out))
    assert files == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", INDEX]
    index = json.load(open(out / INDEX))
    assert index["metadata"]["total_size"] == 7 * 4000 and index["metadata"]["source"] == "unit test"
    assert "lm_head.weight" not in index["weight_map"] and set(index["weight_map"]) == set(sd) - {"lm_head.weight"}
    assert report.aliases == {"lm_head.weight": "embed.weight"} and report.stored == 7 and report.tensors == 8
    for f in files[:-1]:
        with safe_open(str(out / f), "pt") as h:
            meta = h.metadata()
            assert meta["format"] == "pt" and meta["source"] == "unit test"
            assert ("lm_head.weight" in meta) == ("embed.weight" in h.keys())
    back = loaded(out)
    assert same(back, sd)
    o = open_target(str(out))
    assert o.info.tied_groups == [["embed.weight", "lm_head.weight"]]


def test_replacing_checkpoints_in_a_folder_keeps_other_files_and_removes_old_shards(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    save_folder_state(state(1.0), str(out), max_shard_size=12_000)  # 3 shards
    save_folder_state(state(2.0), str(out), max_shard_size=12_000)  # the same names: backups on the way
    assert same(loaded(out), state(2.0))
    assert sorted(os.listdir(out)) == ["config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                       "model-00003-of-00003.safetensors", INDEX]
    save_folder_state(state(3.0), str(out), max_shard_size=20_000)  # 2 shards: the three old ones go
    assert sorted(os.listdir(out)) == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", INDEX]
    assert same(loaded(out), state(3.0))
    save_folder_state(state(4.0), str(out))  # fits in one file: model.safetensors, no index
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    assert same(loaded(out), state(4.0))
    save_folder_state(state(5.0), str(out), max_shard_size=20_000)  # and back to shards
    assert sorted(os.listdir(out)) == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", INDEX]
    assert same(loaded(out), state(5.0))


def test_a_save_failing_half_way_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    from modeltui.core import shards

    out = tmp_path / "out"
    save_folder_state(state(1.0), str(out), max_shard_size=12_000)
    before = {f: open(out / f, "rb").read() for f in os.listdir(out)}
    real = shards.write_shard
    calls = []

    def flaky(folder, plan, i, fetch):
        calls.append(i)
        if i == 1:
            raise SaveError("saving model-00002-of-00003.safetensors failed: the disk is full")
        return real(folder, plan, i, fetch)

    monkeypatch.setattr(shards, "write_shard", flaky)
    with pytest.raises(SaveError, match="the folder holds the old checkpoint"):
        save_folder_state(state(2.0), str(out), max_shard_size=12_000)
    assert calls == [0, 1]
    assert {f: open(out / f, "rb").read() for f in os.listdir(out)} == before


def test_folder_saves_refuse_what_safetensors_cannot_hold_before_writing(tmp_path):
    with pytest.raises(SaveError, match="safetensors cannot store"):
        save_folder_state({"c": torch.zeros(2, dtype=torch.complex128)}, str(tmp_path / "out") + "/")
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_save_opened_to_a_folder_and_the_source_folder_is_refused_headless(ckpts, tmp_path):
    o = open_target(ckpts["model.safetensors"])
    report = save_opened(o, str(tmp_path / "hf") + "/", max_shard_size=8_000)
    assert report.files[-1] == INDEX and len(report.files) > 2
    folder = open_target(str(tmp_path / "hf"))
    with pytest.raises(SaveError, match="is the checkpoint folder this model was read from"):
        save_opened(folder, str(tmp_path / "hf"))
    # the app asks, then may write there: the open checkpoint stays readable while it is replaced
    before = {n: folder.tensor(n).clone() for n in folder.info.tensors}
    save_opened(folder, str(tmp_path / "hf"), overwrite_source=True, max_shard_size=8_000)
    assert same({n: folder.tensor(n) for n in folder.info.tensors}, before)
    assert same(loaded(tmp_path / "hf"), before)


# The child saves A or B into the folder (three shards, the same names: the backup path) and is killed at a
# random moment; the folder must then be A or B seen through its index, and through model.safetensors if any.
CHILD = """
import sys, torch
from modeltui.core.saving import save_folder_state
folder, value, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
sd = {f"layers.{i}.w": torch.full((n,), value + i) for i in range(6)}
print("READY", flush=True)
save_folder_state(sd, folder, max_shard_size=n * 4 * 2)
print("DONE", flush=True)
"""


def _value_of(sd: dict) -> float:
    """The one value v a saved state holds (layers.i.w is v + i everywhere), or raise."""
    assert set(sd) == {f"layers.{i}.w" for i in range(6)}
    vals = set()
    for i in range(6):
        t = sd[f"layers.{i}.w"]
        v = float(t[0]) - i
        assert bool(torch.all(t == v + i)), "a shard holds a mix"
        vals.add(v)
    assert len(vals) == 1, f"shards of different saves: {vals}"
    return vals.pop()


def test_kill_9_during_a_sharded_save_leaves_the_old_or_the_new_checkpoint(tmp_path, request):
    rounds = request.config.getoption("--kills") or 6
    n = 1_000_000  # 4 MB tensors, 3 shards of 8 MB (a quarter of that: one file)
    folder = tmp_path / "out"
    rng = random.Random(99)
    p = subprocess.run([sys.executable, "-c", CHILD, str(folder), "1", str(n)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    current, outcomes = 1.0, {"old": 0, "new": 0}
    for r in range(rounds):
        new = current + 1
        m = n if r % 3 else n // 4  # every third round the new checkpoint is one file instead of three shards
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(new), str(m)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert p.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0.0, 0.8))
        p.send_signal(signal.SIGKILL)
        p.wait()
        names = os.listdir(folder)
        if INDEX in names:
            index = json.load(open(folder / INDEX))
            for f in set(index["weight_map"].values()):
                assert f in names, f"round {r}: the index names a missing shard {f}"
        got = _value_of(loaded(folder))  # through the index, or the files when there is none
        assert got in (current, new), f"round {r}: the folder is neither the old nor the new checkpoint"
        if "model.safetensors" in names:  # what transformers reads first: a whole checkpoint too
            assert _value_of(loaded(folder / "model.safetensors")) in (current, new)
        outcomes["new" if got == new else "old"] += 1
        current = got
    print(f"\nsharded kill -9: {rounds} kills, {outcomes}")
