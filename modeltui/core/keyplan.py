"""Key surgery on names alone: renames, prefix strips, drops, extraction and casts, planned before any value is read.

Everything here works on names, shapes and dtype names (no torch), so a
plan for a checkpoint of 100k tensors costs what its header costs, and a
refusal (a clash, a bad pattern, a prefix that matches nothing, a drop that
leaves nothing) comes before anything is read or written.

Tied tensors (one tensor under several names) stay one tensor whatever the
names become: renaming one of its names leaves the others as they are, and
the save stores it once. What is refused is a plan that gives two names the
same new name (tied or not), an empty name, or (for a checkpoint edited as a
tree) a name that would be both a tensor and the prefix of another.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from modeltui.core.errors import ModelTuiError
from modeltui.core.structure import ITEMSIZE
from modeltui.format import visible

#: prefixes that wrappers add to every key, and who adds them
WRAPPERS: tuple[tuple[str, str], ...] = (
    ("module.", "DistributedDataParallel / DataParallel"),
    ("_orig_mod.", "torch.compile"),
    ("model.", "a Lightning module's model attribute, or weights saved as {'model': state_dict}"),
)
CAST_TARGETS = ("float32", "bfloat16", "float16", "float64")


class KeyPlanError(ModelTuiError):
    """A key operation was refused; nothing was changed or written."""


def _q(name: str) -> str:
    return "'" + visible(name, limit=120) + "'"


# ---------------------------------------------------------------- wrapper prefixes


def wrapper_prefix(names: Iterable[str]) -> str:
    """The chain of wrapper prefixes every name starts with (``"module._orig_mod."``), or ``""``."""
    names = list(names)
    if not names:
        return ""
    prefix = ""
    while True:
        for p, _ in WRAPPERS:
            full = prefix + p
            if all(len(n) > len(full) and n.startswith(full) for n in names):
                prefix = full
                break
        else:
            return prefix


def describe_wrapper(prefix: str) -> str:
    """``"'module.' (added by DistributedDataParallel / DataParallel)"`` for a chain of wrapper prefixes."""
    parts, rest = [], prefix
    while rest:
        for p, who in WRAPPERS:
            if rest.startswith(p):
                parts.append(who)
                rest = rest[len(p):]
                break
        else:
            break
    who = "; ".join(parts)
    return f"'{visible(prefix)}'" + (f" (added by {who})" if who else "")


def prefix_to_fit(model_names: Iterable[str], file_names: Iterable[str]) -> str:
    """A chain of wrapper prefixes whose removal lets more of the file's keys match the model's, or ``""``.

    For a Lightning checkpoint (``model.`` on every key) or a DDP one
    (``module.``) loaded onto the bare architecture.
    """
    model = set(model_names)
    files = list(file_names)
    best, best_n = "", sum(1 for f in files if f in model)
    frontier, seen = [""], set()
    while frontier:
        q = frontier.pop()
        for p, _ in WRAPPERS:
            cand = q + p
            if cand in seen or not any(f.startswith(cand) for f in files):
                continue
            seen.add(cand)
            frontier.append(cand)
            n = sum(1 for f in files if f.startswith(cand) and f[len(cand):] in model)
            if n > best_n:
                best, best_n = cand, n
    return best


# ---------------------------------------------------------------- renames and checks


def compile_pattern(pattern: str) -> re.Pattern:
    """``re.compile(pattern)``; a bad one is a :class:`KeyPlanError` that says where."""
    if not pattern:
        raise KeyPlanError("give a pattern (a Python regular expression, e.g. ^module\\.)")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise KeyPlanError(f"bad pattern {_q(pattern)}: {e}") from None


def renamed(names: Iterable[str], pattern: str, replacement: str) -> dict[str, str]:
    """``old -> new`` for every name ``re.sub(pattern, replacement, name)`` changes."""
    rx = compile_pattern(pattern)
    out: dict[str, str] = {}
    for n in names:
        try:
            new = rx.sub(replacement, n)
        except (re.error, IndexError) as e:
            raise KeyPlanError(f"bad replacement {_q(replacement)}: {e}") from None
        if new != n:
            out[n] = new
    return out


def prefix_pattern(prefix: str) -> str:
    """The pattern of a node's prefix: the name itself or anything below it (``encoder`` not ``encoder2``)."""
    return "^" + re.escape(prefix) + r"(?=\.|$)"


def check_names(names: Sequence[str], mapping: dict[str, str], *, tree: bool = False) -> None:
    """Refuse ``mapping`` (old -> new, over ``names``) if it empties a name, clashes, or breaks a tree.

    ``tree``: the names must also form a tree of dotted keys (no empty part,
    no name that is also the prefix of another), as a checkpoint edited as a
    module tree needs.
    """
    owner: dict[str, str] = {}
    for n in names:
        new = mapping.get(n, n)
        if not new:
            raise KeyPlanError(f"{_q(n)} would get an empty name")
        if new in owner:
            a, b = sorted((owner[new], n), key=lambda x: x == new)
            if b == new:  # one keeps its name
                raise KeyPlanError(f"clash: {_q(a)} would be renamed {_q(new)}, which another tensor is called already")
            raise KeyPlanError(f"clash: {_q(a)} and {_q(b)} would both be named {_q(new)}")
        owner[new] = n
    if not tree:
        return
    prefixes: dict[str, str] = {}
    for new, old in owner.items():
        parts = new.split(".")
        if any(p == "" for p in parts):
            raise KeyPlanError(f"{_q(old)} would become {_q(new)}, which has an empty part between dots")
        for i in range(1, len(parts)):
            prefixes.setdefault(".".join(parts[:i]), new)
    for new, old in owner.items():
        if new in prefixes:
            raise KeyPlanError(f"{_q(old)} would become {_q(new)}, which is both a tensor and the prefix of {_q(prefixes[new])}")


# ---------------------------------------------------------------- the headless pipeline


@dataclass(frozen=True)
class KeyOp:
    """One step of ``--rename/--strip-prefix/--drop/--extract/--cast``, in the order given."""

    kind: str  # "rename" | "strip" | "drop" | "extract" | "cast"
    args: tuple[str, ...]
    keep: tuple[str, ...] = ()  # --keep-dtype globs (cast only)

    @property
    def flag(self) -> str:
        opt = {"strip": "--strip-prefix"}.get(self.kind, f"--{self.kind}")
        return " ".join([opt] + [_q(a) for a in self.args])


@dataclass
class PlanEntry:
    """One tensor of the source and what the plan does to it."""

    source: str  # its name in the source
    shape: tuple[int, ...] | None
    dtype: str  # as stored in the source
    name: str | None = None  # its name in the output; None: dropped
    to_dtype: str = ""  # its dtype in the output
    dropped_by: str = ""  # the flag that dropped it
    group: int = -1  # tied group (index into KeyPlan.groups), -1 for none

    @property
    def numel(self) -> int:
        if self.shape is None:
            return 0
        n = 1
        for d in self.shape:
            n *= d
        return n

    def nbytes(self, dtype: str | None = None) -> int:
        return int(self.numel * ITEMSIZE.get(dtype or self.dtype, 4))


@dataclass
class KeyPlan:
    """What a run of key operations does to every tensor (nothing read or written yet)."""

    entries: list[PlanEntry]
    groups: list[list[str]] = field(default_factory=list)  # tied source names
    warnings: list[str] = field(default_factory=list)

    def kept(self) -> list[PlanEntry]:
        return [e for e in self.entries if e.name is not None]

    def mapping(self) -> dict[str, str]:
        """``source name -> output name`` for every tensor kept."""
        return {e.source: e.name for e in self.entries if e.name is not None}

    def _bytes(self, after: bool) -> int:
        seen: set[int] = set()
        total = 0
        for e in self.entries:
            if after and e.name is None:
                continue
            if e.group >= 0:
                if e.group in seen:
                    continue
                seen.add(e.group)
            total += e.nbytes(e.to_dtype if after else e.dtype)
        return total

    @property
    def bytes_before(self) -> int:
        return self._bytes(False)

    @property
    def bytes_after(self) -> int:
        return self._bytes(True)

    def counts(self) -> dict[str, int]:
        kept = self.kept()
        return {"tensors": len(self.entries), "kept": len(kept), "dropped": len(self.entries) - len(kept),
                "renamed": sum(1 for e in kept if e.name != e.source), "cast": sum(1 for e in kept if e.to_dtype != e.dtype)}

    def to_json(self) -> dict[str, Any]:
        tied = {n: g for g in self.groups for n in g}
        return {
            **self.counts(),
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "keys": [{"key": e.source, "new_key": e.name, "dropped_by": e.dropped_by or None,
                      "shape": list(e.shape) if e.shape is not None else None, "dtype": e.dtype, "new_dtype": e.to_dtype,
                      "bytes": e.nbytes(), "new_bytes": e.nbytes(e.to_dtype) if e.name is not None else 0,
                      "tied_with": [o for o in tied.get(e.source, ()) if o != e.source]} for e in self.entries],
            "warnings": list(self.warnings),
        }


def is_floating(dtype: str) -> bool:
    """Dtypes a cast converts: the floating-point ones with arithmetic (not packed fp4)."""
    return (dtype.startswith("float") or dtype == "bfloat16") and not dtype.startswith("float4")


def plan_keys(tensors: Iterable[tuple[str, tuple[int, ...] | None, str]], ops: Sequence[KeyOp],
              groups: Sequence[Sequence[str]] = ()) -> KeyPlan:
    """Apply ``ops`` in order to the names of ``tensors`` (``(name, shape, dtype)``); refuse what cannot be done.

    ``groups`` lists the tied names (one tensor each): a cast keeps a whole
    group in its dtype when any of its names matches ``--keep-dtype``.
    """
    entries = [PlanEntry(n, tuple(s) if s is not None else None, d, n, d) for n, s, d in tensors]
    by_source = {e.source: e for e in entries}
    plan = KeyPlan(entries, [list(g) for g in groups if len(g) > 1])
    for i, g in enumerate(plan.groups):
        for n in g:
            if n in by_source:
                by_source[n].group = i
    for op in ops:
        live = [e for e in entries if e.name is not None]
        if op.kind in ("rename", "strip"):
            if op.kind == "rename":
                mapping = renamed([e.name for e in live], *op.args)
                if not mapping:
                    raise KeyPlanError(f"{op.flag} matches no key (keys look like {_q(live[0].name) if live else 'nothing'})")
            else:
                prefix = op.args[0]
                if not prefix:
                    raise KeyPlanError("--strip-prefix needs a prefix, e.g. module.")
                mapping = {e.name: e.name[len(prefix):] for e in live if e.name.startswith(prefix)}
                if not mapping:
                    raise KeyPlanError(f"{op.flag}: no key starts with it (keys look like {_q(live[0].name) if live else 'nothing'})")
            check_names([e.name for e in live], mapping)
            for e in live:
                e.name = mapping.get(e.name, e.name)
        elif op.kind == "drop":
            hit = [e for e in live if fnmatch.fnmatchcase(e.name, op.args[0])]
            if not hit:
                plan.warnings.append(f"{op.flag} matches no key")
            for e in hit:
                e.name, e.dropped_by = None, op.flag
        elif op.kind == "extract":
            prefix = op.args[0].rstrip(".")
            if not prefix:
                raise KeyPlanError("--extract needs a prefix, e.g. encoder")
            inside = [e for e in live if e.name.startswith(prefix + ".")]
            if not inside:
                raise KeyPlanError(f"{op.flag}: no key lies under it (keys look like {_q(live[0].name) if live else 'nothing'})")
            ids = {id(e) for e in inside}
            for e in live:
                if id(e) in ids:
                    e.name = e.name[len(prefix) + 1:]
                else:
                    e.name, e.dropped_by = None, op.flag
        elif op.kind == "cast":
            _plan_cast(plan, live, op)
        else:  # pragma: no cover - the CLI builds only the kinds above
            raise KeyPlanError(f"unknown key operation {op.kind}")
        if not any(e.name is not None for e in entries):
            raise KeyPlanError(f"nothing left to save after {op.flag}: every key was dropped")
    return plan


def _plan_cast(plan: KeyPlan, live: list[PlanEntry], op: KeyOp) -> None:
    dtype = op.args[0]
    if dtype not in CAST_TARGETS:
        raise KeyPlanError(f"--cast {visible(dtype)}: choose one of {', '.join(CAST_TARGETS)}")
    kept_groups = {e.group for e in live if e.group >= 0 and any(fnmatch.fnmatchcase(e.name, k) for k in op.keep)}
    used = set()
    for e in live:
        matched = [k for k in op.keep if fnmatch.fnmatchcase(e.name, k)]
        used.update(matched)
        if matched or (e.group >= 0 and e.group in kept_groups):
            continue
        if is_floating(e.to_dtype):
            e.to_dtype = dtype
    for k in op.keep:
        if k not in used:
            plan.warnings.append(f"--keep-dtype {_q(k)} matches no key")
