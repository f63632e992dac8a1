"""Every bad input gives its clear error: core exceptions and CLI exit code 2."""

import os
import subprocess
import sys

import pytest
import torch

from modeltui.core import CheckpointError, TargetError, UnsafeCheckpointError, open_target

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, env=None, cwd=ROOT):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "modeltui", *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=120)


@pytest.mark.parametrize(
    "target, message",
    [
        ("missing.pt", "no such file"),
        ("dir/missing.safetensors", "no such file"),
        ("nosuchpkg.models:net", "no module named 'nosuchpkg'"),
        ("sample_models.book:nope", "has no attribute 'nope'"),
        ("sample_models.book:BOOK_INPUTS", "not an nn.Module"),
        ("sample_models.book:F", "not an nn.Module"),
        ("justaword", "neither an existing file"),
        ("sample_models.book:", "nothing after ':'"),
    ],
)
def test_bad_targets(target, message):
    with pytest.raises(TargetError) as e:
        open_target(target)
    assert message in str(e.value)


def test_import_error_inside_user_module(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text("import torch\nraise RuntimeError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TargetError, match="importing 'broken' failed: RuntimeError: boom at import"):
        open_target("broken:net")


def test_factory_returning_wrong_type(tmp_path, monkeypatch):
    (tmp_path / "fac.py").write_text("def make():\n    return 42\nclass NotAModule:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TargetError, match="returned a int, not an nn.Module"):
        open_target("fac:make")
    with pytest.raises(TargetError, match="not an nn.Module subclass"):
        open_target("fac:NotAModule")


def test_unknown_device():
    with pytest.raises(TargetError, match="unknown device 'gpu0'"):
        open_target("sample_models.book:make_param_net", device="gpu0")


def test_the_tui_checks_a_device_name_as_the_core_does():
    """run_app refuses a name torch cannot parse before starting the app, with the core's own check and message."""
    from modeltui.core.devices import resolve_device
    from modeltui.core.request import OpenRequest
    from modeltui.ui.app import run_app

    for bad in ("cuda:01", "cuda:-1", "CUDA", "cuda1"):  # cuda:01 passed the TUI's old regex, and failed on open
        with pytest.raises(TargetError, match=f"unknown device '{bad}'"):
            resolve_device(bad)
        with pytest.raises(TargetError, match=f"unknown device '{bad}'"):
            run_app(OpenRequest.make("sample_models.book:make_param_net", device=bad))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_missing_cuda_device():
    with pytest.raises(TargetError, match="no CUDA GPU"):
        open_target("sample_models.book:make_param_net", device="cuda:0")


def test_wrong_input_shape_names_the_problem():
    with pytest.raises(TargetError, match=r"forward pass with input \[2,5\] failed"):
        open_target("sample_models.book:make_my_linear_net", input_specs=[__import__("modeltui.core").core.parse_input_spec("2,5")])


def test_corrupt_and_truncated_files(tmp_path, ckpts):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        open_target(str(garbage))
    data = open(ckpts["state_dict.pt"], "rb").read()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc\.pt: corrupt or truncated zip archive"):
        open_target(str(trunc))
    st = open(ckpts["model.safetensors"], "rb").read()
    tst = tmp_path / "trunc.safetensors"
    tst.write_bytes(st[: len(st) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        open_target(str(tst))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        open_target(str(empty))


def test_pickled_module_refused_without_trust(ckpts, tmp_path):
    with pytest.raises(UnsafeCheckpointError) as e:
        open_target(ckpts["full_module.pt"])
    assert "sample_models.zoo.TinyGPT" in str(e.value)
    assert "--trust" in str(e.value)
    assert "sample_models.zoo.TinyGPT" in e.value.found


def test_refusal_holds_with_env_override(ckpts):
    r = cli(ckpts["full_module.pt"], "--json", env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert r.returncode == 2
    assert "refused to load" in r.stderr and "TinyGPT" in r.stderr
    assert r.stdout == ""


def test_missing_shard(ckpts, tmp_path):
    import shutil

    folder = tmp_path / "shards"
    shutil.copytree(ckpts["sharded_safetensors"], folder)
    os.remove(folder / "model-00002-of-00002.safetensors")
    with pytest.raises(CheckpointError, match="shard 'model-00002-of-00002.safetensors' named by the index is missing"):
        open_target(str(folder))


def test_empty_folder(tmp_path):
    with pytest.raises(TargetError, match="folder holds no checkpoint"):
        open_target(str(tmp_path))


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.pt", "--summary"], "no such file"),
        (["sample_models.book:nope", "--json"], "has no attribute"),
        (["--bogus"], "unrecognized arguments"),
        (["-i", "2,x", "--summary"], "not a list of integers"),
        (["-d", "warp", "--summary"], "unknown device"),
        (["sample_models.book:make_param_net", "-w", "missing.pt", "--summary"], "no such file"),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, message):
    r = cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("modeltui: error:")
    assert message in lines[0]
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback():
    r = cli("sample_models.book:nope", "--json", "--debug")
    assert r.returncode == 2
    assert "Traceback" in r.stderr
