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


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: object, *, newlines: bool = False, limit: int | None = None) -> str:
    """``text`` with every control or format character shown as an escape.

    Names, metadata and messages that come from a file or from user code pass
    through this before they reach a terminal, so an escape sequence in a
    tensor name is shown as ``\\x1b]2;…`` instead of retitling the terminal,
    and U+202E is shown as ``\\u202e`` instead of reversing the line. Every
    character Python does not call printable is escaped: C0/C1 controls,
    bidi and zero-width format characters, line separators, surrogates.
    ``newlines=True`` keeps ``\\n`` (for multi-line messages modeltui writes
    itself). ``limit`` cuts the result to that many characters.
    """
    s = text if isinstance(text, str) else str(text)
    if not s.isprintable():
        out = []
        for ch in s:
            if ch.isprintable() or (newlines and ch == "\n"):
                out.append(ch)
            elif ch in _ESCAPES:
                out.append(_ESCAPES[ch])
            else:
                code = ord(ch)
                out.append(f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        s = "".join(out)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s
