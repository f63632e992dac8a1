"""Static scan of the globals a pickle asks for, without unpickling it.

Used to explain a refusal ("it asks for os.system") and as a first gate in
front of torch's own ``weights_only`` unpickler. Static: a cunning pickle can
hide a name from it, which is why torch's unpickler still decides.
"""

from __future__ import annotations

import io
import pickletools
import zipfile

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}


def pickle_globals(data: bytes, max_pickles: int = 1) -> list[str]:
    """Return ``module.name`` for every GLOBAL/STACK_GLOBAL in ``data``.

    Scans up to ``max_pickles`` pickles laid end to end (the legacy torch
    format stores several). A malformed pickle ends the scan quietly: the
    names found so far are returned.
    """
    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(max_pickles):
        if stream.tell() >= len(data):
            break
        memo: dict[int, object] = {}
        last: list[object] = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                name = op.name
                if name in _STRING_OPS:
                    last.append(arg)
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    last.append(memo.get(int(arg)))
                elif name == "MEMOIZE":
                    memo[len(memo)] = last[-1] if last else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = last[-1] if last else None
                elif name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL":
                    if len(last) >= 2 and isinstance(last[-1], str) and isinstance(last[-2], str):
                        found.append(f"{last[-2]}.{last[-1]}")
                    else:
                        found.append("<unknown global>")
                    last.append(None)
                else:
                    last.append(None)
                if len(last) > 64:
                    del last[:-8]
        except Exception:
            break
    out: list[str] = []
    for g in found:
        if g not in out:
            out.append(g)
    return out


def zip_pickle_globals(path: str) -> list[str]:
    """Globals asked for by every ``.pkl`` record of a zip checkpoint."""
    out: list[str] = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.filename.endswith(".pkl") and info.file_size < 1 << 30:
                for g in pickle_globals(z.read(info)):
                    if g not in out:
                        out.append(g)
    return out


def torch_allowed_globals() -> set[str]:
    """Names torch's ``weights_only`` unpickler accepts by default."""
    try:
        from torch import _weights_only_unpickler as wou

        allowed = set(wou._get_allowed_globals().keys())
        allowed |= set(wou._get_user_allowed_globals().keys())
        return allowed
    except Exception:  # private API: fall back to torch's decision alone
        return set()
