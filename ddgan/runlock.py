"""One writer per folder: FOLDER/.lock, created atomically, holding the writer's pid and host.

A run folder takes one training, a sweep's results folder one sweep. A second writer into
the same folder is refused, naming the first. A lock left by a
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
    """Another writer holds the folder."""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """The lock of `folder`: acquire() creates the folder if needed and takes the lock or
    raises RunLockedError; release() gives it back (and removes a folder it created that is
    still empty, so a refused start leaves nothing behind). writer names who takes it (a
    training) and option the setting that names the folder, for the messages."""

    def __init__(self, folder, writer="training", option="train.out_dir"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.writer, self.option = writer, option
        self.held = False
        self._created_folder = False

    def acquire(self):
        self._created_folder = not self.folder.exists()
        check_writable(self.folder, self.option)
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
                                     f"{self.writer} is using {self.folder}, delete it")
            pid, host = int(fields[0]), fields[1]
            if host != host_here:
                raise RunLockedError(
                    f"{self.folder} is locked by process {pid} on host {host}: a {self.writer} may "
                    f"be running there. Wait for it, or set {self.option} to another folder; "
                    f"if no {self.writer} runs there, delete {self.path}")
            if _alive(pid):
                raise RunLockedError(
                    f"{self.folder} is in use by another {self.writer} (process {pid} on host "
                    f"{host}); wait for it to finish, stop it, or set {self.option} to another "
                    f"folder (if process {pid} is not a {self.writer}, delete {self.path})")
            self._take_over(text, pid)
        raise RunLockedError(f"could not take the lock {self.path}: other processes keep "
                             f"taking it; wait for them or set {self.option} to another folder")

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
