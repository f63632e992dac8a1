"""Small formatting helpers shared by the summary and the UI (no torch)."""

from __future__ import annotations


def fmt_count(n: int) -> str:
    """``6738415616`` -> ``"6.74B"``; small numbers as they are."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suffix}" if n / div < 100 else f"{n / div:.0f}{suffix}"
    return str(n)


def fmt_bytes(n: int) -> str:
    """Bytes in binary units: ``1536`` -> ``"1.5 KiB"``."""
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if x < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{n} B"


def fmt_shape(shape) -> str:
    """``(8, 4)`` -> ``"[8, 4]"``; None (uninitialised lazy) -> ``"?"``."""
    if shape is None:
        return "?"
    return "[" + ", ".join(str(d) for d in shape) + "]"
