"""The forward-pass actions of the app: the dialog, the run in a worker, its result and cancelling it."""

from __future__ import annotations

from textual import work
from textual.worker import get_current_worker

from modeltui.ui.messages import ForwardFinished

STUCK_AFTER = 2.0  # seconds a cancelled forward pass may take to notice before we say it cannot be stopped


class ForwardActions:
    """Run the model on random inputs (mixed into the app)."""

    def action_forward(self) -> None:
        if self._is_bare():
            self.say("a checkpoint without an architecture cannot run: open the model with pkg.mod:Net -w CKPT", severity="warning")
            return
        if not self._need_session():
            return
        from modeltui.core.inputs import infer_input_specs
        from modeltui.ui.dialogs import ForwardDialog

        specs = self.input_specs or infer_input_specs(self.opened.model)
        self.push_screen(ForwardDialog(specs, self.opened.model), self._forward_chosen)

    def _forward_chosen(self, specs) -> None:
        if not specs:
            return
        from modeltui.core.forward import runs_inside

        if runs_inside(self.opened.model):
            self.say("an earlier forward pass is still running in the background (it cannot be interrupted); "
                     "this one runs on its own", severity="warning", timeout=6)
        self.input_specs = specs
        self.say("running forward pass… (escape cancels)", timeout=3)
        self.run_forward_pass(specs)

    @work(thread=True, exclusive=True, exit_on_error=False, group="forward")
    def run_forward_pass(self, specs) -> None:
        from modeltui.core.forward import run_forward
        from modeltui.core.preview import value_grid
        from modeltui.core.slicing import default_slice
        from modeltui.core.stats import tensor_stats

        from modeltui.core.forward import ForwardRun

        worker = get_current_worker()
        run = ForwardRun(should_stop=lambda: worker.is_cancelled)
        self._forward_run = run
        result = run_forward(self.opened.model, specs, run=run)
        if run is not self._forward_run or (worker.is_cancelled and result.error != "cancelled"):
            # a newer run replaced this one (a stuck run ending late, even as "cancelled"): its result is not wanted
            return
        self.opened.refresh()  # lazy modules may have materialised; a big model takes a while
        stats, grids = [], []
        for out in result.outputs[:4]:
            try:
                stats.append(tensor_stats(out.float() if out.is_complex() else out))
            except Exception:
                stats.append(None)
            try:
                grids.append(value_grid(out, default_slice(tuple(out.shape))))
            except Exception:
                grids.append(None)
        self.post_message(ForwardFinished(result, stats, grids))

    def on_forward_finished(self, message: ForwardFinished) -> None:
        from modeltui.ui.dialogs import ForwardResultScreen

        result = message.result
        self.forward_records = result.records
        self.refresh_views()
        if result.error == "cancelled":
            self.say("forward pass cancelled", severity="warning")
            return
        if not result.ok:
            self.say(result.error, title="Forward pass failed", severity="error", timeout=10)
        self.push_screen(ForwardResultScreen(result, message.stats, message.grids))

    def action_cancel_forward(self) -> None:
        running = [w for w in self.workers if w.group == "forward" and w.is_running]
        for w in running:
            w.cancel()
        run = getattr(self, "_forward_run", None)
        if run is not None:
            run.cancel()
        if not running:
            self.say("no forward pass is running")
            return
        self.set_timer(STUCK_AFTER, lambda: self._check_stuck(run))

    def _check_stuck(self, run) -> None:
        if run is not None and run.inside and run.seconds_since_progress() >= STUCK_AFTER:
            self.say("the forward pass cannot be interrupted: it is running Python code that calls no submodule. "
                     "It continues in the background and its result will be dropped; f starts a new run.",
                     severity="warning", timeout=10)
