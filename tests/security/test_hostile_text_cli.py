"""Text from files and user code reaches the terminal with control characters made visible, never as markup.

Tensor names, safetensors ``__metadata__``, pickled global names, class
names and exception messages of user code: ``--summary``, the one-line
errors, the warnings on stderr and the ``--save`` line escape them;
``--json`` keeps them raw (JSON escapes them itself) and stays valid.
"""

import json
import struct
import sys

import pytest

from modeltui.cli import main

HOSTILE_NAMES = [
    "title\x1b]2;PWNED\x1b\\.weight",
    "clear\x1b[2J.bias",
    "forged\nmodeltui: error: fake.w",
    "rtl\u202eevil.x",
    "markup.[/]",
    "markup.[bold red]RED[/]",
    "markup.[link=http://e]y[/link]",
]
HOSTILE_META = {"title\x1b]2;META\x07": "[bold]v\x1b[2J[/bold]", "plain": "[/]"}
RAW = ("\x1b", "\x07", "\u202e")


def _write_safetensors(path, names, metadata):
    header = {"__metadata__": metadata}
    for i, n in enumerate(names):
        header[n] = {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * len(names)))


@pytest.fixture
def hostile(tmp_path):
    path = tmp_path / "hostile.safetensors"
    _write_safetensors(path, HOSTILE_NAMES, HOSTILE_META)
    return str(path)


def _no_raw_controls(text):
    assert not any(c in text for c in RAW), repr(text[:300])


def test_summary_shows_escapes_and_literal_brackets(hostile, capsys):
    assert main([hostile, "--summary"]) == 0
    out, err = capsys.readouterr()
    _no_raw_controls(out)
    for shown in ("\\x1b]2;PWNED\\x1b\\", "\\x1b[2J", "forged\\nmodeltui: error: fake", "\\u202eevil",
                  "[/]", "[bold red]RED[/]", "[link=http://e]y[/link]", "\\x1b]2;META\\x07", "[bold]v\\x1b[2J[/bold]"):
        assert shown in out, shown
    assert not any(line.startswith("modeltui: error") for line in out.splitlines())


def test_json_keeps_the_raw_names_and_stays_valid(hostile, capsys):
    assert main([hostile, "--json"]) == 0
    out, _ = capsys.readouterr()
    _no_raw_controls(out)
    data = json.loads(out)
    assert {t["name"] for t in data["tensors"]} == set(HOSTILE_NAMES)
    assert data["metadata"]["title\x1b]2;META\x07"] == "[bold]v\x1b[2J[/bold]"


def test_warnings_on_stderr_are_escaped(hostile, capsys):
    assert main(["sample_models.book:make_my_linear_net", "-w", hostile, "--no-strict", "--json"]) == 0
    out, err = capsys.readouterr()
    _no_raw_controls(err)
    assert "unexpected key(s)" in err and "forged\\nmodeltui: error: fake.w" in err
    assert all(line.startswith("modeltui: ") for line in err.splitlines())
    assert json.loads(out)["kind"] == "module"


def test_strict_refusal_names_hostile_keys_in_one_escaped_line(hostile, capsys):
    assert main(["sample_models.book:make_my_linear_net", "-w", hostile, "--summary"]) == 2
    _, err = capsys.readouterr()
    _no_raw_controls(err)
    assert err.count("\n") == 1 and "does not fit" in err


def test_save_line_escapes_the_output_name(hostile, tmp_path, capsys):
    out_path = tmp_path / "out\x1b[2J.safetensors"
    assert main([hostile, "--save", str(out_path)]) == 0
    out, _ = capsys.readouterr()
    _no_raw_controls(out)
    assert out.startswith("saved ") and "out\\x1b[2J.safetensors" in out
    assert out_path.exists()


def _hostile_pickle(module: str, name: str) -> bytes:
    def s(text):
        raw = text.encode()
        return b"\x8c" + bytes([len(raw)]) + raw

    return b"\x80\x04" + s(module) + s(name) + b"\x93" + b")R."


def test_refusal_names_hostile_globals_in_one_escaped_line(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(_hostile_pickle("os\x1b]2;OWNED\x07", "system\nmodeltui: error: forged"))
    assert main([str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _no_raw_controls(err)
    assert err.count("\n") == 1 and err.startswith("modeltui: error: evil.pt: refused to load")
    assert "\\x1b]2;OWNED\\x07" in err and "\\nmodeltui: error: forged" in err


def test_hostile_file_name_in_an_error_is_escaped(tmp_path, capsys):
    path = tmp_path / "bad\x1b[2J\nmodeltui: error: x.pt"
    path.write_bytes(b"garbage")
    assert main([str(path), "--summary"]) == 2
    _, err = capsys.readouterr()
    _no_raw_controls(err)
    assert err.count("\n") == 1 and "bad\\x1b[2J\\nmodeltui" in err


USER_CODE = """
import torch
from torch import nn

Evil = type("Evil\\x1b]2;CLASS\\x07[bold]", (nn.Module,), {})

def evil_class():
    m = Evil()
    m.fc = nn.Linear(1, 1)
    return m

def evil_error():
    raise RuntimeError("boom\\x1b]2;PWN\\x07\\nmodeltui: error: forged")
"""


def test_user_class_names_and_exception_messages_are_escaped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "evil_user.py").write_text(USER_CODE)
    assert main(["evil_user.py:evil_class", "--summary"]) == 0
    out, _ = capsys.readouterr()
    _no_raw_controls(out)
    assert "Evil\\x1b]2;CLASS\\x07[bold]" in out
    assert main(["evil_user.py:evil_error", "--json"]) == 2
    _, err = capsys.readouterr()
    _no_raw_controls(err)
    assert err.count("\n") == 1 and "boom\\x1b]2;PWN\\x07\\nmodeltui: error: forged" in err


def test_a_long_hostile_name_does_not_squeeze_the_columns_out(tmp_path, capsys):
    """One 200-character name used to take the table's width: shape, dtype and params vanished from every row."""
    path = tmp_path / "long.safetensors"
    _write_safetensors(path, ["x\x1b[2J" * 60, "short"], {})
    assert main([str(path), "--summary"]) == 0
    out, _ = capsys.readouterr()
    _no_raw_controls(out)
    assert "shape" in out.splitlines()[2] and "params" in out.splitlines()[2]
    rows = [line for line in out.splitlines()[3:] if " tensor " in line]
    assert len(rows) == 2 and all("[1]" in r and "float32" in r for r in rows), rows
    assert all(len(line) <= 140 for line in out.splitlines())
