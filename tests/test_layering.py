"""Architecture rules of DESIGN.md section 4, checked in a fresh interpreter."""

import subprocess
import sys


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    )
    return set(out.stdout.split())


def test_core_imports_neither_textual_nor_rich():
    mods = modules_after("import modeltui.core, modeltui.core.targets, modeltui.core.stats, modeltui.core.readers, modeltui.core.describe")
    assert not any(m == "textual" or m.startswith("textual.") for m in mods)
    assert not any(m == "rich" or m.startswith("rich.") for m in mods)


def test_importing_core_does_not_import_torch():
    # torch takes over a second to import: the first paint must not wait for it
    mods = modules_after("import modeltui.core, modeltui.cli")
    assert "torch" not in mods


def test_core_source_never_mentions_ui_libraries():
    import pathlib

    import modeltui.core

    root = pathlib.Path(modeltui.core.__file__).parent
    for f in root.rglob("*.py"):
        text = f.read_text()
        for lib in ("textual", "rich", "modeltui.ui"):
            assert f"import {lib}" not in text and f"from {lib}" not in text, (f, lib)


def test_import_contracts_hold():
    """import-linter checks the contracts in pyproject.toml (core below ui/cli, no textual or rich in core)."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    out = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout
