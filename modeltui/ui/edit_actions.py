"""The editing actions of the app: every change goes through the core's session.

A mixin of :class:`modeltui.ui.app.ModelTuiApp` (it uses the app's ``opened``,
``session``, ``main`` and ``say``): initialise, edit values, tie, load
weights, save, device and dtype, undo and redo. A checkpoint without an
architecture is made editable on its first edit, behind a busy screen that
takes every key meanwhile.
"""

from __future__ import annotations

import os

from textual import work

from modeltui.core.errors import ModelTuiError
from modeltui.ui.messages import DevicesListed, EditingFailed, EditingReady, HistoryDone, ModelChanged


class EditActions:
    """Actions that change the model (mixed into the app)."""

    def _need_session(self, then: str | None = None) -> bool:
        """True when edits can go through the session now.

        A checkpoint without an architecture is made editable on the first
        edit (in a worker); meanwhile a busy screen takes every key, and
        ``then`` (the action) runs once it is ready.
        """
        group = self.main.on_group() if self.opened is not None else None
        if group is not None:
            self.say(f"{group} is a group of identical blocks: expand it (→) and select one of them, "
                     "or press b to list every block", severity="warning")
            return False
        if self.session is not None:
            return True
        if self.opened is None:
            self.say("the target is not open yet", severity="warning")
        elif then is not None and self.opened.model is None and self.opened.source is not None:
            from modeltui.ui.dialogs import BusyScreen

            self._pending = then
            self.push_screen(BusyScreen("Opening the checkpoint's tensors for editing (the file itself is never changed)…"),
                             self._busy_closed)
            if not any(w.group == "prepare" and w.is_running for w in self.workers):
                self.prepare_editing(then)
        return False

    def _busy_closed(self, ready: bool | None) -> None:
        if ready and self._pending:
            then, self._pending = self._pending, None
            getattr(self, f"action_{then}")()
        else:
            self._pending = None

    @work(thread=True, exclusive=True, exit_on_error=False, group="prepare")
    def prepare_editing(self, then: str) -> None:
        from modeltui.core.editable import make_editable

        try:
            make_editable(self.opened)
        except Exception as e:
            self.post_message(EditingFailed(str(e) if isinstance(e, ModelTuiError) else f"{type(e).__name__}: {e}"))
            return
        self.post_message(EditingReady(then))

    def on_editing_ready(self, message: EditingReady) -> None:
        from modeltui.core.session import Session
        from modeltui.ui.dialogs import BusyScreen

        self.session = Session(self.opened)
        self.refresh_views()
        if isinstance(self.screen, BusyScreen):
            self.screen.dismiss(True)

    def on_editing_failed(self, message: EditingFailed) -> None:
        from modeltui.ui.dialogs import BusyScreen

        self._pending = None
        if isinstance(self.screen, BusyScreen):
            self.screen.dismiss(False)
        self.say(message.error, title="Cannot edit", severity="error", timeout=10)

    def _is_bare(self) -> bool:
        from modeltui.core.editable import is_bare

        return self.opened is not None and is_bare(self.opened)

    def action_initialise(self) -> None:
        if not self._need_session("initialise"):
            return
        from modeltui.ui.dialogs import InitDialog

        module, tensor = self.main.selection()
        self.push_screen(InitDialog(self.session, module=module, tensor=tensor, memory=self.init_memory), self._initialised)

    def _initialised(self, report) -> None:
        if report is None:
            return
        from modeltui.core.preview import fmt_value

        self.refresh_views()
        lines = [report.description]
        for n in report.names[:3]:
            b, a = report.before.get(n), report.after.get(n)
            if b and a:
                lines.append(f"{n}: mean {fmt_value(b.mean)} → {fmt_value(a.mean)}, std {fmt_value(b.std)} → {fmt_value(a.std)}")
        if len(report.names) > 3:
            lines.append(f"… and {len(report.names) - 3} more tensors")
        from modeltui.core.editing import not_saved_reason

        lost = [n for n in report.names if not_saved_reason(self.session, n)]
        if lost:
            lines.append(f"not in the state_dict, so no save keeps: {', '.join(lost[:3])}" + ("…" if len(lost) > 3 else ""))
        skipped = getattr(report, "skipped", [])
        if skipped:
            lines.append(f"skipped {len(skipped)} weight(s) with too few dimensions: {', '.join(skipped[:3])}"
                         + ("…" if len(skipped) > 3 else ""))
        self.say(lines, title="Initialised", timeout=8)

    def action_edit_values(self) -> None:
        if not self._need_session("edit_values"):
            return
        name = self.main.selected_tensor()
        if name is None or name not in self.info.tensors:
            self.say("select a tensor first (its values are what e edits)", severity="warning")
            return
        from modeltui.ui.dialogs import EditDialog

        self.push_screen(EditDialog(self.session, name), self._edited)

    def _edited(self, desc) -> None:
        if desc:
            self.refresh_views()
            self.say(desc, title="Done", timeout=5)

    def on_model_changed(self, message: ModelChanged) -> None:
        self.refresh_views()

    def action_tie(self) -> None:
        if not self._need_session("tie"):
            return
        from modeltui.ui.dialogs import TieDialog

        module, tensor = self.main.selection()
        self.push_screen(TieDialog(self.session, tensor if tensor is not None else module or ""), self._edited)

    def action_load_weights(self) -> None:
        if self._is_bare():
            self.say("weights load onto an architecture: open the model (pkg.mod:Net), then press w", severity="warning")
            return
        if not self._need_session():
            return
        from modeltui.ui.dialogs import WeightsDialog

        self.push_screen(WeightsDialog(self.session, self.trust), self._weights_loaded)

    def _weights_loaded(self, report) -> None:
        if report is None:
            return
        self.refresh_views()
        lines = [f"{len(report.loaded)} tensors loaded from {os.path.basename(report.path)}"] + report.lines()
        bad = report.missing or report.unexpected or report.mismatched
        self.say(lines[:6], title="Weights", severity="warning" if bad else "information", timeout=12)

    def action_save(self) -> None:
        if self.opened is None:
            self.say("the target is not open yet", severity="warning")
            return
        from modeltui.core.save_checks import default_save_path
        from modeltui.ui.dialogs import SaveDialog

        path = default_save_path(self.opened, self.target, self.weights)
        unsaved = getattr(self.session, "unsaved_constants", None)
        module, tensor = self.main.selection()
        subtree = module if module else (self.info.tensors[tensor].module if tensor in self.info.tensors else "")
        self.push_screen(SaveDialog(self.opened, path, unsaved() if unsaved is not None else None,
                                    self.session, subtree=subtree), self._saved)

    def _saved(self, report) -> None:
        if report is None:
            return
        if self.session is not None:
            self.session.mark_saved(report.path)
        self.refresh_views()
        notes = report.notes()
        self.say([report.summary()] + notes, title="Saved", timeout=10,
                 severity="warning" if notes else "information")

    def action_device(self) -> None:
        if self._need_session("device"):
            self.list_devices()

    @work(thread=True, exclusive=True, exit_on_error=False, group="devices")
    def list_devices(self) -> None:
        """List devices off the UI thread: the first CUDA query starts a context (seconds)."""
        from modeltui.core.devices import list_devices

        self.post_message(DevicesListed(list_devices()))

    def on_devices_listed(self, message: DevicesListed) -> None:
        from modeltui.ui.dialogs import DeviceDialog

        self.push_screen(DeviceDialog(self.session, message.devices), self._edited)

    def action_undo(self) -> None:
        self._undo_or_redo("undo", "undid")

    def action_redo(self) -> None:
        self._undo_or_redo("redo", "redid")

    def _undo_or_redo(self, verb: str, done: str) -> None:
        if self.opened is not None and self.session is None:
            self.say(f"nothing to {verb} yet", severity="warning")
        elif self._need_session():
            self.run_history(verb, done)

    @work(thread=True, exclusive=False, exit_on_error=False, group="history")
    def run_history(self, verb: str, done: str) -> None:
        """Undo or redo in a worker (restoring a whole-model edit copies every tensor back)."""
        try:
            desc = getattr(self.session, verb)()  # the session's lock keeps presses in order
        except ModelTuiError as e:
            self.post_message(HistoryDone(done, error=str(e)))
            return
        self.post_message(HistoryDone(done, desc))

    def on_history_done(self, message: HistoryDone) -> None:
        if message.error:
            self.say(message.error, severity="warning")
            return
        self.refresh_views()
        self.say(f"{message.done}: {message.description}", timeout=5)

    def refresh_views(self) -> None:
        """Refresh every view from the session's model."""
        if self.opened is None:
            return
        self.main.show_run(None, self.current_grad_norms())  # an undo may have put older grads back
        self.main.refresh_model(self.session.dirty if self.session else False, self._outputs())
