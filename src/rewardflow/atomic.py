"""Atomic writes, safe output directories and run locks: nothing a run already wrote is lost to a crash.

A file or directory is written under a temporary sibling name and moved into place. Replacing an existing
directory never deletes it first: the two are swapped (renameat2 RENAME_EXCHANGE on Linux) or the old one is
renamed aside, the new one renamed in, and only then the old one deleted. A crash therefore leaves the old
version or the new one, never neither; `clean_stale` puts a copy left aside by a dead process back.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Written into every output directory a rewardflow run creates: what makes a directory "ours".
MARKER = ".rewardflow-run"
LOCK = ".lock"
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)(?P<pid>\d+)$")


class OutDirError(ValueError):
    """An output directory that may not be used as asked (foreign contents, or locked by another run)."""


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary sibling of `path` to write (a file, or a directory to fill); on success it replaces
    `path` (the old version is kept until the new one is in place); on an exception the temporary is removed
    and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        replace(tmp, path)
    finally:
        _remove(tmp)


def replace(src: Path, dst: Path) -> None:
    """Move `src` onto `dst`. There is no moment at which `dst` holds neither the old nor the new version
    (unless the process dies between two renames, which leaves the old one at `.NAME.oldPID` for clean_stale)."""
    src, dst = Path(src), Path(dst)
    if not dst.exists() or (not dst.is_dir() and not src.is_dir()):
        os.replace(src, dst)  # nothing there, or file over file: one atomic rename
        return
    if _exchange(src, dst):
        _remove(src)  # src now holds the old version
        return
    aside = dst.with_name(f".{dst.name}.old{os.getpid()}")
    _remove(aside)
    os.rename(dst, aside)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(aside, dst)  # the new one could not go in: put the old one back
        raise
    _remove(aside)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@functools.lru_cache(maxsize=1)
def _renameat2():
    try:  # the running process's own symbols include libc's (glibc >= 2.28 has renameat2)
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return None


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def clean_stale(parent: str | Path) -> list[Path]:
    """Tidy the temporaries of dead processes in `parent`: a `.NAME.tmpPID` is removed; a `.NAME.oldPID` (an old
    version renamed aside by `replace`) is put back when NAME is missing, else removed. Returns what it touched."""
    parent, touched = Path(parent), []
    if not parent.is_dir():
        return touched
    for entry in sorted(parent.iterdir()):
        m = _SIBLING.match(entry.name)
        if not m or pid_alive(int(m["pid"])):
            continue  # not ours, or its writer still runs
        target = parent / m["name"]
        if m["kind"] == "old" and not target.exists():
            os.rename(entry, target)
        else:
            _remove(entry)
        touched.append(entry)
    return touched


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2))


# ---------------------------------------------------------------- output directories


def prepare_out_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False, marker: str = MARKER) -> Path | None:
    """Make `path` ready for a run and mark it as ours. Rules:

    - missing or empty: created and marked;
    - ours (holds `marker`): used as it is (resume continues it; a fresh run rewrites its files);
    - anything else (a non-empty directory rewardflow did not create, or a file): refused;
    - with `overwrite`, whatever is there is moved aside to `.NAME.replaced-NS` (NS: time in ns), kept until
      `finish_out_dir` deletes it after the run succeeds; a crashed run leaves it for the user to recover.

    Returns the aside path (or None); `resume` with `overwrite` is a contradiction and refused."""
    path = Path(path)
    if resume and overwrite:
        raise OutDirError(f"{path}: resume and overwrite together: resume continues the run there, overwrite replaces it")
    aside = None
    if path.exists() and not overwrite and not _ours(path, marker):
        what = "a file" if not path.is_dir() else "a non-empty directory not written by rewardflow"
        raise OutDirError(f"{path} is {what}; refusing to write into it (pass overwrite to replace it)")
    if path.exists() and overwrite:
        # a unique name: an earlier crashed overwrite's aside is never the one deleted
        aside = path.with_name(f".{path.name}.replaced-{time.time_ns()}")
        os.rename(path, aside)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / marker).exists():
        write_json(path / marker, {"created": time.time(), "pid": os.getpid()})
    return aside


def _ours(path: Path, marker: str) -> bool:
    return path.is_dir() and ((path / marker).is_file() or not any(path.iterdir()))


def finish_out_dir(aside: Path | None) -> None:
    """After a successful run: delete what prepare_out_dir moved aside."""
    if aside is not None:
        _remove(Path(aside))


class RunLock:
    """`with RunLock(run_dir):` — one live run per directory. The lock file holds the owner's pid; it is held
    with flock, which the kernel drops when the owner dies, so a stale lock left by a dead (or SIGKILLed) run is
    taken over without guessing from pids, while a live holder is refused with its pid in the message."""

    def __init__(self, run_dir: str | Path, name: str = LOCK):
        self.path = Path(run_dir) / name
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise OutDirError(f"{self.path.parent} is in use by another rewardflow run (pid {holder}; lock {self.path})") from None
            # The previous owner may have unlinked the file between our open and flock: lock the file on disk.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        if _same_file(self._fd, self.path):  # not when the directory moved away with our lock in it
            self.path.unlink()  # while still holding it, so no one locks a file that is about to vanish
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextmanager
def claim_out_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Iterator[Path]:
    """prepare_out_dir + RunLock for the whole run + finish_out_dir on success: what a CLI verb wraps its run in.
    On failure the replaced content stays at `.NAME.replaced-*`, so a crashed overwrite loses nothing."""
    path = Path(path)
    # Ours already: lock it before touching anything, since another live run may own it.
    old = RunLock(path).acquire() if path.is_dir() and (path / MARKER).is_file() else None
    lock = None
    try:
        aside = prepare_out_dir(path, overwrite=overwrite, resume=resume)
        # an overwrite moved the old directory (and `old`'s lock file) aside: lock the new one
        lock = old if old is not None and aside is None else RunLock(path).acquire()
        yield path
        finish_out_dir(aside)
    finally:
        for held in {id(x): x for x in (lock, old) if x is not None}.values():
            held.release()
