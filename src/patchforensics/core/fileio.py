"""Atomic file writes: every artefact is written to a temp file in the same
folder and renamed into place, so a crash never leaves a half-written file
that a later run would read back."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml


_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_prefix(name: str) -> str:
    # the writer's pid is in the name so that a later run can tell a dead
    # writer's leftover (SIGKILL, power loss) from a file being written now
    return f".{name}.pid{os.getpid()}."


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes files private (and some writers recreate the file): outputs get the usual mode
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    # file names that are not valid UTF-8 (scraped folders) reach us as lone
    # surrogates: write them escaped (\udce9) rather than fail the whole run
    write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def read_yaml(path: str | os.PathLike) -> Any:
    with open(path, "r", encoding="utf-8") as f:
        return yaml.safe_load(f)


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """Save a matplotlib figure atomically (format from the final suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)


def save_image(image, path: str | os.PathLike) -> None:
    """Save a PIL image atomically (format from the suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format=_PIL_FORMATS.get(path.suffix.lower(), "PNG"))


_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


class OutputExistsError(FileExistsError):
    """Raised when an output would be overwritten without ``force``."""


def ensure_new_output(path: str | os.PathLike, force: bool) -> None:
    """Refuse to reuse a non-empty output folder unless ``force``."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not force:
        raise OutputExistsError(f"{path} already exists and is not empty; "
                                "pass --force to overwrite it or choose another output folder")


def ensure_new_file(path: str | os.PathLike, force: bool) -> None:
    """Refuse to replace an existing output file unless ``force``."""
    if Path(path).exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it or choose another file")


@contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``path``; on success it takes ``path``'s place.

    Refuses (before any work) to replace a non-empty ``path`` unless ``force``;
    the old folder is removed only once the new one is complete, so a crash
    leaves either the old output or the new one, never a mix.
    """
    path = Path(path)
    ensure_new_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; outputs are meant to be shared
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_TEMP_NAME = re.compile(r"^\..+\.pid(\d+)\.[^.]*\.(tmp|old)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's live process
        return True
    return True


def try_lock(path: str | os.PathLike) -> int | None:
    """Take the lock file ``path`` (an exclusive ``flock``); its file descriptor, or ``None`` while
    another process holds it. Release with :func:`unlock`.

    The kernel drops the lock when its process dies, so a killed run's lock is never stale and
    never has to be taken over (a takeover by deleting the file is the race this avoids).
    """
    import fcntl

    path = Path(path)
    for _ in range(3):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())     # who holds it, for a person looking
            return fd
        os.close(fd)        # its holder released (deleted) it between our open and our lock: again
    return None


def lock_holder(path: str | os.PathLike) -> str | None:
    """``None`` when no process holds the lock file ``path`` (:func:`try_lock`), else the pid its
    holder wrote in it (``?`` when unreadable; a pid of another host where ``path`` is shared)."""
    fd = try_lock(path)
    if fd is not None:
        unlock(path, fd)
        return None
    try:
        return Path(path).read_text().strip() or "?"
    except OSError:
        return "?"


def unlock(path: str | os.PathLike, fd: int) -> None:
    """Release a lock of :func:`try_lock`: the file goes first, so no one locks a deleted file."""
    Path(path).unlink(missing_ok=True)
    os.close(fd)


@contextmanager
def locked(path: str | os.PathLike, timeout: float = 600.0) -> Iterator[None]:
    """Hold the lock file ``path`` (see :func:`try_lock`) for the block, waiting while another
    process holds it; ``TimeoutError`` after ``timeout`` seconds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while (fd := try_lock(path)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has been held by another process for {timeout:.0f} s")
        time.sleep(0.05)
    try:
        yield
    finally:
        unlock(path, fd)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files/folders in ``folder`` whose writer process is gone.

    An atomic write killed before its rename leaves ``.<name>.pid<N>.<random>.tmp``
    behind; it is never read, only wasted space. Entries of live processes (a
    concurrent writer) are kept. Returns what was removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _TEMP_NAME.match(entry.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
