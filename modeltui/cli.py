"""Command line: arguments -> core -> TUI, or ``--summary``/``--json``/``--save`` (headless).

Any bad TARGET or option ends with one line on stderr and exit code 2; the
traceback is shown only with ``--debug``. Headless runs: the user's code
(import, build, the forward pass of ``-i``) prints to stderr, never into the
output; Ctrl-C ends with exit 130 and SIGTERM with 143, one line each; and
the process leaves as soon as the work is done, whatever threads the user's
code started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from modeltui import __version__
from modeltui.core.limits import RECURSION_LIMIT
from modeltui.format import visible

EPILOG = """\
targets:
  modeltui                                   the bundled demo model
  modeltui sample_models.book:chimera -i 2,20   an import path (module instance,
                                             nn.Module subclass or factory)
  modeltui models/net.py:Net                 a file path and an attribute
  modeltui pkg.models:zoo.resnet             a dotted attribute
  modeltui model.safetensors                 a checkpoint (.safetensors .pt .pth .bin .ckpt)
  modeltui llama/                            a folder: *.index.json with shards, or a
                                             torch.distributed.checkpoint folder
  modeltui pkg.mod:Net -w ckpt.pt            an architecture with weights loaded
  modeltui sample_models.zoo:llama_7b -d meta   structure only, no memory
  modeltui sample_models.zoo:TinyGPT -i 2,16:int64 --summary
  modeltui pkg.mod:T5 -i 2,16 -i decoder_input_ids=2,8 -i attention_mask=2,16
                                             keyword inputs (masks default to ones)
  modeltui ckpt.pt --save model.safetensors   convert, atomically, verified
  modeltui ddp.pt --strip-prefix module. --cast bfloat16 --keep-dtype '*norm*' --save out/
                                             key surgery, saved in Hugging Face's sharded layout
  modeltui a.safetensors --diff b.pt         which tensors differ, and by how much
  modeltui ckpt/ --scan                      NaN/Inf, zeros, constants, outliers

--summary, --json and --save refuse -w weights that do not fit the model
(missing, unexpected or mis-shaped keys) unless --no-strict is given.
Exit codes: 0 done, 2 error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM);
--diff: 0 identical, 1 different; --scan: 0 clean, 1 flagged.

Code stored in a checkpoint (pickled classes, TorchScript) never runs unless
you pass --trust. Import paths, -i forward passes and custom initialisers run
your own code: that is what they are for.
"""

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"modeltui: error: {visible(message)} (see modeltui --help)\n")
        raise SystemExit(2)


class Terminated(KeyboardInterrupt):
    """SIGTERM in a headless run, raised in the main thread as Ctrl-C is."""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="modeltui",
        description="Inspect and edit PyTorch models and checkpoints in the terminal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", nargs="?", metavar="TARGET", help="import path pkg.module:attr, file.py:attr, a checkpoint file or folder; none opens the demo")
    p.add_argument("-i", "--input-shape", action="append", default=[], metavar="SHAPE",
                   help="input shape for a dry forward pass, e.g. 2,20 or 2,16:int64 (repeat for several inputs, in order); "
                        "NAME=SHAPE passes a keyword argument of forward, e.g. attention_mask=2,16 (masks are ones); materialises lazy layers")
    p.add_argument("-w", "--weights", metavar="CKPT", help="load a checkpoint onto the architecture and report missing / unexpected / mis-shaped keys and dtype casts")
    p.add_argument("--no-strict", action="store_true",
                   help="with -w in --summary/--json/--save: go on when the weights do not fit (load what fits, warn on stderr); by default such a run fails with exit 2")
    p.add_argument("-d", "--device", metavar="DEVICE", help="cpu, cuda, cuda:N, mps or meta (structure only, no memory)")
    p.add_argument("--trust", action="store_true", help="allow code stored in a checkpoint (pickled classes, TorchScript) to run: only for files you trust")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--summary", action="store_true", help="print a summary table and exit")
    out.add_argument("--save", metavar="OUT", help="load, write the state_dict to OUT (.safetensors or .pt, or a folder DIR/ in "
                                                    "Hugging Face's sharded layout) atomically, verify it and exit")
    p.add_argument("--json", action="store_true", help="print the model as JSON (see README) and exit; with --dry-run, the plan")
    p.add_argument("--backward", choices=("sum", "mean", "mse", "ce"), metavar="LOSS",
                   help="with -i and --json/--summary: run a backward pass too, loss sum, mean, mse (against zeros) or ce "
                        "(against random classes); the grad norms go into the output")
    p.add_argument("--diff", metavar="OTHER", help="compare with OTHER (any target) and exit: 0 identical, 1 different, 2 error; "
                   "a table (--summary) or --json")
    p.add_argument("--scan", action="store_true", help="scan every tensor for NaN/Inf, zeros, constants, extreme values and "
                   "outliers across layers, and exit: 0 clean, 1 flagged, 2 error")
    p.add_argument("--depth", type=int, metavar="N", help="with --summary: show modules down to depth N")
    p.add_argument("--max-memory", metavar="DEV=SIZE,...",
                   help="with --summary: where accelerate's infer_auto_device_map would put each module, e.g. "
                   "cuda:0=80GiB,cuda:1=80GiB,cpu=512GiB (needs accelerate: pip install 'modeltui[plan]')")
    p.add_argument("--no-groups", action="store_true",
                   help="with --summary: list every numbered block (by default a run of identical ones prints once, as layers.[3-60] ×58)")
    from modeltui.convert import add_arguments

    add_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"modeltui {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``modeltui`` command; returns the exit code.

    Called as the command (``argv`` None), a headless run leaves the process
    with ``os._exit`` once its output is flushed, so a non-daemon thread of
    the user's code (or an interrupt during interpreter shutdown) cannot
    keep it alive or change its exit code.
    """
    args = build_parser().parse_args(argv)
    headless = _headless(args)
    _signals.clear()
    restore = _headless_guards() if headless else None
    try:
        code = _guarded(args)
    finally:
        if restore is not None and argv is not None:
            restore()  # in-process callers (tests) get their handlers back; the command just leaves
    if argv is None and headless:
        _leave(code)
    return code


#: signals received during a headless run (SIGINT, SIGTERM), in order
_signals: list[int] = []


def _interrupted(term: bool) -> int:
    sys.stderr.write("modeltui: terminated\n" if term else "modeltui: interrupted\n")
    return 143 if term else 130


def _guarded(args: argparse.Namespace) -> int:
    import signal

    try:
        code = _run(args)
    except KeyboardInterrupt as e:
        return _interrupted(isinstance(e, Terminated))
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except RecursionError as e:
        if _signals:
            return _interrupted(_signals[-1] == signal.SIGTERM)
        _traceback(args)
        sys.stderr.write(f"modeltui: error: {_too_deep(e)}\n")
        return 2
    except Exception as e:
        from modeltui.core.errors import ModelTuiError

        if _signals:
            # the interrupt landed where a library turned it into another error
            # (inside an import: "cannot load module more than once per process")
            return _interrupted(_signals[-1] == signal.SIGTERM)
        _traceback(args)
        if isinstance(e, ModelTuiError):
            sys.stderr.write(f"modeltui: error: {visible(e)}\n")
        else:
            sys.stderr.write(f"modeltui: error: {type(e).__name__}: {visible(e, limit=500)} (run with --debug for details)\n")
        return 2
    if _signals:  # an interrupt some finaliser swallowed before it could stop the work
        return _interrupted(_signals[-1] == signal.SIGTERM)
    return code


def _traceback(args: argparse.Namespace) -> None:
    if args.debug:
        import traceback

        traceback.print_exc()


def _too_deep(e: RecursionError) -> str:
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    where = f" (in {frames[-1].name}, {os.path.basename(frames[-1].filename)})" if frames else ""
    return (f"the model nests too deeply: Python's recursion limit of {sys.getrecursionlimit():,} frames was reached{visible(where)}; "
            f"modeltui follows about {RECURSION_LIMIT // 3:,} levels of nested modules")


def _headless(args: argparse.Namespace) -> bool:
    return bool(args.summary or args.json or args.save or args.dry_run or getattr(args, "key_ops", None)
                or args.diff is not None or args.scan)


def _run(args: argparse.Namespace) -> int:
    from modeltui.core.errors import TargetError
    from modeltui.core.inputs import parse_input_spec

    specs = [parse_input_spec(s) for s in args.input_shape]
    if args.depth is not None and args.depth < 0:
        raise TargetError("--depth must be 0 or more")
    if args.summary and args.json:
        raise TargetError("--summary and --json cannot be combined")
    if args.max_memory and not args.summary:
        raise TargetError("--max-memory goes with --summary (the device map is printed there)")
    from modeltui.convert import check_arguments, run_convert, wants_convert
    from modeltui.core.request import OpenRequest

    check_arguments(args)
    headless = _headless(args)
    # the TARGET is classified here, once: a bad one says so first, terminal or not
    request = OpenRequest.make(args.target, weights=args.weights, device=args.device, input_specs=specs,
                               trust=args.trust, strict=headless and not args.no_strict, strip_to_fit=headless)
    from modeltui.forward_report import run_forward_report, wants_report

    if wants_report(args, specs) and not wants_convert(args):  # -i with --json/--summary, or --backward: the layers of the run too
        return run_forward_report(args, request, specs, user_output_to_stderr)
    if not headless:
        for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout)):
            if stream is None or not stream.isatty():
                raise TargetError(f"{name} is not a terminal, and the TUI needs one; for scripts use --summary or --json (or --save OUT)")
        from modeltui.ui.app import run_app

        return run_app(request)
    if args.diff is not None or args.scan:
        from modeltui.headless_compare import run_compare

        return run_compare(args, request, user_output_to_stderr)
    from modeltui.core.targets import open_request

    with user_output_to_stderr():
        opened = open_request(request)
    if opened.weights is not None:
        for line in opened.weights.lines():
            sys.stderr.write(f"modeltui: {visible(line)}\n")
    if wants_convert(args):
        import io

        buf = io.StringIO()  # user code's prints go to stderr meanwhile; the plan or the report to stdout after
        with user_output_to_stderr():
            code = run_convert(args, opened, out=buf)
        sys.stdout.write(buf.getvalue())
        return code
    if args.save:
        from modeltui.convert import prefix_note
        from modeltui.core.saving import save_opened

        if prefix_note(opened):
            sys.stderr.write(f"modeltui: note: {prefix_note(opened)}\n")

        with user_output_to_stderr():
            report = save_opened(opened, args.save)
        sys.stdout.write(report.summary(args.save) + "\n")
        for note in report.notes():
            sys.stderr.write(f"modeltui: warning: {visible(note)}\n")
    elif args.json:
        from modeltui.core.readers import paused_gc

        with paused_gc():  # a 100k-tensor listing is 300k small objects that all live until the end
            sys.stdout.write(json.dumps(opened.info.to_json(), default=str) + "\n")
    else:
        from modeltui.summary import print_summary

        plan = None
        if args.max_memory:
            from modeltui.core.memory_plan import plan_devices

            with user_output_to_stderr():
                plan = plan_devices(opened, args.max_memory)
        print_summary(opened.info, depth=args.depth, grouped=not args.no_groups, plan=plan)
    return 0


@contextlib.contextmanager
def user_output_to_stderr():
    """Send what user code prints (Python ``print`` and writes to fd 1) to stderr.

    ``--json`` and ``--summary`` own stdout: a model that prints at import or
    in ``forward`` must not corrupt them.
    """
    try:
        sys.stdout.flush()
        out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # not backed by a file (pytest's capsys...)
        out_fd = err_fd = None
    if out_fd is None:
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    saved = os.dup(out_fd)
    try:
        os.dup2(err_fd, out_fd)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(saved, out_fd)
            os.close(saved)


def _headless_guards():
    """Ctrl-C and SIGTERM raise in the main thread and are remembered; an interrupt
    swallowed in a finaliser is raised again; a deeper recursion limit.
    Returns a function that undoes all of it."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, RECURSION_LIMIT))

    def on_int(signum, frame):
        _signals.append(signum)
        raise KeyboardInterrupt()

    def on_term(signum, frame):
        _signals.append(signum)
        raise Terminated()

    old_int = signal.getsignal(signal.SIGINT)
    if old_int is signal.default_int_handler:  # leave an ignored SIGINT (nohup, background jobs) ignored
        signal.signal(signal.SIGINT, on_int)
    old_term = signal.signal(signal.SIGTERM, on_term)
    old_hook = sys.unraisablehook

    def hook(unraisable):
        # Python runs the Ctrl-C handler wherever the main thread is; inside a
        # __del__ (zipfile's, during a save) the KeyboardInterrupt is printed
        # as "Exception ignored" and lost, and the run went on to exit 0.
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _interrupt_again(signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT)
            return
        old_hook(unraisable)

    sys.unraisablehook = hook

    def restore() -> None:
        sys.unraisablehook = old_hook
        signal.signal(signal.SIGTERM, old_term)
        if old_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, old_int)
        sys.setrecursionlimit(old_limit)

    return restore


def _interrupt_again(signum: int) -> None:
    """Deliver ``signum`` to the main thread again, from outside the finaliser that swallowed it."""
    import _thread
    import threading

    timer = threading.Timer(0.01, _thread.interrupt_main, args=(signum,))
    timer.daemon = True
    timer.start()


def _leave(code: int) -> None:
    """Flush and end the process now (threads left by user code cannot hold it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
