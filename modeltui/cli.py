"""Command line: arguments -> core -> TUI, or ``--summary``/``--json`` printing.

Any bad TARGET or option ends with one line on stderr and exit code 2; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from modeltui import __version__

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
  modeltui ckpt.pt --save model.safetensors   convert, atomically, verified

Pickled code in a checkpoint never runs unless you pass --trust.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"modeltui: error: {message} (see modeltui --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="modeltui",
        description="Inspect and edit PyTorch models and checkpoints in the terminal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", nargs="?", metavar="TARGET", help="import path pkg.module:attr, file.py:attr, a checkpoint file or folder; none opens the demo")
    p.add_argument("-i", "--input-shape", action="append", default=[], metavar="SHAPE",
                   help="input shape for a dry forward pass, e.g. 2,20 or 2,16:int64 (repeat for several inputs); materialises lazy layers")
    p.add_argument("-w", "--weights", metavar="CKPT", help="load a checkpoint onto the architecture and report missing / unexpected / mis-shaped keys")
    p.add_argument("-d", "--device", metavar="DEVICE", help="cpu, cuda, cuda:N, mps or meta (structure only, no memory)")
    p.add_argument("--trust", action="store_true", help="allow pickled code in checkpoints to run (only for files you trust)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--summary", action="store_true", help="print a summary table and exit")
    out.add_argument("--json", action="store_true", help="print the model as JSON (see README) and exit")
    out.add_argument("--save", metavar="OUT", help="load, write the state_dict to OUT (.safetensors or .pt) atomically, verify it and exit")
    p.add_argument("--depth", type=int, metavar="N", help="with --summary: show modules down to depth N")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"modeltui {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``modeltui`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        sys.stderr.write("modeltui: interrupted\n")
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:
        from modeltui.core.errors import ModelTuiError

        if args.debug:
            import traceback

            traceback.print_exc()
        if isinstance(e, ModelTuiError):
            sys.stderr.write(f"modeltui: error: {e}\n")
        else:
            sys.stderr.write(f"modeltui: error: {type(e).__name__}: {e} (run with --debug for details)\n")
        return 2


def _run(args: argparse.Namespace) -> int:
    from modeltui.core.errors import TargetError
    from modeltui.core.inputs import parse_input_spec

    specs = [parse_input_spec(s) for s in args.input_shape]
    if args.depth is not None and args.depth < 0:
        raise TargetError("--depth must be 0 or more")
    if not (args.summary or args.json or args.save):
        from modeltui.ui.app import run_app

        return run_app(args.target, weights=args.weights, device=args.device, input_specs=specs, trust=args.trust)
    from modeltui.core.targets import open_target

    opened = open_target(args.target, weights=args.weights, device=args.device, input_specs=specs, trust=args.trust)
    if args.save:
        from modeltui.core.saving import save_opened

        report = save_opened(opened, args.save)
        sys.stdout.write(report.summary(args.save) + "\n")
        for note in report.notes():
            sys.stderr.write(f"modeltui: warning: {note}\n")
    elif args.json:
        sys.stdout.write(json.dumps(opened.info.to_json(), default=str) + "\n")
    else:
        from modeltui.summary import print_summary

        print_summary(opened.info, depth=args.depth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
