"""Safe saving: bit-for-bit round trips, ties kept, atomic under failure."""

import hashlib
import os
import random
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

from modeltui.core import open_target
from modeltui.core.saving import SaveError, save_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mixed_state():
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(4, 3, generator=g)
    return {
        "f32": shared,
        "f32_tied": shared,
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 2, generator=g).bfloat16(),
        "i64": torch.randint(-(2**40), 2**40, (6,), generator=g),
        "b": torch.rand(7, generator=g) > 0.5,
        "neg_zero_nan": torch.tensor([-0.0, float("nan"), float("inf")]),
    }


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_round_trip_bit_for_bit_with_ties(tmp_path, ext):
    sd = mixed_state()
    path = str(tmp_path / f"m{ext}")
    report = save_state_dict(sd, path)
    assert report.aliases == {"f32_tied": "f32"}
    o = open_target(path)
    assert sorted(o.info.tensors) == sorted(sd)
    assert ["f32", "f32_tied"] in [sorted(g) for g in o.info.tied_groups]
    for k, v in sd.items():
        got = o.tensor(k)
        assert got.dtype == v.dtype and got.shape == v.shape
        assert torch.equal(got.reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8)), k
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_tied_language_model_to_safetensors_and_back_tied(tmp_path):
    path = str(tmp_path / "lm.safetensors")
    r = subprocess.run([sys.executable, "-m", "modeltui", "sample_models.checkpoints:model_for_checkpoints", "--save", path],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout and "tied" in r.stdout
    o = open_target("sample_models.checkpoints:model_for_checkpoints", weights=path)
    assert not o.weights.missing and not o.weights.mismatched
    assert o.model.lm_head.weight is o.model.tok.weight
    from sample_models.checkpoints import model_for_checkpoints

    ref = model_for_checkpoints().state_dict()
    assert all(torch.equal(o.model.state_dict()[k], v) for k, v in ref.items())


def test_save_over_the_open_mmapped_checkpoint(tmp_path, ckpts):
    import shutil

    path = str(tmp_path / "open.pt")
    shutil.copy(ckpts["state_dict.pt"], path)
    o = open_target(path)  # memory-mapped
    sd = {k: o.tensor(k) for k in o.info.tensors}
    new = {k: (v + 1 if v.is_floating_point() else v) for k, v in sd.items()}
    save_state_dict(new, path)
    again = open_target(path)
    for k, v in new.items():
        assert torch.equal(again.tensor(k), v)
    st = str(tmp_path / "open.safetensors")
    save_state_dict(sd, st)
    o2 = open_target(st)
    first = {k: o2.tensor(k) for k in o2.info.tensors}
    save_state_dict({k: v * 2 for k, v in first.items()}, st)
    o3 = open_target(st)
    assert all(torch.equal(o3.tensor(k), first[k] * 2) for k in first)


def file_hash(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_a_write_that_raises_leaves_the_old_file(tmp_path, monkeypatch, ext):
    path = str(tmp_path / f"x{ext}")
    save_state_dict({"a": torch.zeros(3)}, path)
    before = file_hash(path)
    import modeltui.core.save_io as save_io

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(save_io, "write_safetensors", boom)
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(SaveError, match="disk .* is full"):
        save_state_dict({"a": torch.ones(3)}, path)
    assert file_hash(path) == before
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_failing_replace_and_bad_destinations(tmp_path, monkeypatch):
    path = str(tmp_path / "y.pt")
    save_state_dict({"a": torch.zeros(3)}, path)
    before = file_hash(path)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(SaveError, match="Permission denied"):
        save_state_dict({"a": torch.ones(3)}, path)
    monkeypatch.undo()
    assert file_hash(path) == before
    with pytest.raises(SaveError, match="unknown format"):
        save_state_dict({"a": torch.zeros(1)}, str(tmp_path / "z.txt"))
    with pytest.raises(SaveError, match="does not exist"):
        save_state_dict({"a": torch.zeros(1)}, str(tmp_path / "no" / "z.pt"))
    with pytest.raises(SaveError, match="meta device"):
        save_state_dict({"a": torch.zeros(1, device="meta")}, str(tmp_path / "m.pt"))


def test_kill_9_during_headless_save_leaves_old_or_new(tmp_path):
    from modeltui.core.save_temps import PAUSE_ENV

    path = str(tmp_path / "big.safetensors")
    old = {"w": torch.zeros(2_000_000)}
    save_state_dict(old, path)
    old_hash = file_hash(path)
    src = str(tmp_path / "src.safetensors")
    save_state_dict({"w": torch.ones(2_000_000)}, src)

    def check_old_or_new() -> str:
        h = file_hash(path)
        w = open_target(path).tensor("w")  # always a complete, valid file
        assert h == old_hash or bool(torch.all(w == 1))
        for f in os.listdir(tmp_path):
            assert not f.endswith(".safetensors") or not f.startswith(".")
        return "old" if h == old_hash else "new"

    # one kill that certainly lands mid-save: the temp file is written in full, not yet moved into place
    marker = tmp_path / "paused"
    p = subprocess.Popen([sys.executable, "-m", "modeltui", src, "--save", path], cwd=ROOT,
                         env={**os.environ, PAUSE_ENV: str(marker)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (marker.exists() and marker.read_text()) and time.time() < deadline:
        assert p.poll() is None
        time.sleep(0.02)
    tmp = marker.read_text()
    assert os.path.getsize(tmp) > 8_000_000
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert check_old_or_new() == "old"
    # and kills at random moments (import, listing, writing, verifying, replacing)
    rng = random.Random(0)
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-m", "modeltui", src, "--save", path], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 2.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        check_old_or_new()


def test_saved_file_mode_follows_umask_or_the_old_file(tmp_path):
    sd = {"w": torch.ones(3)}
    new = tmp_path / "new.safetensors"
    old_mask = os.umask(0o027)
    try:
        save_state_dict(sd, str(new))
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640
    kept = tmp_path / "kept.pt"
    kept.write_bytes(b"old")
    kept.chmod(0o604)
    save_state_dict(sd, str(kept))
    assert stat.S_IMODE(kept.stat().st_mode) == 0o604
