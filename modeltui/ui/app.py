"""The modeltui application: opens a target in a worker, then runs the actions of the key table.

Browsing (tree, panels, search) lives in :class:`MainScreen`; dialogs in
``ui/dialogs``; this module holds the app's state (the opened target and its
editing session) and the actions. Worker results come back as typed
messages (``ui/messages.py``).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from modeltui.core.errors import ModelTuiError
from modeltui.core.request import OpenRequest
from modeltui.format import visible
from modeltui.ui.actions import ACTIONS, bindings
from modeltui.ui.commands import GoToProvider
from modeltui.ui.compare_actions import CompareActions
from modeltui.ui.executor import DaemonThreadExecutor, abandoned_work, peak_rss
from modeltui.ui.edit_actions import EditActions
from modeltui.ui.forward_actions import ForwardActions
from modeltui.ui.key_actions import KeyActions
from modeltui.ui.messages import TargetFailed, TargetLoaded
from modeltui.ui.screens import HelpScreen, MainScreen
from modeltui.ui.widgets import NodeRef

if TYPE_CHECKING:
    from modeltui.core.session import Session
    from modeltui.core.targets import Opened


class ModelTuiApp(CompareActions, EditActions, KeyActions, ForwardActions, App[int]):
    """Browse and edit a PyTorch model or checkpoint."""

    CSS_PATH = "app.tcss"
    TITLE = "modeltui"
    COMMANDS = App.COMMANDS | {GoToProvider}
    BINDINGS = bindings()

    def __init__(
        self,
        target: str | None = None,
        *,
        weights: str | None = None,
        device: str | None = None,
        input_specs=(),
        trust: bool = False,
        opened: Opened | None = None,
        request: OpenRequest | None = None,
    ) -> None:
        super().__init__()
        if request is None:  # classified in the load worker: a bad target is shown in the app
            request = OpenRequest(target, "", weights, device, tuple(input_specs), trust)
        self.request = request
        self.target = request.target
        self.weights = request.weights
        self.trust = request.trust
        self.input_specs = list(request.input_specs)  # the forward dialog's last inputs
        self.opened: Opened | None = opened  # given directly in tests
        self.load_error: str | None = None
        self.session: Session | None = None  # once the target can be edited
        self.forward_records: dict = {}
        self.init_memory: dict = {}  # the init dialog's last choices
        self._pending: str | None = None  # the action to run once a bare checkpoint is editable
        self._forward_run = None  # the core.forward.ForwardRun of the last forward pass
        self.signalled: int | None = None  # SIGTERM / SIGHUP ended the app
        self.forward_choice = None  # the forward dialog's last ForwardChoice (inputs, loss, accumulate)
        self.runs: list = []  # the last two ForwardResults, for the layers view (l)
        self.grad_norms: dict[str, float] = {}  # tensor name -> grad norm, from the last backward

    def get_default_screen(self) -> Screen:
        return MainScreen()

    @property
    def main(self) -> MainScreen:
        """The main screen (whatever dialog is on top of it)."""
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    @property
    def info(self):
        return self.opened.info if self.opened is not None else None

    @property
    def selected(self) -> str | None:
        """The tensor shown in the tensor panel."""
        return self.main.tensor_panel.tensor

    @property
    def show_grad(self) -> bool:
        return self.main.tensor_panel.show_grad

    @property
    def stats_cache(self) -> dict:
        return self.main.tensor_panel.stats_cache

    def say(self, message: str | list[str], *, title: str = "", severity: str = "information",
            timeout: float | None = None) -> None:
        """A notification whose text may come from a file or user code: never markup, controls made visible.

        A newline inside a message is shown as ``\\n`` (a name holding one must not forge a line);
        a list of lines is shown one per line.
        """
        lines = [message] if isinstance(message, str) else message
        text = "\n".join(visible(line, limit=2000) for line in lines)
        self.notify(text, title=title, severity=severity, timeout=timeout, markup=False)

    # ------------------------------------------------------------ loading

    def on_mount(self) -> None:
        import asyncio

        # thread workers run on daemon threads: quitting never waits for a long load, stats or save
        loop = asyncio.get_running_loop()
        loop.set_default_executor(DaemonThreadExecutor())
        if not self.is_headless:
            # SIGTERM (kill, timeout) and SIGHUP killed the process where it stood, leaving the terminal in the
            # alternate screen with mouse tracking on (and SIGINT ended it with 0): leave through the app's own
            # exit, which restores the terminal, with 128 + the signal's number
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                try:
                    loop.add_signal_handler(signum, self._terminated, signum)
                except (NotImplementedError, RuntimeError, ValueError):  # no such signal here, or not the main thread
                    pass

    def _terminated(self, signum: int) -> None:
        self.signalled = signum
        self.exit(128 + signum)

    def on_main_screen_ready(self, message: MainScreen.Ready) -> None:
        self.main.show_loading(self.request.label)
        if self.opened is not None:
            self.post_message(TargetLoaded(self.opened))
        else:
            self.load_target()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load_target(self) -> None:
        from modeltui.core.targets import open_request

        r = self.request
        try:
            if not r.kind:
                r = OpenRequest.make(r.target, weights=r.weights, device=r.device, input_specs=r.input_specs, trust=r.trust)
            opened = open_request(r)
        except ModelTuiError as e:
            self.post_message(TargetFailed(str(e)))
            return
        except Exception as e:  # a user's module can raise anything
            self.post_message(TargetFailed(f"{type(e).__name__}: {e}"))
            return
        self.post_message(TargetLoaded(opened))

    def on_target_loaded(self, message: TargetLoaded) -> None:
        self.opened = message.opened
        if self.opened.model is not None:
            from modeltui.core.session import Session

            self.session = Session(self.opened)
        start = getattr(self.opened, "forward", None)  # the -i pass run at open
        if start is not None:
            self.started_with(start)
        self.main.show_model(self.opened, outputs=self._outputs())
        for w in self.opened.info.warnings:
            self.say(w, severity="warning", timeout=8)
        if start is not None:
            self._show_nonfinite(start)
        self.call_after_refresh(self._painted)
        self.call_after_refresh(self.offer_prefix_strip)
        # a frontier listing is ~300k long-lived objects: out of the cyclic GC's way (refcounting still frees them)
        gc.freeze()

    def _outputs(self) -> dict:
        return {p: r.shapes for p, r in self.forward_records.items()}

    def _painted(self) -> None:
        log = os.environ.get("MODELTUI_PAINT_LOG")
        if log:
            with open(log, "w") as f:
                f.write(f"{time.time()}\ntorch imported: {'torch' in sys.modules}\n{peak_rss()}\n")
            if os.environ.get("MODELTUI_EXIT_AFTER_PAINT"):
                self.exit(0)

    def on_target_failed(self, message: TargetFailed) -> None:
        self.load_error = message.error
        self.main.show_failure(self.request.label, message.error)
        self.say(message.error, title="Could not open", severity="error", timeout=15)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where an unexpected worker error becomes visible."""
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            text = str(err) if isinstance(err, ModelTuiError) else f"{type(err).__name__}: {err}"
            self.say(text, title="Error", severity="error", timeout=10)

    # ------------------------------------------------------------ palette

    def get_system_commands(self, screen: Screen):
        for cmd in super().get_system_commands(screen):
            if cmd.title != "Screenshot":
                yield cmd
        yield SystemCommand("Screenshot", "Save an SVG screenshot of the screen in the current folder", self.action_save_screenshot)
        yield SystemCommand("Export session as a script", "Write a Python script (torch and safetensors only) that repeats "
                            "this session's edits on the target and saves", self.action_export_script)
        for a in ACTIONS:
            if a.palette:
                yield SystemCommand(a.title, f"{a.help[:1].upper()}{a.help[1:]} ({a.display_key})", getattr(self, f"action_{a.action}"))

    def action_save_screenshot(self) -> None:
        """Save an SVG of the screen in the current folder and say where."""
        try:
            path = self.save_screenshot(path=os.getcwd())
        except OSError as e:
            self.say(f"could not save the screenshot in {os.getcwd()}: {e.strerror or e}", title="Screenshot", severity="error")
            return
        self.say(f"saved {os.path.abspath(path)}", title="Screenshot")

    def goto(self, ref: NodeRef) -> None:
        """Reveal and select a module or tensor (used by the command palette)."""
        self.main.goto(ref)

    # ------------------------------------------------------------ browsing actions

    def action_search(self) -> None:
        self.main.search_bar.open()

    def action_next_match(self) -> None:
        self.main.search_bar.step(1)

    def action_prev_match(self) -> None:
        self.main.search_bar.step(-1)

    def run_search(self, query: str) -> int:
        return self.main.search_bar.run(query)

    def action_leave_input(self) -> None:
        """Escape: leave a text box or the search bar; else cancel a running forward pass."""
        if not self.main.leave_input() and any(w.group == "forward" and w.is_running for w in self.workers):
            self.action_cancel_forward()

    def action_edit_slice(self) -> None:
        panel = self.main.tensor_panel
        name = self.main.selected_tensor()
        if name is None or self.info is None:
            self.say("select a tensor first", severity="warning")
            return
        if panel.tensor != name:
            panel.show(self.opened, name)
        panel.focus_slice()

    def action_toggle_grad(self) -> None:
        name = self.main.selected_tensor()
        panel = self.main.tensor_panel
        if name is not None and self.opened is not None and panel.tensor != name:
            panel.show(self.opened, name)
        why = panel.toggle_grad()
        if why:
            self.say(why, severity="warning")

    def action_toggle_dequant(self) -> None:
        name = self.main.selected_tensor()
        panel = self.main.tensor_panel
        if name is not None and self.opened is not None and panel.tensor != name:
            panel.show(self.opened, name)
        why = panel.toggle_dequant()
        if why:
            self.say(why, severity="warning")

    def action_toggle_groups(self) -> None:
        if self.opened is None:
            return
        on = self.main.toggle_groups()
        self.say("repeated blocks grouped (b shows each)" if on else "every block on its own (b groups them again)", timeout=3)

    def action_narrow_tree(self) -> None:
        self.main.resize_tree(-1)

    def action_widen_tree(self) -> None:
        self.main.resize_tree(1)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if self.session is not None and self.session.dirty:
            from modeltui.ui.dialogs import ConfirmQuit

            def decide(yes: bool | None) -> None:
                if yes:
                    self.exit(0)

            self.push_screen(ConfirmQuit(), decide)
            return
        self.exit(2 if self.load_error else 0)


def run_app(request: OpenRequest) -> int:
    """Check what is cheap to check, then run the app on ``request``; returns the exit code."""
    from modeltui.core.devices import check_device_name
    from modeltui.core.errors import TargetError

    if request.weights is not None and not os.path.exists(request.weights):
        raise TargetError(f"--weights {visible(request.weights)}: no such file or folder")
    if request.device is not None:
        check_device_name(request.device)  # the core's own check; availability is checked on open
    import threading

    from modeltui.core.limits import RECURSION_LIMIT

    # models nested 1,000 deep walk deep in the workers too: room for the frames and their C stack
    old_limit, old_stack = sys.getrecursionlimit(), threading.stack_size()
    sys.setrecursionlimit(max(old_limit, RECURSION_LIMIT))
    threading.stack_size(64 << 20)
    try:
        app = ModelTuiApp(request=request)
        code = app.run()
    finally:
        sys.setrecursionlimit(old_limit)
        threading.stack_size(old_stack)
    if app.signalled:
        sys.stderr.write("modeltui: interrupted\n" if app.signalled == signal.SIGINT else "modeltui: terminated\n")
    elif app.load_error:
        sys.stderr.write(f"modeltui: error: {visible(app.load_error)}\n")
        code = 2
    elif app.return_code:  # an unhandled exception ended the app: never exit 0
        sys.stderr.write("modeltui: error: the app stopped on an internal error (run with --debug for details)\n")
        code = app.return_code
    if abandoned_work():
        # the terminal is restored; leave now rather than finalise the interpreter
        # under a torch call still running on a daemon thread (a save cut short leaves its temp file: remove it)
        from modeltui.core.save_temps import discard_unfinished_saves

        discard_unfinished_saves()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    return code or 0
