"""Broken files: one clear error each, in bounded time and memory, in the core, the CLI and the TUI."""

import json
import os
import subprocess
import sys
import time

import pytest
from textual.widgets import Static

from malformed import make_malformed
from modeltui.cli import main as cli_main
from modeltui.core import CheckpointError, TargetError, open_target
from modeltui.ui.app import ModelTuiApp

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return make_malformed(str(tmp_path_factory.mktemp("malformed")))


def _names():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return sorted(make_malformed(d))


NAMES = _names()


@pytest.mark.parametrize("name", NAMES)
def test_core_gives_the_clear_error_quickly(broken, name):
    path, expect = broken[name]
    t0 = time.perf_counter()
    with pytest.raises(TargetError) as e:
        open_target(path)
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert expect in msg
    assert os.path.basename(path) in msg or "index" in msg  # says which file
    assert "\n" not in msg and len(msg) < 400
    if name.startswith(("st_", "pt_")):
        assert isinstance(e.value, CheckpointError)


@pytest.mark.parametrize("name", NAMES)
def test_cli_one_line_exit_2(broken, name, capsys):
    path, expect = broken[name]
    assert cli_main([path, "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("modeltui: error: ") and err.count("\n") == 1 and expect in err


@pytest.mark.parametrize("name", NAMES)
def test_cli_diff_with_a_broken_second_file_one_line_exit_2(broken, name, capsys, tmp_path):
    """``A --diff BROKEN``: B is reported like any corrupt file, whatever the output format."""
    from safetensors.torch import save_file
    import torch

    good = str(tmp_path / "good.safetensors")
    save_file({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, good)
    path, expect = broken[name]
    for fmt in ([], ["--json"]):
        assert cli_main([good, "--diff", path, *fmt]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("modeltui: error: ") and err.count("\n") == 1 and expect in err


def test_bounded_memory_in_a_fresh_process(broken):
    """Peak RSS after opening every broken file stays within 64 MB of opening a valid one."""
    code = (
        "import json, sys, time\n"
        "from modeltui.core import open_target\n"
        "from modeltui.core.errors import ModelTuiError\n"
        "def hwm():\n"
        "    for l in open('/proc/self/status'):\n"
        "        if l.startswith('VmHWM'): return int(l.split()[1]) * 1024\n"
        "cases = json.loads(sys.argv[1])\n"
        "import torch, safetensors.torch\n"
        "open_target(sys.argv[2]); open_target(sys.argv[3])\n"
        "base = hwm(); out = {}\n"
        "for name, path in cases.items():\n"
        "    t0 = time.perf_counter()\n"
        "    try: open_target(path); r = 'opened'\n"
        "    except ModelTuiError: r = 'error'\n"
        "    out[name] = [r, hwm() - base, time.perf_counter() - t0]\n"
        "print(json.dumps(out))\n"
    )
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc (Linux)")
    import torch
    from safetensors.torch import save_file

    folder = os.path.dirname(broken["st_empty.safetensors"][0])
    good_st, good_pt = os.path.join(folder, "good.safetensors"), os.path.join(folder, "good.pt")
    save_file({"a": torch.ones(10)}, good_st)
    torch.save({"a": torch.ones(10)}, good_pt)
    cases = {n: p for n, (p, _) in broken.items()}
    r = subprocess.run([sys.executable, "-c", code, json.dumps(cases), good_st, good_pt],
                       capture_output=True, text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(HERE)))
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    for name, (outcome, grew, secs) in result.items():
        assert outcome == "error", name
        assert grew < 64 << 20, (name, grew)
        assert secs < 5, (name, secs)


@pytest.mark.parametrize("name", ["st_header_claims_gigabytes.safetensors", "st_overlap.safetensors",
                                  "pt_corrupt_central_directory.pt", "pt_pickle_bomb.pt", "index_missing_shard",
                                  "st_truncated_data.safetensors"])
async def test_tui_shows_the_error_and_keeps_running(broken, name, settle):
    path, expect = broken[name]
    app = ModelTuiApp(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.load_error and expect in app.load_error
        assert "Could not open" in str(app.query_one("#message", Static).render())
        await pilot.press("down", "enter", "question_mark")
        await pilot.pause()
        await pilot.press("escape")
        assert app.is_running
