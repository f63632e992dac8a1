"""Key surgery in the app: rename (r), drop (x / delete), freeze (z), wrapper prefixes, exporting the session.

A mixin of :class:`modeltui.ui.app.ModelTuiApp` (it uses ``opened``,
``session``, ``main``, ``say``, ``_need_session`` and ``refresh_views``).
Every change goes through :mod:`modeltui.core.keys` and so the session;
the work runs in a thread worker that posts :class:`KeyEditDone`.
"""

from __future__ import annotations

import os
import re
from typing import Callable

from textual import work

from modeltui.core.errors import ModelTuiError
from modeltui.format import visible
from modeltui.ui.messages import KeyEditDone


class KeyActions:
    """Rename, drop, freeze and the prefix offers (mixed into the app)."""

    _wrapper = ""  # the wrapper prefix the open checkpoint's keys all start with (said at open)

    def _node(self) -> str:
        module, tensor = self.main.selection()
        return tensor if tensor is not None else (module or "")

    def action_rename(self) -> None:
        if not self._need_session("rename"):
            return
        from modeltui.core.keys import current_keys
        from modeltui.core.keyplan import wrapper_prefix
        from modeltui.ui.dialogs import RenameDialog

        node = self._node()
        pattern = replacement = ""
        prefix = wrapper_prefix(current_keys(self.opened).values()) if not node else ""
        if prefix:  # the root of a checkpoint whose keys all carry a wrapper's prefix: offer its strip
            pattern = "^" + re.escape(prefix)
        self.push_screen(RenameDialog(self.session, node, pattern=pattern, replacement=replacement), self._key_edited)

    def _key_edited(self, result) -> None:
        if not result:
            return
        desc, moved = result
        self.refresh_views()
        if moved:
            from modeltui.ui.widgets import NodeRef

            info = self.opened.info
            kind = "module" if moved in info.modules else "tensor" if moved in info.tensors else ""
            if kind:
                self.main.goto(NodeRef(kind, moved))
        self.say(desc, title="Done", timeout=5)

    def action_drop(self) -> None:
        if not self._need_session("drop"):
            return
        from modeltui.core.keys import drop, plan_drop
        from modeltui.core.session import EditError
        from modeltui.ui.dialogs import Confirm

        path = self._node()
        try:
            plan = plan_drop(self.opened, path)
        except EditError as e:
            self.say(str(e), severity="warning")
            return
        from modeltui.core.keys import is_bare

        where = "" if is_bare(self.opened) else " It is left out of what is saved; the model keeps it."
        question = f"{plan.question()}{where} u undoes."

        def answer(yes: bool | None) -> None:
            if yes:
                self.run_key_edit("Dropped", lambda: drop(self.session, path))

        self.push_screen(Confirm(question, "Drop", "Keep"), answer)

    def action_freeze(self) -> None:
        if self._is_bare():
            self.say("a checkpoint without an architecture does not train: freezing needs a model "
                     "(open it as pkg.mod:Net -w CKPT)", severity="warning")
            return
        if not self._need_session():
            return
        from modeltui.core.keys import freeze

        path = self._node()
        self.run_key_edit("Freeze", lambda: freeze(self.session, path))

    # ------------------------------------------------------------ wrapper prefixes

    def offer_prefix_strip(self) -> None:
        """After opening: a checkpoint whose keys all carry a wrapper's prefix, or -w keys that fit only without one."""
        from modeltui.core.keyplan import describe_wrapper
        from modeltui.core.keys import wrapper_on_open

        prefix = wrapper_on_open(self.opened)
        if prefix:
            # said, not asked: opening to look must not wait on a question; r on the root offers the strip
            self._wrapper = prefix
            self.say(f"Every key of {os.path.basename(self.opened.info.label)} starts with {describe_wrapper(prefix)}. "
                     "Press r on the root to strip it (the rename dialog opens with it filled in; the file is not changed).",
                     title="Wrapper prefix", timeout=12)
            return
        report = getattr(self.opened, "weights", None)
        if report is not None and report.fit_prefix and self.session is not None:
            self.offer_weights_strip(report.path, report.fit_prefix)

    def offer_weights_strip(self, path: str, prefix: str) -> None:
        from modeltui.core.keyplan import describe_wrapper
        from modeltui.core.weights import load_weights_into
        from modeltui.ui.dialogs import Confirm

        question = (f"The keys of {visible(os.path.basename(path))} fit the model once the prefix {describe_wrapper(prefix)} "
                    "is stripped. Load them that way? u undoes.")

        def answer(yes: bool | None) -> None:
            if yes:
                self.run_key_edit("Weights", lambda: _loaded(load_weights_into(self.session, path, trust=self.trust, strip=prefix)))

        self.push_screen(Confirm(question, "Load", "Leave"), answer)

    # ------------------------------------------------------------ export

    def action_export_script(self) -> None:
        if self.opened is None:
            self.say("the target is not open yet", severity="warning")
            return
        if self.session is None or not self.session.undo_stack:
            self.say("nothing to export yet: the script repeats the edits of this session", severity="warning")
            return
        from modeltui.ui.dialogs.export import ExportDialog

        self.push_screen(ExportDialog(self.session, self.request), self._exported)

    def _exported(self, report) -> None:
        if report:
            self.say(report, title="Exported", timeout=10)

    # ------------------------------------------------------------ running

    @work(thread=True, exclusive=False, exit_on_error=False, group="keys")
    def run_key_edit(self, title: str, job: Callable[[], str | list[str]]) -> None:
        """Run a key edit off the UI thread (the session's lock keeps edits in order)."""
        try:
            desc = job()
        except ModelTuiError as e:
            self.post_message(KeyEditDone(title, error=str(e)))
            return
        self.post_message(KeyEditDone(title, desc))

    def on_key_edit_done(self, message: KeyEditDone) -> None:
        if message.error:
            self.say(message.error, title=message.title, severity="warning", timeout=8)
            return
        self.refresh_views()
        self.say(message.description, title=message.title, timeout=6)


def _loaded(report) -> list[str]:
    return [f"{len(report.loaded)} tensors loaded from {os.path.basename(report.path)}"] + report.lines()[:5]
