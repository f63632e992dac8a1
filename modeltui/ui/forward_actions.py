"""The forward-pass actions of the app: the dialog, the run (and backward) in a worker, its result,
cancelling it, the layers view of the last runs, and clearing the grads.

Grads are scratch state (not in the state_dict): a backward or "zero grads"
never marks the model unsaved and is not undone with u; both hold the
session's lock, so no edit runs meanwhile. A backward that fails leaves
every grad as it was (see ``core.backward``). An undo or redo puts a
tensor back whole, its grad included (the session records it): the grad
norms shown are those of the last backward's grads that are still there.
"""

from __future__ import annotations

import contextlib
import weakref

from textual import work
from textual.worker import get_current_worker

from modeltui.ui.messages import ForwardFinished, GradsZeroed

STUCK_AFTER = 2.0  # seconds a cancelled forward pass may take to notice before we say it cannot be stopped
KEPT_RUNS = 2  # runs the layers view can show side by side


class ForwardActions:
    """Run the model on random inputs, with or without a backward pass (mixed into the app)."""

    def action_forward(self) -> None:
        if self._is_bare():
            self.say("a checkpoint without an architecture cannot run: open the model with pkg.mod:Net -w CKPT", severity="warning")
            return
        if not self._need_session():
            return
        from modeltui.core.inputs import infer_input_specs
        from modeltui.ui.dialogs import ForwardDialog

        specs = self.input_specs or infer_input_specs(self.opened.model)
        self.push_screen(ForwardDialog(specs, self.opened.model, self.forward_choice), self._forward_chosen)

    def _forward_chosen(self, choice) -> None:
        if not choice or not choice.specs:
            return
        from modeltui.core.forward import runs_inside

        if runs_inside(self.opened.model):
            self.say("an earlier forward pass is still running in the background (it cannot be interrupted); "
                     "this one runs on its own", severity="warning", timeout=6)
        self.input_specs = choice.specs
        self.forward_choice = choice
        what = f"forward and backward ({choice.loss})" if choice.loss else "forward"
        self.say(f"running {what} pass… (escape cancels)", timeout=3)
        self.run_forward_pass(choice)

    def _session_lock(self):
        return self.session.lock if self.session is not None else contextlib.nullcontext()

    @work(thread=True, exclusive=True, exit_on_error=False, group="forward")
    def run_forward_pass(self, choice) -> None:
        from modeltui.core.backward import BackwardError, run_backward
        from modeltui.core.forward import ForwardResult, ForwardRun, run_forward
        from modeltui.core.preview import value_grid
        from modeltui.core.slicing import default_slice
        from modeltui.core.stats import tensor_stats

        worker = get_current_worker()
        run = ForwardRun(should_stop=lambda: worker.is_cancelled)
        self._forward_run = run
        specs = list(choice.specs)
        if choice.loss:
            try:
                with self._session_lock():  # no edit while the grads are made
                    result = run_backward(self.opened.model, specs, choice.loss, accumulate=choice.accumulate, run=run)
            except BackwardError as e:
                result = ForwardResult(specs, error=str(e))
        else:
            result = run_forward(self.opened.model, specs, run=run)
        if run is not self._forward_run or (worker.is_cancelled and result.error != "cancelled"):
            # a newer run replaced this one (a stuck run ending late, even as "cancelled"): its result is not wanted
            return
        self.opened.refresh()  # lazy modules may have materialised, grads appeared; a big model takes a while
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
        if result.records or result.ok:  # a backward refused before running leaves the last run's marks
            self.forward_records = result.records
        if result.loss_kind and result.ok:
            self._keep_grad_norms(result.grad_norms)
        self._remember(result)
        self.refresh_views()
        if result.error == "cancelled":
            self.say("forward pass cancelled", severity="warning")
            return
        if not result.ok:
            self.say(result.error, title="Forward pass failed", severity="error", timeout=10)
        self._show_nonfinite(result)
        self.push_screen(ForwardResultScreen(result, message.stats, message.grids))

    def _keep_grad_norms(self, norms: dict[str, float]) -> None:
        """The norms of the grads just made, and (weakly) the grads they are of."""
        self.grad_norms = dict(norms)
        self._grad_refs = {}
        for name in norms:
            t = self.opened.tensors.get(name)
            if t is not None and t.grad is not None:
                self._grad_refs[name] = weakref.ref(t.grad)

    def current_grad_norms(self) -> dict[str, float]:
        """The last backward's grad norms whose grad is still the tensor's grad (an undo may have put another back)."""
        refs = getattr(self, "_grad_refs", {})
        tensors = self.opened.tensors if self.opened is not None else {}
        kept = {}
        for name, norm in self.grad_norms.items():
            t, ref = tensors.get(name), refs.get(name)
            if t is not None and ref is not None and t.grad is not None and ref() is t.grad:
                kept[name] = norm
        self.grad_norms = kept
        return kept

    def started_with(self, result) -> None:
        """The pass run at open (``-i``): its marks are in the tree at once, and it is the layers view's first run."""
        self.forward_records = dict(result.records)
        self._remember(result)

    def _remember(self, result) -> None:
        """Keep the run for the layers view (with the one before it), and its non-finite modules for the tree."""
        if result.error == "cancelled" or not result.order:
            return
        self.runs = (self.runs + [result])[-KEPT_RUNS:]
        bad = {p for p in result.order if result.records[p].summary is not None and not result.records[p].summary.finite}
        self.main.show_run(bad, self.grad_norms)

    def _show_nonfinite(self, result) -> None:
        """Select the first module whose output held NaN or Inf, and say so."""
        path = result.first_nonfinite
        if path is None or self.info is None or path not in self.info.modules:
            return
        from modeltui.ui.widgets import NodeRef

        self.goto(NodeRef("module", path))
        rec = result.records[path]
        self.say(f"first NaN/Inf output: '{path or '(root)'}' ({rec.type}); the tree is on it (l: every layer)",
                 title="Non-finite output", severity="warning", timeout=10)

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

    # ------------------------------------------------------------ the layers view

    def action_layers(self) -> None:
        if not self.runs:
            self.say("no run yet: press f for a forward pass (with a loss for grads), then l", severity="warning")
            return
        from modeltui.ui.screens import LayersScreen

        before = self.runs[-2] if len(self.runs) > 1 else None
        self.push_screen(LayersScreen(self.runs[-1], before), self._layer_chosen)

    def _layer_chosen(self, path: str | None) -> None:
        if path is not None and self.info is not None and path in self.info.modules:
            from modeltui.ui.widgets import NodeRef

            self.goto(NodeRef("module", path))

    # ------------------------------------------------------------ grads

    def action_zero_grads(self) -> None:
        if self.opened is None or self.opened.model is None:
            self.say("only a model has grads (a checkpoint without an architecture has none)", severity="warning")
            return
        if any(w.group == "forward" and w.is_running for w in self.workers):
            self.say("a forward pass is running: wait for it (or escape), then clear the grads", severity="warning")
            return
        self.clear_grads()

    @work(thread=True, exclusive=True, exit_on_error=False, group="grads")
    def clear_grads(self) -> None:
        from modeltui.core.backward import zero_grads

        with self._session_lock():
            count = zero_grads(self.opened.model)
        self.opened.refresh()
        self.post_message(GradsZeroed(count))

    def on_grads_zeroed(self, message: GradsZeroed) -> None:
        self._keep_grad_norms({})
        self.main.show_run(None, self.grad_norms)
        self.refresh_views()
        self.say(f"cleared the grads of {message.count:,} parameter(s) (set to None; not an edit: nothing to save or undo)"
                 if message.count else "no parameter has a grad", timeout=5)
