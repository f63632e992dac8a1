"""Headless forward and backward runs: ``-i SHAPE [--backward LOSS]`` with ``--json`` or ``--summary``.

``--json`` gains the ``"forward"`` object (the layers of the run, see
README) and, after ``--backward``, a ``"grad_norm"`` in every entry of
``"tensors"``; ``--summary`` prints the layers table after the tree. The
run happens once: with ``--backward`` the forward pass at open is left to
the backward run (which materialises lazy layers the same way).
"""

from __future__ import annotations

import dataclasses
import json
import sys

from modeltui.core.errors import TargetError
from modeltui.format import fmt_bytes, fmt_shape, visible

MAX_LAYER_ROWS = 3000  # rows of the --summary layers table (the JSON has them all)


def wants_report(args, specs) -> bool:
    """Whether this run is one for :func:`run_forward_report` (cli.py's one dispatch test)."""
    return bool(getattr(args, "backward", None)) or bool(specs and (args.json or args.summary))


def run_forward_report(args, request, specs, user_output_to_stderr) -> int:
    """Open, run (forward, or forward and backward), print JSON or the summary with the layers table.

    ``user_output_to_stderr`` is the CLI's guard that sends what the model's code prints to stderr.
    """
    from modeltui.core.targets import open_request

    loss = getattr(args, "backward", None)
    if loss:
        if not (args.json or args.summary):
            raise TargetError("--backward goes with --json or --summary (in the app, choose a loss in the forward dialog: f)")
        if not specs:
            raise TargetError("--backward needs an input: give -i SHAPE (e.g. -i 2,20)")
        request = dataclasses.replace(request, input_specs=())
    with user_output_to_stderr():
        opened = open_request(request)
        if loss:
            _backward(opened, specs, loss)
    if opened.weights is not None:
        for line in opened.weights.lines():
            sys.stderr.write(f"modeltui: {visible(line)}\n")
    result = opened.forward
    if args.json:
        from modeltui.core.layers import forward_json

        out = opened.info.to_json()
        if result is not None:
            out["forward"] = forward_json(result)
            if loss:
                for t in out["tensors"]:
                    t["grad_norm"] = result.grad_norms.get(t["name"])
        sys.stdout.write(json.dumps(out, default=str) + "\n")
    else:
        from modeltui.summary import print_summary

        print_summary(opened.info, depth=args.depth)
        if result is not None:
            print_layers(result)
    return 0


def _backward(opened, specs, loss: str) -> None:
    from modeltui.core.backward import run_backward

    if opened.model is None:
        raise TargetError("--backward: a checkpoint without an architecture cannot run (open the model as pkg.mod:Net -w CKPT)")
    result = run_backward(opened.model, list(specs), loss)
    if not result.ok:
        shapes = " and ".join(f"[{s}]" for s in specs)
        raise TargetError(f"backward pass ({loss}) with input {shapes} failed: {result.error}")
    opened.refresh()  # lazy layers materialised; grads now exist
    opened.forward = result


def _fig(v) -> str:
    from modeltui.core.preview import fmt_value

    return "-" if v is None else fmt_value(v)


def run_line(result) -> str:
    """``inputs 2,20 · loss (sum) 1.25, grads cleared first · first non-finite: 3`` (plain text)."""
    parts = ["inputs " + "; ".join(str(s) for s in result.inputs), f"{result.ms:.1f} ms"]
    if result.loss_kind:
        how = "added to the grads already there" if result.accumulated else "grads cleared first"
        parts.append(f"loss ({result.loss_kind}) {_fig(result.loss)}, {how}")
    first = result.first_nonfinite
    parts.append("first NaN/Inf output: " + ("none" if first is None else first or "(root)"))
    return "  ·  ".join(parts)


def print_layers(result, file=None) -> None:
    """The layers table of a run: every module that ran, in execution order."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from modeltui.core.layers import layer_rows

    out = file or sys.stdout
    isatty = getattr(out, "isatty", lambda: False)()
    console = Console(file=out, width=None if isatty else 140, highlight=False, markup=False, emoji=False)
    rows = layer_rows(result)
    console.print()
    console.print(Text.assemble(("forward pass  ", "bold"), visible(run_line(result), limit=600)))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col, just in (("#", "right"), ("module", "left"), ("type", "left"), ("output", "left"), ("mean", "right"),
                      ("std", "right"), ("zeros", "right"), ("NaN/Inf", "right"), ("grad norm", "right"),
                      ("bytes", "right"), ("ms", "right")):
        table.add_column(col, justify=just, no_wrap=col != "module")
    for row in rows[:MAX_LAYER_ROWS]:
        s = row.stats
        bad = row.nonfinite
        zf = s.zero_fraction if s is not None else None
        table.add_row(
            str(row.index), Text(visible(row.path or "(root)", limit=120)), Text(visible(row.type, limit=60)),
            ", ".join(fmt_shape(x) for x in row.shapes[:2]) + ("…" if len(row.shapes) > 2 else ""),
            _fig(s.mean if s else None), _fig(s.std if s else None), "-" if zf is None else f"{100 * zf:.1f}%",
            Text(f"{s.nan}/{s.inf}" if s else "-", style="bold red" if bad else ""),
            _fig(row.grad_norm), fmt_bytes(s.bytes) if s else "-", f"{row.ms:.2f}",
        )
    console.print(table)
    if len(rows) > MAX_LAYER_ROWS:
        console.print(Text(f"… {len(rows) - MAX_LAYER_ROWS:,} more modules (--json lists them all)", style="dim"))
