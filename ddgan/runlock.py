"""One training per run folder: RUN/.lock, created atomically, holding the trainer's pid and host.

A second training into the same folder is refused, naming the first. A lock left by a
process that died without releasing it (kill -9, a crash of the machine) is stale: on the
same host, a pid that no longer runs is detected and the lock taken over, with a line
saying so; a lock from another host cannot be checked from here, so the message says how
to remove it by hand.
"""
import os
import socket
import sys
from pathlib import Path

from .files import check_writable

LOCK_NAME = ".lock"


class RunLockedError(FileExistsError):
    """Another training holds the run folder."""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """The lock of run folder `folder`: acquire() creates the folder if needed and takes the
    lock or raises RunLockedError; release() gives it back (and removes a folder it created
    that is still empty, so a refused start leaves nothing behind)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False
        self._created_folder = False

    def acquire(self):
        self._created_folder = not self.folder.exists()
        check_writable(self.folder, "train.out_dir")
        host_here = socket.gethostname()
        for _ in range(3):  # again after taking over a stale lock, or after a lock vanished
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(f"{os.getpid()} {host_here}\n")
                self.held = True
                return
            try:
                text = self.path.read_text()
            except FileNotFoundError:  # released between our two calls
                continue
            fields = text.split()
            if len(fields) != 2 or not fields[0].isdigit():
                raise RunLockedError(f"{self.path} is not a lock this program wrote; if no "
                                     f"training is using {self.folder}, delete it")
            pid, host = int(fields[0]), fields[1]
            if host != host_here:
                raise RunLockedError(
                    f"{self.folder} is locked by process {pid} on host {host}: a training may "
                    f"be running there. Wait for it, or set train.out_dir to another folder; "
                    f"if no training runs there, delete {self.path}")
            if _alive(pid):
                raise RunLockedError(
                    f"{self.folder} is in use by another training (process {pid}); wait for it "
                    f"to finish, stop it, or set train.out_dir to another folder (if process "
                    f"{pid} is not a training, delete {self.path})")
            self._take_over(text, pid)
        raise RunLockedError(f"could not take the lock {self.path}: other processes keep "
                             f"taking it; wait for them or set train.out_dir to another folder")

    def _take_over(self, stale, pid):
        """Remove the stale lock `stale`. A rename moves it aside atomically, so of two
        launches that found it at once only one removes it; the other finds that it moved a
        fresh lock and puts it back."""
        aside = self.folder / f"{LOCK_NAME}.{os.getpid()}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if aside.read_text() == stale:
            print(f"took over the stale lock {self.path} of process {pid}, which is no longer "
                  f"running", file=sys.stderr)
        else:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink()

    def release(self):
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
        if self._created_folder:
            try:
                self.folder.rmdir()  # only when empty: a run that wrote nothing
            except OSError:
                pass
