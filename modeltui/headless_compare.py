"""``--diff OTHER`` and ``--scan``: compare two targets, or scan one for bad tensors, and exit like ``cmp``.

Exit codes: 0 identical / clean, 1 different / flagged, 2 error (one line
on stderr, from the CLI's handler). Output: a table (``--summary``, the
default; unchanged tensors collapsed into a count) or ``--json`` (the
contract is in the README). A progress line goes to stderr when it is a
terminal; Ctrl-C stops the work at the next chunk of every thread (the CLI
then exits 130). Names from files go through ``visible()`` and into rich as
``Text``, never as markup.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from modeltui.core.compare import CHANGED, IDENTICAL, SHAPE, DiffReport
from modeltui.core.scan import ScanReport
from modeltui.format import fmt_bytes, fmt_shape, visible

MAX_ROWS = 3000  # table rows per section; --json lists everything
MARKS = {CHANGED: "~", SHAPE: "~", IDENTICAL: "=", "uncompared": "?"}


def run_compare(args, request, user_output_to_stderr) -> int:
    """Open A (``request``) and, for ``--diff``, B; compare or scan; print; return 0 or 1.

    ``user_output_to_stderr`` is the CLI's guard that sends what user code prints to stderr.
    """
    from modeltui.core.errors import TargetError
    from modeltui.core.request import OpenRequest
    from modeltui.core.targets import open_request
    from modeltui.core.workpool import default_workers

    if args.save or (args.diff is not None and args.scan):
        raise TargetError("--diff, --scan and --save are separate runs: give one of them")
    with user_output_to_stderr():
        a = open_request(request)
        b = open_request(OpenRequest.make(args.diff, trust=args.trust)) if args.diff is not None else None
    if a.weights is not None:
        for line in a.weights.lines():
            sys.stderr.write(f"modeltui: {visible(line)}\n")
    workers = default_workers()
    bar = ProgressLine("comparing" if b is not None else "scanning")
    try:
        if b is not None:
            from modeltui.core.compare import compare_opened

            report = compare_opened(a, b, workers=workers, progress=bar.update)
        else:
            from modeltui.core.scan import scan_opened

            report = scan_opened(a, workers=workers, progress=bar.update)
    finally:
        bar.close()
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), allow_nan=False, default=str) + "\n")
    elif b is not None:
        print_diff(report)
    else:
        print_scan(report)
    if b is not None:
        return 0 if report.identical else 1
    return 1 if report.flags else 0


class ProgressLine:
    """``comparing  42%  1.2 GiB of 2.8 GiB`` on stderr, redrawn at most 10 times a second (terminals only)."""

    def __init__(self, verb: str, stream=None):
        self.verb = verb
        self.stream = stream or sys.stderr
        self.on = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = 0.0
        self.drawn = False

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.on or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        pct = 100 * done // total if total else 100
        self.stream.write(f"\r{self.verb} {pct:3d}%  {fmt_bytes(done)} of {fmt_bytes(total)}\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _console(file=None):
    from rich.console import Console

    out = file or sys.stdout
    isatty = getattr(out, "isatty", lambda: False)()
    return Console(file=out, width=None if isatty else 160, highlight=False, markup=False, emoji=False)


def _g(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, complex):
        return f"{v.real:.{digits}g}{v.imag:+.{digits}g}j"
    return f"{v:.{digits}g}"


def _dtype(d) -> str:
    return d.dtype if d.dtype == d.other_dtype else f"{d.dtype} → {d.other_dtype}"


def _shape(d) -> str:
    return fmt_shape(d.shape) if d.shape == d.other_shape else f"{fmt_shape(d.shape)} → {fmt_shape(d.other_shape)}"


def print_diff(report: DiffReport, file=None) -> None:
    """The ``--diff`` table: changed tensors with their figures, what one side lacks, the identical ones counted."""
    from rich.table import Table
    from rich.text import Text

    console = _console(file)
    console.print(Text.assemble(("modeltui diff  ", "bold"), ("A ", "dim"), (visible(report.a, limit=200), "bold cyan"),
                                ("  B ", "dim"), (visible(report.b, limit=200), "bold cyan")))
    if report.mapping is not None:
        console.print(Text(f"key mapping: {visible(report.mapping.describe(), limit=400)}", style="yellow"))
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col, kw in (("", {}), ("name", {}), ("shape", {}), ("dtype", {}), ("max |a-b|", {"justify": "right"}),
                    ("at", {}), ("a → b", {}), ("rel L2", {"justify": "right"}), ("cosine", {"justify": "right"}),
                    ("differ", {"justify": "right"}), ("notes", {})):
        table.add_column(col, no_wrap=col != "notes", **kw)
    rows = 0
    changed = [d for d in report.diffs if d.status != IDENTICAL]
    for d in changed[:MAX_ROWS]:
        rows += 1
        notes = []
        if d.status == SHAPE:
            notes.append("shape changed: no element-wise figures")
        if d.other != d.name and report.mapping is None:
            notes.append(f"B: {d.other}")
        if d.nonfinite_a or d.nonfinite_b:
            notes.append(f"NaN/Inf only in A: {d.nonfinite_a:,}, only in B: {d.nonfinite_b:,}")
        if d.note:
            notes.append(d.note)
        at = fmt_shape(d.max_index) if d.max_index is not None else "-"
        ab = f"{_g(d.a_at)} → {_g(d.b_at)}" if d.max_index is not None else "-"
        differ = f"{d.differ:,} ({100 * d.differ_fraction:.3g}%)" if d.status == CHANGED else "-"
        table.add_row(Text(MARKS.get(d.status, "?"), style="bold yellow"), Text(visible(d.name, limit=200)),
                      _shape(d), _dtype(d), _g(d.max_abs), at, ab, _g(d.rel_l2), _g(d.cosine, 7), differ,
                      Text(visible("; ".join(notes), limit=400)))
    if rows:
        console.print(table)
    left = max(0, len(changed) - MAX_ROWS)
    for mark, side, only in (("+", "only in A", report.only_a), ("−", "only in B", report.only_b)):
        for t in only[:MAX_ROWS]:
            note = f"  (a tied alias of {visible(t.tied_to, limit=200)}, which both have)" if t.tied_to else ""
            console.print(Text.assemble((f"{mark} {side}: ", "bold cyan" if mark == "+" else "bold red"),
                                        visible(t.name, limit=200), f"  {fmt_shape(t.shape)} {visible(t.dtype)}", (note, "dim")))
        left += max(0, len(only) - MAX_ROWS)
    if left:
        console.print(Text(f"… {left:,} more rows not shown (--json lists every tensor)", style="dim"))
    c = report.counts()
    if c[IDENTICAL]:
        console.print(Text(f"= {c[IDENTICAL]:,} tensor(s) identical (bit for bit)", style="green"))
    parts = [f"{c[CHANGED]:,} changed"]
    if c[SHAPE]:
        parts.append(f"{c[SHAPE]:,} with another shape")
    if c["uncompared"]:
        parts.append(f"{c['uncompared']:,} not compared")
    parts += [f"{c['only_a']:,} only in A", f"{c['only_b']:,} only in B", f"{c[IDENTICAL]:,} identical"]
    aliases = sum(1 for t in report.only_a + report.only_b if t.tied_to)
    verdict = "different"
    if report.identical:
        verdict = "identical" + (f" (the {aliases:,} name(s) one side lacks are tied aliases)" if aliases else "")
    console.print(Text(f"{', '.join(parts)}: {verdict}", style="bold green" if report.identical else "bold yellow"))


SEVERITY = ("nan", "inf", "extreme", "outlier", "all_zero", "constant")  # the table's order: the worst first


def print_scan(report: ScanReport, file=None) -> None:
    """The ``--scan`` table: one row per flag with its reason and figures, then the count."""
    from rich.table import Table
    from rich.text import Text

    console = _console(file)
    console.print(Text.assemble(("modeltui scan  ", "bold"), (visible(report.target, limit=200), "bold cyan"),
                                (f"  {len(report.tensors):,} tensors", "dim")))
    skipped = [h for h in report.tensors if h.note and h.min is None and not h.nan and not h.posinf + h.neginf]
    if report.flags:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("flag", no_wrap=True)
        table.add_column("name", no_wrap=True)
        table.add_column("shape", no_wrap=True)
        table.add_column("reason")
        shapes = {h.name: h.shape for h in report.tensors}
        worst_first = sorted(report.flags, key=lambda f: SEVERITY.index(f.kind) if f.kind in SEVERITY else len(SEVERITY))
        for f in worst_first[:MAX_ROWS]:
            table.add_row(Text(f.kind, style="bold red" if f.kind in ("nan", "inf") else "bold yellow"),
                          Text(visible(f.name, limit=200)), fmt_shape(shapes.get(f.name)), Text(visible(f.reason, limit=600)))
        console.print(table)
        if len(report.flags) > MAX_ROWS:
            console.print(Text(f"… {len(report.flags) - MAX_ROWS:,} more flags (--json lists them all)", style="dim"))
    for h in skipped[:20]:
        console.print(Text(f"not scanned: {visible(h.name, limit=200)}: {visible(h.note, limit=300)}", style="dim"))
    kinds: dict[str, int] = {}
    for f in report.flags:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    if report.initial:
        console.print(Text(f"not flagged: {len(report.initial):,} 1-D tensor(s) of all zeros or all ones "
                           f"(biases and norms as initialised, e.g. {visible(report.initial[0], limit=200)})", style="dim"))
    if report.flags:
        detail = ", ".join(f"{k} {n:,}" for k, n in kinds.items())
        console.print(Text(f"{len(report.flagged):,} of {len(report.tensors):,} tensors flagged ({detail})", style="bold yellow"))
    else:
        console.print(Text(f"clean: none of {len(report.tensors):,} tensors flagged", style="bold green"))
