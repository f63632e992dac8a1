"""``--diff`` and ``--scan`` from the command line: exit codes, the table, the JSON contract, bad input."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from modeltui.cli import main as cli_main
from modeltui.headless_compare import ProgressLine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {f"layers.{i}.{p}": torch.randn(12, 8, generator=g) for i in range(5) for p in ("q.weight", "mlp.weight")}
    sd["head.weight"] = torch.randn(3, 8, generator=g)
    return sd


def run(capsys, *argv):
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("other", ["legacy.pt", "model.safetensors", "sharded_safetensors", "sharded_bin", "dcp", "lightning.ckpt"])
def test_identical_copies_in_other_formats_exit_0(ckpts, capsys, other):
    code, out, err = run(capsys, ckpts["state_dict.pt"], "--diff", ckpts[other])
    assert code == 0, out + err
    assert "identical" in out.splitlines()[-1] and err == ""


def test_one_element_changed_exit_1_with_the_tensor_and_its_figures(tmp_path, capsys):
    sd = weights()
    other = {k: v.clone() for k, v in sd.items()}
    other["layers.3.mlp.weight"][7, 2] -= 0.5
    save_file(sd, str(tmp_path / "a.safetensors"))
    torch.save(other, str(tmp_path / "b.pt"))
    code, out, err = run(capsys, str(tmp_path / "a.safetensors"), "--diff", str(tmp_path / "b.pt"))
    assert code == 1 and err == ""
    row = next(line for line in out.splitlines() if "layers.3.mlp.weight" in line)
    assert row.startswith("~") and "[7, 2]" in row and "0.5" in row
    assert f"= {len(sd) - 1} tensor(s) identical" in out
    code, out, _ = run(capsys, str(tmp_path / "a.safetensors"), "--diff", str(tmp_path / "b.pt"), "--json")
    assert code == 1
    data = json.loads(out)
    assert data["identical"] is False and data["counts"]["changed"] == 1 and data["counts"]["identical"] == len(sd) - 1
    t = next(x for x in data["tensors"] if x["status"] == "changed")
    a, b = sd["layers.3.mlp.weight"].double(), other["layers.3.mlp.weight"].double()
    assert t["name"] == "layers.3.mlp.weight" and t["max_index"] == [7, 2] and t["differ"] == 1
    assert t["max_abs"] == pytest.approx(float((a - b).abs().max()), rel=1e-12)
    assert t["rel_l2"] == pytest.approx(float((a - b).norm() / a.norm()), rel=1e-9)
    assert t["cosine"] == pytest.approx(float(a.reshape(-1) @ b.reshape(-1) / (a.norm() * b.norm())), rel=1e-12)


def test_module_prefixed_copy_is_matched_and_the_mapping_reported(tmp_path, capsys):
    sd = weights()
    save_file(sd, str(tmp_path / "plain.safetensors"))
    torch.save({"module." + k: v for k, v in sd.items()}, str(tmp_path / "ddp.pt"))
    code, out, _ = run(capsys, str(tmp_path / "plain.safetensors"), "--diff", str(tmp_path / "ddp.pt"))
    assert code == 0
    assert f"key mapping: B 'module.…' = A '…' ({len(sd)} tensors)" in out
    code, out, _ = run(capsys, str(tmp_path / "plain.safetensors"), "--diff", str(tmp_path / "ddp.pt"), "--json")
    data = json.loads(out)
    assert code == 0 and data["mapping"] == {"a_prefix": "", "b_prefix": "module.", "count": len(sd), "found": "known"}
    assert {t["other"] for t in data["tensors"]} == {"module." + k for k in sd}


def test_dtype_shape_dropped_and_added_keys(tmp_path, capsys):
    sd = weights()
    other = dict(sd)
    other["layers.0.q.weight"] = sd["layers.0.q.weight"].half()
    other["layers.1.q.weight"] = torch.zeros(12, 9)
    del other["head.weight"]
    other["extra.bias"] = torch.zeros(4)
    save_file(sd, str(tmp_path / "a.safetensors"))
    save_file(other, str(tmp_path / "b.safetensors"))
    code, out, _ = run(capsys, str(tmp_path / "a.safetensors"), "--diff", str(tmp_path / "b.safetensors"))
    assert code == 1
    assert "float32 → float16" in out and "[12, 8] → [12, 9]" in out
    assert "+ only in A: head.weight" in out and "− only in B: extra.bias" in out
    code, out, _ = run(capsys, str(tmp_path / "a.safetensors"), "--diff", str(tmp_path / "b.safetensors"), "--json")
    data = json.loads(out)
    by = {t["name"]: t for t in data["tensors"]}
    assert by["layers.0.q.weight"]["other_dtype"] == "float16" and by["layers.0.q.weight"]["status"] == "changed"
    assert by["layers.1.q.weight"]["status"] == "shape" and by["layers.1.q.weight"]["other_shape"] == [12, 9]
    assert [t["name"] for t in data["only_a"]] == ["head.weight"] and [t["name"] for t in data["only_b"]] == ["extra.bias"]


def test_a_live_model_against_a_checkpoint(tmp_path, capsys, ckpts):
    code, out, _ = run(capsys, "sample_models.checkpoints:model_for_checkpoints", "--diff", ckpts["state_dict.pt"])
    assert code == 0, out
    code, out, _ = run(capsys, "sample_models.zoo:TinyGPT", "--diff", ckpts["state_dict.pt"], "--json")
    data = json.loads(out)
    assert code == 1 and data["counts"]["shape"] > 0  # another size of the same architecture


def test_scan_clean_and_flagged(tmp_path, capsys):
    sd = weights()
    save_file(sd, str(tmp_path / "clean.safetensors"))
    code, out, _ = run(capsys, str(tmp_path / "clean.safetensors"), "--scan")
    assert code == 0 and "clean: none of 11 tensors flagged" in out
    sd["layers.2.q.weight"][1, 1] = float("nan")
    sd["layers.4.mlp.weight"] = sd["layers.4.mlp.weight"] * 20
    save_file(sd, str(tmp_path / "bad.safetensors"))
    code, out, _ = run(capsys, str(tmp_path / "bad.safetensors"), "--scan")
    assert code == 1
    assert any(line.startswith("nan") and "layers.2.q.weight" in line for line in out.splitlines())
    assert any(line.startswith("outlier") and "layers.4.mlp.weight" in line for line in out.splitlines())
    code, out, _ = run(capsys, str(tmp_path / "bad.safetensors"), "--scan", "--json")
    data = json.loads(out)
    assert code == 1 and data["flagged"] == 2 and data["tensors"] == 11
    nan = next(f for f in data["flags"] if f["flag"] == "nan")
    assert nan["name"] == "layers.2.q.weight" and nan["figures"]["nan"] == 1
    stats = {s["name"]: s for s in data["stats"]}
    assert stats["layers.2.q.weight"]["nan"] == 1 and len(stats) == 11


@pytest.mark.parametrize("argv, words", [
    (["--diff", "X", "--scan"], "separate runs"),
    (["--diff", "X", "--save", "out.safetensors"], "separate runs"),
])
def test_conflicting_options_one_line_exit_2(tmp_path, capsys, argv, words):
    save_file(weights(), str(tmp_path / "a.safetensors"))
    argv = [str(tmp_path / "a.safetensors")] + [str(tmp_path / "a.safetensors") if x == "X" else x for x in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err


def test_nothing_in_common_and_missing_other_exit_2(tmp_path, capsys):
    save_file(weights(), str(tmp_path / "a.safetensors"))
    save_file({"totally.different": torch.zeros(5)}, str(tmp_path / "b.safetensors"))
    code, out, err = run(capsys, str(tmp_path / "a.safetensors"), "--diff", str(tmp_path / "b.safetensors"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "no tensor in common" in err
    code, out, err = run(capsys, str(tmp_path / "a.safetensors"), "--diff", str(tmp_path / "nope.pt"))
    assert code == 2 and err.count("\n") == 1 and "no such file" in err


def test_hostile_names_are_shown_escaped(tmp_path, capsys):
    evil = "x\x1b]2;owned\x07.weight"
    save_file({evil: torch.zeros(2), "y": torch.ones(2)}, str(tmp_path / "a.safetensors"))
    save_file({evil: torch.ones(2), "y": torch.ones(2)}, str(tmp_path / "b.safetensors"))
    code, out, _ = run(capsys, str(tmp_path / "a.safetensors"), "--diff", str(tmp_path / "b.safetensors"))
    assert code == 1 and "\x1b" not in out and "\\x1b]2;owned\\x07.weight" in out


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_only_on_a_terminal():
    tty = FakeTty()
    bar = ProgressLine("comparing", tty)
    bar.update(50, 100)
    bar.update(100, 100)
    bar.close()
    text = tty.getvalue()
    assert "comparing  50%" in text and "comparing 100%" in text and text.endswith("\r\x1b[K")
    plain = io.StringIO()
    bar = ProgressLine("comparing", plain)
    bar.update(1, 2)
    bar.close()
    assert plain.getvalue() == ""


def test_ctrl_c_stops_a_threaded_run():
    """An interrupt in the main thread stops every worker at its next chunk and propagates."""
    import _thread
    import threading
    import time

    from modeltui.core.workpool import run_items

    started = threading.Event()
    stopped = []

    def work(item, stop):
        started.set()
        if item == 0:
            _thread.interrupt_main()
        t0 = time.monotonic()
        while not stop() and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        stopped.append(time.monotonic() - t0)
        return item

    with pytest.raises(KeyboardInterrupt):
        run_items(list(range(6)), work, workers=2)
    assert started.is_set() and stopped and max(stopped) < 5


def test_sigint_exits_130_in_a_real_process(tmp_path):
    """The installed command: Ctrl-C during a diff ends with 130 and one line."""
    import signal
    import time

    g = torch.Generator().manual_seed(0)
    sd = {f"t{i}": torch.randn(1 << 20, generator=g) for i in range(48)}  # 192 MiB a side
    save_file(sd, str(tmp_path / "a.safetensors"))
    save_file({k: v + 1 for k, v in sd.items()}, str(tmp_path / "b.safetensors"))
    proc = subprocess.Popen([sys.executable, "-m", "modeltui", str(tmp_path / "a.safetensors"), "--diff",
                             str(tmp_path / "b.safetensors")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 1:
        pytest.skip("the diff finished before the signal (a fast machine)")
    assert proc.returncode == 130 and err.decode().strip() == "modeltui: interrupted"
