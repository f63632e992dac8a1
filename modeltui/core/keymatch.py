"""Which tensor of one checkpoint is which tensor of another: names, and a prefix change.

Two saves of the same weights often differ only by a prefix on every key:
``module.`` (DistributedDataParallel), ``_orig_mod.`` (``torch.compile``),
``model.`` (Lightning), or one found here by matching the rest of the names
and the shapes. :func:`match_keys` pairs the tensors with the same name,
then the rest through the one prefix change that explains most of them,
and says which mapping it used. Plain data, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: prefixes wrappers add to every key, tried first (in this order)
KNOWN_PREFIXES = ("module.", "_orig_mod.", "_orig_mod.module.", "module._orig_mod.", "model.")
MAX_DEPTH = 3  # leading name parts a found prefix may have
MAX_CANDIDATES = 8  # prefixes per side tried by the search
SAMPLE = 512  # names per side a candidate pair is scored on before the full count


@dataclass(frozen=True, slots=True)
class KeyMapping:
    """A's names starting with ``a_prefix`` are B's names starting with ``b_prefix`` (the rest equal)."""

    a_prefix: str
    b_prefix: str
    count: int  # tensors matched through it
    found: str  # "known" (a wrapper's prefix) or "suffix" (found by matching names and shapes)

    def b_to_a(self, name: str) -> str:
        """B's ``name`` as A would call it (unchanged when it lacks the prefix)."""
        return self.a_prefix + name[len(self.b_prefix):] if name.startswith(self.b_prefix) else name

    def describe(self) -> str:
        """``B 'module.…' = A '…' (12 tensors)``."""
        how = "" if self.found == "known" else ", found by matching the rest of the names and the shapes"
        return f"B '{self.b_prefix}…' = A '{self.a_prefix}…' ({self.count:,} tensors{how})"

    def to_json(self) -> dict[str, Any]:
        return {"a_prefix": self.a_prefix, "b_prefix": self.b_prefix, "count": self.count, "found": self.found}


@dataclass
class Matching:
    """The tensors of A and B paired up."""

    pairs: list[tuple[str, str]] = field(default_factory=list)  # (A name, B name), in A's order
    only_a: list[str] = field(default_factory=list)  # in A's order
    only_b: list[str] = field(default_factory=list)  # in B's order
    mapping: KeyMapping | None = None


def match_keys(a: dict[str, Any], b: dict[str, Any]) -> Matching:
    """Pair the tensors of ``a`` and ``b`` (name -> shape, in order); see the module docstring.

    Names in both are paired as they are. The others are paired through one
    prefix change if it explains at least half of the smaller side's
    leftovers with equal shapes: a wrapper's prefix (``module.``,
    ``_orig_mod.``, ``model.``) added or removed, else the best pair of
    prefixes of up to three name parts found by matching the rest of the
    names and the shapes.
    """
    exact = {n for n in a if n in b}
    left_a = [n for n in a if n not in exact]
    left_b = [n for n in b if n not in exact]
    mapping = None
    extra: dict[str, str] = {}
    if left_a and left_b:
        mapping, extra = _find_mapping(left_a, left_b, a, b)
    pairs = [(n, n if n in exact else extra[n]) for n in a if n in exact or n in extra]
    used_b = set(extra.values())
    return Matching(pairs, [n for n in left_a if n not in extra], [n for n in left_b if n not in used_b], mapping)


def _apply(pa: str, pb: str, left_a: list[str], b_left: set[str], shapes_a, shapes_b) -> dict[str, str]:
    """A name -> B name for the leftovers that ``(pa, pb)`` pairs with equal shapes."""
    out = {}
    for n in left_a:
        if n.startswith(pa):
            m = pb + n[len(pa):]
            if m in b_left and _same_shape(shapes_a[n], shapes_b[m]):
                out[n] = m
    return out


def _same_shape(x, y) -> bool:
    return x is None or y is None or tuple(x) == tuple(y)


def _score(pa: str, pb: str, sample_a: list[str], b_left: set[str], shapes_a, shapes_b) -> int:
    return len(_apply(pa, pb, sample_a, b_left, shapes_a, shapes_b))


def _prefixes(names: list[str]) -> list[str]:
    """Prefixes (``a.``, ``a.b.``…, up to MAX_DEPTH parts) shared by at least a fifth of ``names``, most common first."""
    counts: dict[str, int] = {}
    for n in _sample(names):
        parts = n.split(".")
        for d in range(1, min(MAX_DEPTH, len(parts) - 1) + 1):
            p = ".".join(parts[:d]) + "."
            counts[p] = counts.get(p, 0) + 1
    total = min(len(names), SAMPLE)
    common = [p for p, c in counts.items() if 5 * c >= total]
    common.sort(key=lambda p: (-counts[p], len(p)))
    return [""] + common[:MAX_CANDIDATES - 1]


def _sample(names: list[str]) -> list[str]:
    """At most SAMPLE names spread evenly over ``names`` (deterministic)."""
    if len(names) <= SAMPLE:
        return names
    step = len(names) / SAMPLE
    return [names[int(i * step)] for i in range(SAMPLE)]


def _find_mapping(left_a: list[str], left_b: list[str], shapes_a, shapes_b) -> tuple[KeyMapping | None, dict[str, str]]:
    b_left = set(left_b)
    need = max(1, (min(len(left_a), len(left_b)) + 1) // 2)
    sample_a = _sample(left_a)
    pairs: list[tuple[str, str, str]] = []
    for p in KNOWN_PREFIXES:
        pairs += [("", p, "known"), (p, "", "known")]
    for pa in _prefixes(left_a):
        for pb in _prefixes(left_b):
            if pa != pb:
                pairs.append((pa, pb, "suffix"))
    best, best_score = None, 0
    seen = set()
    for pa, pb, found in pairs:
        if (pa, pb) in seen:
            continue
        seen.add((pa, pb))
        s = _score(pa, pb, sample_a, b_left, shapes_a, shapes_b)
        if s > best_score:  # ties keep the earlier pair: a wrapper's prefix, then the more common prefixes
            best, best_score = (pa, pb, found), s
    if best is None:
        return None, {}
    pa, pb, found = best
    extra = _apply(pa, pb, left_a, b_left, shapes_a, shapes_b)
    if len(extra) < need:
        return None, {}
    return KeyMapping(pa, pb, len(extra), found), extra
