"""Write one file atomically: a temp file beside it, written, fsynced while it is read back and checked, renamed.

The machinery every save shares (:mod:`modeltui.core.saving`, the shards of
:mod:`modeltui.core.shards`, their index): a failure at any point, an
interrupt included, leaves the destination as it was and removes the temp
file; a full disk or the file size limit is named as such.
"""

from __future__ import annotations

import errno
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from modeltui.core.errors import first_line
from modeltui.core.save_checks import SaveError
from modeltui.core.save_temps import ACTIVE, lock, pause_for_tests, remove_stale_temps
from modeltui.format import visible


def _write_atomically(dest: str, base: str, write: Callable[[str, int], None], verify: Callable[[str], None], nbytes: int) -> list[str]:
    """Temp file, write, fsync (overlapped with ``verify``), replace, folder fsync; returns stale temps removed."""
    folder = os.path.dirname(dest)
    unchanged = f"{base} is unchanged" if os.path.lexists(dest) else "nothing was written"
    removed = remove_stale_temps(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise SaveError(f"saving {base} failed: {_explain(e, folder)}; {unchanged}") from None
    ACTIVE.add(tmp)
    try:
        lock(fd)
        try:
            write(tmp, fd)
        except (RuntimeError, OSError) as e:
            raise _write_failure(e, tmp, nbytes) from None
        os.chmod(tmp, _file_mode(dest))
        pause_for_tests(tmp)
        # fsync (in the kernel, no GIL) while the read-back check runs from the page cache
        with ThreadPoolExecutor(1) as pool:
            synced = pool.submit(_fsync_file, tmp)
            try:
                verify(tmp)
            finally:
                synced.result()
        os.replace(tmp, dest)
        _fsync_dir(folder)
    except BaseException as e:  # Ctrl-C and SystemExit too: never leave a full-size temp file behind
        _remove(tmp)
        if isinstance(e, SaveError):
            raise SaveError(f"saving {base} failed: {e}; {unchanged}") from None
        if isinstance(e, OSError):
            raise SaveError(f"saving {base} failed: {_explain(e, folder)}; {unchanged}") from None
        if isinstance(e, Exception):
            raise SaveError(f"saving {base} failed: {type(e).__name__}: {visible(first_line(e))}; {unchanged}") from None
        raise
    finally:
        os.close(fd)
        ACTIVE.discard(tmp)
    return removed


def _write_failure(e: BaseException, tmp: str, nbytes: int) -> BaseException:
    """Name the cause of a failed write.

    torch's writer loses the errno: a full disk or the file size limit comes
    back as ``[enforce fail at inline_container.cc:672] . unexpected pos``.
    The limit and the free space tell which it was.
    """
    if isinstance(e, OSError) and e.errno is not None:
        return e
    text = str(e)
    if not any(s in text for s in ("inline_container", "PytorchStreamWriter", "file write failed")):
        return e
    try:
        size = os.stat(tmp).st_size
    except OSError:
        size = 0
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY and (soft <= nbytes or size >= soft - (1 << 16)):
            return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    except (ImportError, OSError, ValueError):
        pass
    try:
        st = os.statvfs(os.path.dirname(tmp))
        if st.f_bavail * st.f_frsize < max(nbytes - size, 0) + (1 << 20):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except (AttributeError, OSError):
        pass
    first = text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__
    return OSError(errno.EIO, f"the file could not be written ({first})")


# ---------------------------------------------------------------- small helpers


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    """Best effort: some file systems (and Windows) cannot fsync a folder."""
    try:
        _fsync_file(folder)
    except OSError:
        pass


def _explain(e: OSError, folder: str) -> str:
    folder = visible(folder)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk holding {folder} is full"
    if e.errno == errno.EFBIG:
        return "the file would pass the size limit for files (ulimit -f) or the file system's largest file"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write in {folder}: {e.strerror}"
    if e.errno == errno.ENOENT:
        return f"folder {folder} does not exist"
    if e.errno == errno.ENOTDIR:
        return f"{folder} is not a folder"
    return visible(e.strerror or e, limit=300)


def _file_mode(path: str) -> int:
    """The mode the saved file gets: the old file's, or what umask gives a new one.

    ``mkstemp`` makes its file 0600; without this a re-saved checkpoint would
    silently stop being readable by the group.
    """
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    mask = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    mask = int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    if mask is None:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _remove(p: str) -> None:
    try:
        os.remove(p)
    except OSError:
        pass

