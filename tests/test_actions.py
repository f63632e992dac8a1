"""The one key table drives bindings, footer, palette, help and the README."""

import os
import re

from modeltui.ui.actions import ACTIONS, NAVIGATION, bindings, help_rows
from modeltui.ui.app import ModelTuiApp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_keys() -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    start = text.index("| key | action |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip().strip("`"))
    return rows


def test_every_action_has_a_method_and_a_binding():
    keys = {b.key: b.action for b in bindings()}
    for a in ACTIONS:
        assert callable(getattr(ModelTuiApp, f"action_{a.action}", None)), a.action
        assert keys[a.key] == a.action
    assert len({a.key for a in ACTIONS}) == len(ACTIONS), "a key is bound twice"


def test_help_lists_every_action():
    rows = dict(help_rows())
    for a in ACTIONS:
        assert rows[a.display_key] == a.help


async def test_palette_offers_every_action(settle):
    app = ModelTuiApp("sample_models.book:make_param_net")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {a.title for a in ACTIONS if a.palette} <= titles


def test_readme_key_table_matches_the_action_table():
    documented = readme_keys()
    expected = [a.display_key for a in ACTIONS] + [k for k, _ in NAVIGATION]
    assert sorted(documented) == sorted(expected)


async def test_footer_fits_80_columns_with_help_and_quit(settle):
    from textual.widgets._footer import FooterKey

    app = ModelTuiApp("sample_models.book:make_param_net")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        shown = [fk for fk in app.screen.query(FooterKey) if fk.region.width]
        assert all(fk.region.right <= 80 for fk in shown)
        descriptions = {re.sub(r"\s+", " ", fk.description) for fk in shown}
        assert {"Help", "Quit", "Find"} <= descriptions


def test_the_docs_link_only_what_a_clone_has():
    """Issue 10 item 18: every relative link of README.md and ARCHITECTURE.md names a file of the repository."""
    for doc in ("README.md", "ARCHITECTURE.md"):
        text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://|#|mailto:", target):
                continue
            path = os.path.normpath(os.path.join(ROOT, target.split("#")[0]))
            assert path.startswith(ROOT + os.sep) and os.path.exists(path), f"{doc} links {target}, which a clone does not have"
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert not re.findall(r"`\.\./[^`]*`", readme), "README.md points outside the repository"
