"""The frame every dialog shares, the job runner, yes / no questions and the busy screen.

A dialog is a ``ModalScreen[Result | None]``: while it is open, keys go to
it or nowhere (modal screens cut the app's bindings off). Its body scrolls
and its buttons stay on screen, so everything fits at 80x24. A job (the
torch work of an edit or a save) runs in a thread worker that posts
:class:`JobDone` / :class:`JobFailed` back; the dialog closes with the
result, or shows the error inline and stays open for a correction.
"""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from modeltui.format import visible
from modeltui.ui.messages import JobDone, JobFailed

R = TypeVar("R")


class JobRefused(Exception):
    """Raised by a job to end with ``message`` shown as it is; ``done`` says what took effect first."""

    def __init__(self, message: str, done: list[str] | None = None) -> None:
        super().__init__(message)
        self.done = list(done or [])


def job_error(e: BaseException) -> str:
    """An exception from a job as one safe line (a user's custom initialiser can raise anything)."""
    from modeltui.core.errors import ModelTuiError

    text = str(e) if isinstance(e, ModelTuiError) else f"{type(e).__name__}: {e}"
    return visible(text, limit=600)


class DialogBody(VerticalScroll, can_focus=False):
    """A dialog's scrolling body: the mouse wheel scrolls it, the keyboard moves between its fields."""


class Dialog(ModalScreen[Optional[R]]):
    """Common frame: a title, a scrolling body, an inline error line, OK / Cancel (cancel: None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    OK = "OK"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text()), classes="dialog-title")
            with DialogBody(classes="dialog-body"):
                yield from self.body()
            yield Static("", classes="dialog-error", id="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.OK, variant="primary", id="ok", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def title_text(self) -> str:
        return ""

    def body(self) -> ComposeResult:
        yield from ()

    def show_error(self, message: str) -> None:
        self.query_one("#error", Static).update(Text(f"✗ {visible(message)}", style="bold red"))
        self.query_one("#ok", Button).disabled = False
        # disabling OK while the job ran moved the focus on to Cancel: give it back to
        # the first text box, so the correction is typed there and Enter does not cancel
        if self.focused is None or isinstance(self.focused, Button):
            box = next(iter(self.query(Input)), None)
            if box is not None:
                box.focus()

    def show_note(self, message: str) -> None:
        self.query_one("#error", Static).update(Text(message, style="dim"))

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.action_cancel()

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.submit()

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def submit(self) -> None:
        raise NotImplementedError

    def start(self, busy: str, job: Callable[[], R]) -> None:
        """Run ``job`` off the UI thread, showing ``busy`` with OK disabled until it ends.

        ``job`` runs on a worker thread: it never touches a widget (it may
        post messages, such as :class:`~modeltui.ui.messages.Progress`), and
        raises :class:`JobRefused` to say why it stopped.
        """
        self.query_one("#ok", Button).disabled = True
        self.show_note(busy)
        self._run(job)

    @work(thread=True, exclusive=True, exit_on_error=False, group="dialog")
    def _run(self, job: Callable[[], R]) -> None:
        try:
            result = job()
        except JobRefused as e:
            self.post_message(JobFailed(str(e), e.done))
            return
        except Exception as e:
            self.post_message(JobFailed(job_error(e)))
            return
        self.post_message(JobDone(result))

    def on_job_done(self, message: JobDone[R]) -> None:
        self.dismiss(message.result)

    def on_job_failed(self, message: JobFailed) -> None:
        self.show_error(message.error)


class Confirm(ModalScreen[bool]):
    """A yes / no question: y or n (escape is no)."""

    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n,escape", "no", "No")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No"):
        super().__init__()
        self.question, self.yes_label, self.no_label = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            with DialogBody(classes="dialog-body"):
                yield Static(Text(self.question), classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error", id="yes", compact=True)
                yield Button(f"{self.no_label} (n)", variant="primary", id="no", compact=True)

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class ConfirmQuit(Confirm):
    """Quit with unsaved changes? y / n."""

    def __init__(self):
        super().__init__("There are unsaved changes. Quit and lose them?", "Quit", "Stay")


class BusyScreen(ModalScreen[bool]):
    """Shown while the app prepares something the next dialog needs; keys go nowhere meanwhile.

    Dismissed with True by the app when the work is done, or with False by
    escape (the work goes on; its follow-up dialog is not opened).
    """

    BINDINGS = [Binding("escape", "stop", "Stop waiting")]

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog busy"):
            yield Static(Text(self.message), classes="dialog-title")
            yield Static(Text("escape: stop waiting (keys typed now are ignored)", style="dim"))

    def action_stop(self) -> None:
        self.dismiss(False)
