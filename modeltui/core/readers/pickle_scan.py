"""Static scan of the globals a pickle asks for, without unpickling it.

Used to explain a refusal ("it asks for os.system") and as a first gate in
front of torch's own ``weights_only`` unpickler. Static: a cunning pickle can
hide a name from it, which is why torch's unpickler still decides.
"""

from __future__ import annotations

import io
import pickletools
import zipfile

# A state_dict of 100,000 tensors pickles to about 15 MB; torch's weights-only
# unpickler runs at about 1 µs per opcode, so a hostile pickle of a few hundred
# MB of one-byte opcodes would take minutes. Past this size we refuse instead.
MAX_PICKLE_BYTES = 32 << 20


class PickleTooLarge(Exception):
    """A pickle record is larger than any list of tensors needs."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}


def pickle_globals(data, max_pickles: int = 1, max_bytes: int = MAX_PICKLE_BYTES) -> list[str]:
    """Return ``module.name`` for every GLOBAL/STACK_GLOBAL in ``data`` (bytes or a binary stream).

    Scans up to ``max_pickles`` pickles laid end to end (the legacy torch
    format stores several). A malformed pickle ends the scan quietly: the
    names found so far are returned. A pickle running past ``max_bytes``
    raises :class:`PickleTooLarge`.
    """
    found: list[str] = []
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    for _ in range(max_pickles):
        start = stream.tell()
        if not stream.read(1):
            break
        stream.seek(start)
        memo: dict[int, object] = {}
        last: list[object] = []
        try:
            for op, arg, pos in pickletools.genops(stream):
                if pos is not None and pos - start > max_bytes:
                    raise PickleTooLarge(pos - start)
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
        except PickleTooLarge:
            raise
        except Exception:
            break
    out: list[str] = []
    for g in found:
        if g not in out:
            out.append(g)
    return out


def zip_pickle_globals(path: str, max_bytes: int = MAX_PICKLE_BYTES) -> list[str]:
    """Globals asked for by every ``.pkl`` record of a zip checkpoint (read as a stream)."""
    out: list[str] = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.endswith(".pkl"):
                continue
            if info.file_size > max_bytes:
                raise PickleTooLarge(info.file_size)
            with z.open(info) as f:
                for g in pickle_globals(io.BufferedReader(f), max_bytes=max_bytes):
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
