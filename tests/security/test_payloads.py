"""Malicious pickles never run: not in the core, the CLI or the TUI, not with torch's override set."""

import json
import os
import subprocess
import sys

import pytest
from textual.widgets import Static

from modeltui.cli import main as cli_main
from modeltui.core import UnsafeCheckpointError, open_target
from modeltui.ui.app import ModelTuiApp
from payloads import LIVE_UNDER_TORCH_LOAD

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["os_system.pt", "exec.pt", "eval.pt", "subprocess.pth", "popen.bin", "torch_internal.pt", "lightning_nested.ckpt",
         "legacy_os_system.pt", "importlib.pt", "plain_pickle.pt", "sharded/index.json", "dcp/.metadata"]
EXPECTED_NAMES = {"exec.pt": "builtins.exec", "eval.pt": "builtins.eval", "subprocess.pth": "subprocess.call",
                  "popen.bin": "subprocess.Popen"}


def test_every_payload_is_live_under_an_unsafe_load(payloads):
    """The control: torch.load(weights_only=False) runs each payload (so the refusals below mean something)."""
    files, sentinel = payloads
    code = (
        "import json, os, sys, torch\n"
        "files, sentinel = json.loads(sys.argv[1]), sys.argv[2]\n"
        "ran = {}\n"
        "for name, path in files.items():\n"
        "    if os.path.exists(sentinel): os.remove(sentinel)\n"
        "    try: torch.load(path, weights_only=False)\n"
        "    except BaseException: pass\n"
        "    for _ in range(100):  # Popen runs its command in the background\n"
        "        if os.path.exists(sentinel): break\n"
        "        import time; time.sleep(0.05)\n"
        "    ran[name] = os.path.exists(sentinel)\n"
        "if os.path.exists(sentinel): os.remove(sentinel)\n"
        "print(json.dumps(ran))\n"
    )
    live = {n: files[n][0] for n in LIVE_UNDER_TORCH_LOAD}
    r = subprocess.run([sys.executable, "-c", code, json.dumps(live), sentinel], capture_output=True, text=True, timeout=120)
    ran = json.loads(r.stdout.strip().splitlines()[-1])
    assert ran == {n: True for n in live}, r.stderr[-2000:]
    assert not os.path.exists(sentinel)


def test_names_cover_every_payload(payloads):
    assert sorted(payloads[0]) == sorted(NAMES)


@pytest.mark.parametrize("override", [False, True], ids=["plain", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"])
@pytest.mark.parametrize("name", NAMES)
def test_core_refuses_and_names_what_was_found(payloads, name, override, monkeypatch):
    files, sentinel = payloads
    path, expect = files[name]
    if override:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeCheckpointError) as e:
        open_target(path)
    msg = str(e.value)
    assert expect in msg and "refused" in msg
    assert EXPECTED_NAMES.get(name, expect) in msg
    assert not os.path.exists(sentinel)


@pytest.mark.parametrize("name", NAMES)
def test_cli_in_process_refuses_with_override(payloads, name, monkeypatch, capsys):
    files, sentinel = payloads
    path, expect = files[name]
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    for flag in ("--json", "--summary"):
        assert cli_main([path, flag]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "refused" in err and expect in err and err.count("\n") == 1
    assert not os.path.exists(sentinel)


@pytest.mark.parametrize("name", ["os_system.pt", "lightning_nested.ckpt", "importlib.pt"])
def test_cli_subprocess_refuses_with_override(payloads, name):
    files, sentinel = payloads
    path, expect = files[name]
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    r = subprocess.run([sys.executable, "-m", "modeltui", path, "--json"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert "refused" in r.stderr and expect in r.stderr
    assert not os.path.exists(sentinel)


@pytest.mark.parametrize("name", NAMES)
async def test_tui_refuses_shows_why_and_keeps_running(payloads, name, monkeypatch, settle):
    files, sentinel = payloads
    path, expect = files[name]
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    app = ModelTuiApp(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.load_error and "refused" in app.load_error and expect in app.load_error
        shown = str(app.query_one("#message", Static).render())
        assert "refused" in shown
        await pilot.press("down", "f", "i", "s", "d", "t", "/")  # nothing open: every key answers, nothing breaks
        await pilot.pause()
        assert app.is_running
    assert not os.path.exists(sentinel)


def test_trusted_full_module_loads(ckpts):
    o = open_target(ckpts["full_module.pt"], trust=True)
    assert o.model is not None and o.info.total_params > 0
