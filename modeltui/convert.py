"""Headless key surgery: ``--rename``, ``--strip-prefix``, ``--drop``, ``--extract``, ``--cast`` / ``--keep-dtype``,
``--dry-run`` and ``--max-shard-size``, applied in the order given before ``--save``.

The arguments are declared here (:func:`add_arguments`, called by the CLI's
parser) and run by :func:`run_convert`; the work is in
:mod:`modeltui.core.convert`. Names from files are printed through
``visible()``; a refusal is one line on stderr and exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys

from modeltui.format import fmt_bytes, visible

KINDS = {"rename": "rename", "strip_prefix": "strip", "drop": "drop", "extract": "extract", "cast": "cast"}


class _KeyOpAction(argparse.Action):
    """Collect every key operation, in the order given, in ``namespace.key_ops``."""

    def __call__(self, parser, namespace, values, option_string=None):
        ops = list(getattr(namespace, "key_ops", None) or [])
        ops.append((KINDS[self.dest], tuple(values) if isinstance(values, list) else (values,)))
        namespace.key_ops = ops


def _size(text: str) -> int:
    from modeltui.core.shards import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The key-surgery options (applied in the order given, then --save)."""
    g = p.add_argument_group("key surgery (applied in the order given, then --save; --dry-run shows the plan)")
    g.add_argument("--rename", nargs=2, action=_KeyOpAction, metavar=("PATTERN", "REPLACEMENT"),
                   help="rename keys with a Python regular expression (re.sub), e.g. '^encoder\\.' 'backbone.encoder.'; repeatable")
    g.add_argument("--strip-prefix", action=_KeyOpAction, metavar="PREFIX",
                   help="remove PREFIX (e.g. module. or _orig_mod.) from every key that starts with it; repeatable")
    g.add_argument("--drop", action=_KeyOpAction, metavar="GLOB", help="drop the keys matching GLOB (fnmatch), e.g. 'head.*'; repeatable")
    g.add_argument("--extract", action=_KeyOpAction, metavar="PREFIX",
                   help="keep only the keys under PREFIX, with it removed (encoder.layers.0.w -> layers.0.w)")
    g.add_argument("--cast", action=_KeyOpAction, metavar="DTYPE", help="cast floating-point tensors to float32, bfloat16, float16 or float64")
    g.add_argument("--keep-dtype", action="append", default=[], metavar="GLOB",
                   help="with --cast: keys matching GLOB keep their dtype, e.g. '*norm*' or '*.bias'; repeatable")
    g.add_argument("--dry-run", action="store_true", help="print the plan (old key -> new key, dropped, cast, bytes) and write nothing; with --json as JSON")
    g.add_argument("--max-shard-size", type=_size, metavar="SIZE",
                   help="with --save DIR/: the largest shard, e.g. 500MB or 2GiB (default 5GB, as transformers)")


def wants_convert(args: argparse.Namespace) -> bool:
    """True when the run is a key-surgery / conversion run (it goes through :func:`run_convert`)."""
    from modeltui.core.save_checks import is_folder_destination

    return bool(getattr(args, "key_ops", None) or args.dry_run or (args.save and is_folder_destination(args.save)))


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse combinations that make no sense, before anything is opened."""
    from modeltui.core.errors import TargetError

    ops = getattr(args, "key_ops", None) or []
    if args.keep_dtype and not any(k == "cast" for k, _ in ops):
        raise TargetError("--keep-dtype goes with --cast DTYPE (the tensors a cast leaves in their dtype)")
    if ops and not (args.save or args.dry_run):
        raise TargetError("key surgery needs --save OUT to write the result, or --dry-run to see the plan")
    if args.summary and (ops or args.dry_run):
        raise TargetError("--summary cannot be combined with key surgery or --dry-run")
    if args.json and not args.dry_run and args.save:
        raise TargetError("--json cannot be combined with --save (use --json with --dry-run for the plan)")
    if args.max_shard_size and not (args.save and _folder(args.save)):
        raise TargetError("--max-shard-size goes with --save DIR/ (a folder in Hugging Face's sharded layout)")


def _folder(path: str) -> bool:
    from modeltui.core.save_checks import is_folder_destination

    return is_folder_destination(path)


def run_convert(args: argparse.Namespace, opened, out=None, err=None) -> int:
    """Plan the key operations on ``opened`` and print the plan (``--dry-run``) or save it."""
    from modeltui.core.convert import plan_for, save_plan
    from modeltui.core.keyplan import KeyOp

    out = out or sys.stdout
    err = err or sys.stderr
    ops = [KeyOp(kind, args_, tuple(args.keep_dtype) if kind == "cast" else ()) for kind, args_ in (getattr(args, "key_ops", None) or [])]
    plan = plan_for(opened, ops)  # a refusal stops here: one line, nothing written
    if not any(op.kind in ("strip", "rename", "extract") for op in ops):
        note = prefix_note(opened)
        if note:
            err.write(f"modeltui: note: {note}\n")
    for w in plan.warnings:
        err.write(f"modeltui: warning: {visible(w)}\n")
    if args.dry_run:
        shards = _shard_plan(opened, plan, args) if args.save and _folder(args.save) else None
        if args.json:
            data = {"target": opened.info.label, **plan.to_json()}
            if args.save:
                data["save"] = args.save
            if shards is not None:
                data["shards"] = shards.to_json()
            out.write(json.dumps(data, default=str) + "\n")
        else:
            print_plan(plan, shards, args.save, out)
        return 0
    report = save_plan(opened, plan, args.save, max_shard_size=args.max_shard_size)
    counts = plan.counts()
    changed = ", ".join(f"{counts[k]} {k}" for k in ("renamed", "dropped", "cast") if counts[k])
    out.write(report.summary(args.save) + (f" ({changed})" if changed else "") + "\n")
    for note in report.notes():
        err.write(f"modeltui: warning: {visible(note)}\n")
    return 0


def prefix_note(opened) -> str:
    """For a checkpoint whose every key starts with a wrapper's prefix: say so and how to strip it ("" otherwise)."""
    from modeltui.core.keyplan import describe_wrapper, wrapper_prefix

    if opened.model is not None:
        return ""
    prefix = wrapper_prefix(opened.info.tensors)
    return f"every key starts with {describe_wrapper(prefix)}; --strip-prefix {visible(prefix)} removes it" if prefix else ""


def _shard_plan(opened, plan, args):
    from modeltui.core.saved_state import source_metadata
    from modeltui.core.shards import DEFAULT_MAX_SHARD, OutTensor, plan_shards

    kept = plan.kept()
    by_source = {e.source: e for e in plan.entries}
    groups = [[by_source[n].name for n in g if n in by_source and by_source[n].name is not None] for g in plan.groups]
    return plan_shards([OutTensor(e.name, e.to_dtype, tuple(e.shape or ())) for e in kept], [g for g in groups if len(g) > 1],
                       metadata=source_metadata(opened), max_shard_size=args.max_shard_size or DEFAULT_MAX_SHARD)


def print_plan(plan, shards, save: str | None, out) -> None:
    """The plan as a table: old key → new key (or dropped), dtype → new dtype, bytes → bytes."""
    rows = []
    for e in plan.entries:
        key = visible(e.source, limit=70)
        if e.name is None:
            arrow, new = "✗", f"dropped by {e.dropped_by}"
        else:
            arrow, new = ("→", visible(e.name, limit=70)) if e.name != e.source else (" ", "")
        dtype = e.dtype if e.name is None or e.to_dtype == e.dtype else f"{e.dtype}→{e.to_dtype}"
        size = fmt_bytes(e.nbytes()) if e.name is None or e.to_dtype == e.dtype else f"{fmt_bytes(e.nbytes())} → {fmt_bytes(e.nbytes(e.to_dtype))}"
        rows.append((key, arrow, new, dtype, size))
    w = [max([len(r[i]) for r in rows] + [len(h)]) for i, h in ((0, "key"), (2, "new key"), (3, "dtype"))]
    out.write(f"{'key':<{w[0]}}    {'new key':<{w[1]}}  {'dtype':<{w[2]}}  bytes\n")
    for key, arrow, new, dtype, size in rows:
        out.write(f"{key:<{w[0]}}  {arrow} {new:<{w[1]}}  {dtype:<{w[2]}}  {size}\n")
    c = plan.counts()
    out.write(f"{c['tensors']} tensors: {c['renamed']} renamed, {c['dropped']} dropped, {c['cast']} cast; "
              f"{fmt_bytes(plan.bytes_before)} → {fmt_bytes(plan.bytes_after)}\n")
    if shards is not None:
        files = ", ".join(f"{f} ({len(n)} tensors, {fmt_bytes(sum(shards.tensors[k].nbytes for k in n))})" for f, n in shards.files)
        index = " and model.safetensors.index.json" if shards.sharded else ""
        out.write(f"would write {visible(save)}: {files}{index}\n")
    elif save:
        out.write(f"would write {visible(save)}\n")
    out.write("nothing was written (--dry-run)\n")
