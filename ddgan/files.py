"""Files that survive interruption: atomic writes and appends, the partial files an interrupted
write leaves, and checks, before any work, that a folder can take what a command will write.

A file is written under a temporary name unique to the process, flushed to disk, then renamed
over its final name, so a reader (or a process killed half-way) sees the old file or the new
one, never half of one, and two processes never write the same temporary file.
"""
import os
import shutil
from pathlib import Path


class OutputError(ValueError):
    """A folder a command must write to cannot take its files."""


def partial_name(path):
    """The temporary name `path` is written under by this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path, write):
    """Write `path` through write(binary file), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only if the write failed


def atomic_copy(src, dst):
    with open(src, "rb") as source:
        atomic_write(dst, lambda f: shutil.copyfileobj(source, f))


def append_text(path, text):
    """Append `text` with one write to a file opened for appending, so that an interrupted
    append leaves the earlier lines whole; a file whose last line is partial (written by
    another program, or cut by a full disk) gets a newline first, keeping the damage on its
    own line, where a reader can name it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial(folder):
    """Delete the temporary files that interrupted writes left in `folder`; returns their
    names. Only for folders this process alone writes to (a training holding its run's lock)."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def check_writable(folder, what):
    """Create `folder` if needed and write and delete a probe file in it, or raise OutputError
    naming it. `what` says which setting or option named the folder."""
    folder = Path(folder)
    probe = folder / f".write-probe.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:  # permissions, a read-only file system, a file in the way
        raise OutputError(f"cannot write to {folder} ({what}): {err.strerror or err}; choose a "
                          f"folder you can write to") from None


def check_free_space(folder, need_bytes, what):
    """Raise OutputError unless `folder`'s file system has need_bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise OutputError(f"{folder} has {_size(free)} free, but {what} needs {_size(need_bytes)}: "
                          f"free some space or write elsewhere")


def _size(num_bytes):
    for unit in ("bytes", "kB", "MB", "GB"):
        if num_bytes < 1000 or unit == "GB":
            return f"{num_bytes:,.0f} {unit}" if unit == "bytes" else f"{num_bytes:,.1f} {unit}"
        num_bytes /= 1000
