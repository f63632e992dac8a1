"""The device / dtype dialog: a device move with a progress bar (escape cancels), and an undoable cast."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Input, Label, ProgressBar, Select
from textual.worker import get_current_worker

from modeltui.core.errors import Cancelled, ModelTuiError
from modeltui.format import fmt_bytes, visible
from modeltui.ui.dialogs.base import Dialog, JobRefused
from modeltui.ui.messages import JobFailed, ModelChanged, Progress


class DeviceDialog(Dialog[str]):
    """Move the model to a device and/or cast its floating-point tensors."""

    OK = "Apply"

    def __init__(self, session, devices):
        super().__init__()
        self.session = session
        self.devices = devices

    def title_text(self) -> str:
        return "Device and dtype"

    def body(self) -> ComposeResult:
        current = self.session.opened.device
        options = []
        for d in self.devices:
            if d.name == "meta":
                continue
            label = f"{d.name}  {visible(d.description, limit=40)}"
            if d.free_bytes is not None:
                label += f"  ({fmt_bytes(d.free_bytes)} free of {fmt_bytes(d.total_bytes or 0)})"
            if d.name == current:
                label += "  ← now"
            options.append((label, d.name))
        values = [v for _, v in options]
        yield Label("device")
        yield Select(options, value=current if current in values else values[0], allow_blank=False, id="device", compact=True)
        yield Label("or type a device (e.g. cuda:1)")
        yield Input(placeholder="e.g. cuda:1 (blank: the choice above)", id="device-text", compact=True)
        yield Label("dtype of floating-point tensors (a cast is undone with u)")
        info = self.session.opened.info
        yield Select([("keep (" + ", ".join(info.dtypes()) + ")", "keep")] + [(d, d) for d in ("float32", "bfloat16", "float16")],
                     value="keep", allow_blank=False, id="dtype", compact=True)
        yield Label("with a cast: tensors to keep in their dtype (patterns, e.g. *norm* *.bias)")
        yield Input(placeholder="e.g. *norm* *.bias (blank: cast every floating-point tensor)", id="keep", compact=True)
        yield ProgressBar(total=100, show_eta=False, id="progress")

    def on_mount(self) -> None:
        self.query_one("#progress").display = False

    def submit(self) -> None:
        typed = self.query_one("#device-text", Input).value.strip()
        device = typed or str(self.query_one("#device", Select).value)
        dtype = str(self.query_one("#dtype", Select).value)
        keep = tuple(self.query_one("#keep", Input).value.replace(",", " ").split())
        if keep and dtype == "keep":
            self.show_error("patterns to keep go with a cast: choose a dtype")
            return
        if device == self.session.opened.device and dtype == "keep":
            self.show_error(f"the model is already on {visible(device)}; choose another device or a dtype")
            return
        self.query_one("#progress").display = True
        self.start("working… (escape cancels a move)", lambda: self._change(device, dtype, keep))

    def action_cancel(self) -> None:
        running = [w for w in self.workers if w.is_running]
        for w in running:
            w.cancel()
        if not running:
            self.dismiss(None)

    def _change(self, device: str, dtype: str, keep: tuple[str, ...] = ()) -> str:
        """The job (on the worker thread): move, then cast; progress comes back as coalescing messages."""
        from modeltui.core.surgery import cast, move

        worker = get_current_worker()
        last = [-1]

        def progress(done: int, total: int) -> None:
            pct = int(100 * done / max(total, 1))
            if pct != last[0]:
                last[0] = pct
                self.post_message(Progress(done, total))

        done: list[str] = []
        try:
            if device != self.session.opened.device:
                done.append(move(self.session, device, progress=progress, should_stop=lambda: worker.is_cancelled))
            if dtype != "keep":
                done.append(cast(self.session, dtype, keep))
        except Cancelled:
            raise JobRefused("move cancelled: the model stays where it was") from None
        except ModelTuiError as e:
            raise JobRefused(str(e), done) from None
        return "; ".join(done)

    def on_progress(self, message: Progress) -> None:
        self.query_one("#progress", ProgressBar).update(progress=int(100 * message.done / max(message.total, 1)))

    def on_job_failed(self, message: JobFailed) -> None:
        message.prevent_default()  # this replaces Dialog's handler, which would show the bare error over this one
        error = message.error
        if message.done:  # the move worked, the cast did not: say both, stay open
            error = f"{message.done[0]}, but: {error}"
            self.app.post_message(ModelChanged())
        self.show_error(error)
