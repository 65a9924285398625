"""The directory on disk: one file per key, written atomically, a lock per namespace.

Layout of ``files:///DIR``::

    DIR/
      ns-<sha256 of the namespace, 32 hex digits>/
        .lock                        the namespace's write lock (fcntl.flock)
        <sha256 of the key, 64 hex>  one file per key
        .tmp-<random>                a write in progress (renamed over its key's file)

A key's file is one line of JSON, ``{"key": ..., "deadline": ..., "tags": {...}}``, then
the value's bytes as dmem encoded them. File names are hashes because a key may be any
text up to 1024 bytes (``/``, case that a case-insensitive file system would fold, names
too long for a directory entry); the key itself is in the file. ``deadline`` is the
wall-clock time (``time.time()``) at which the key expires, or null: every process that
opens the directory shares it.

Every function here is synchronous and blocking: the provider runs them in a worker thread.

Atomicity:

* a write goes to a temporary file, is flushed (and fsynced unless ``fsync=False``), then
  renamed over the key's file (``os.replace``, atomic on POSIX): a reader sees the old
  file or the new one, never half of one;
* every write takes the namespace's lock, an ``fcntl.flock`` on ``.lock``, which excludes
  other threads and other processes alike (each acquisition opens the file anew, so two
  acquisitions never share a lock); so a check-then-write such as ``if_not_exists`` is
  atomic across processes, and so are ``expire``, ``delete`` and the sweep of expired files;
* reads take no lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import dmem

__all__ = ["Header", "Namespace", "check_root", "key_file", "namespace_dir"]

_LOCK = ".lock"
_TMP = ".tmp-"
_STALE_TMP_SECONDS = 3600.0  # a temporary file this old was left by a crash: swept


@dataclass(frozen=True)
class Header:
    """The first line of a key's file."""

    key: str
    deadline: float | None
    tags: dict[str, str]

    def live(self, now: float) -> bool:
        return self.deadline is None or self.deadline > now

    def ms_left(self, now: float) -> int | None:
        """Whole milliseconds left, rounded up (a live key never has 0 left); None: none."""
        return None if self.deadline is None else math.ceil((self.deadline - now) * 1000)

    def encode(self) -> bytes:
        # ensure_ascii: one line whatever the key holds (a newline in a key is "\n").
        text = json.dumps({"key": self.key, "deadline": self.deadline, "tags": self.tags})
        return text.encode("ascii") + b"\n"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def namespace_dir(root: Path, namespace: str) -> Path:
    return root / f"ns-{_digest(namespace)[:32]}"


def key_file(directory: Path, key: str) -> Path:
    return directory / _digest(key)


def _parse_header(line: bytes, path: Path) -> Header:
    try:
        data: Any = json.loads(line)
        key, deadline, tags = data["key"], data["deadline"], data["tags"]
        if not isinstance(key, str) or not isinstance(tags, dict):
            raise TypeError("bad field types")
        if deadline is not None and not isinstance(deadline, (int, float)):
            raise TypeError("bad deadline")
    except (ValueError, KeyError, TypeError) as exc:
        raise dmem.CorruptValueError(f"{path.name}: not a dmem-files record ({exc})") from exc
    return Header(key, None if deadline is None else float(deadline), dict(tags))


def _read(path: Path, key: str | None, want_value: bool) -> tuple[Header, bytes] | None:
    """The header (and value) of the file at ``path``; None when there is no such file."""
    try:
        file: BinaryIO = path.open("rb")
    except FileNotFoundError:
        return None
    with file:
        header = _parse_header(file.readline(), path)
        value = file.read() if want_value else b""
    if key is not None and header.key != key:  # a SHA-256 collision: never seen, never hidden
        raise dmem.CorruptValueError(f"{path.name} holds another key than the one asked for")
    return header, value


class Namespace:
    """One namespace's directory; the methods are the provider's calls, blocking."""

    def __init__(self, root: Path, namespace: str, *, fsync: bool, lock_timeout: float) -> None:
        self.root = root
        self.directory = namespace_dir(root, namespace)
        self.fsync = fsync
        self.lock_timeout = lock_timeout

    # --- reads (no lock) ----------------------------------------------------------------------
    def read(self, key: str, *, want_value: bool = True) -> tuple[Header, bytes] | None:
        """The live record of ``key``, or None."""
        found = _read(key_file(self.directory, key), key, want_value)
        if found is None or not found[0].live(time.time()):
            return None
        return found

    def entry(self, key: str) -> tuple[bytes, int | None] | None:
        """The live value of ``key`` and its milliseconds left, both judged at one instant
        (two clock readings could find a key live, then 0 ms left); None when not live."""
        now = time.time()
        found = _read(key_file(self.directory, key), key, want_value=True)
        if found is None or not found[0].live(now):
            return None
        return found[1], found[0].ms_left(now)

    def names(self) -> list[str]:
        """The file names of the keys (a snapshot; a file may be gone when read)."""
        try:
            return [name for name in os.listdir(self.directory) if not name.startswith(".")]
        except FileNotFoundError:  # nothing was ever written in this namespace
            return []

    def read_names(
        self, names: Iterable[str], *, want_value: bool, keep: Callable[[str], bool] | None = None
    ) -> list[tuple[Header, bytes]]:
        """The live records among the files ``names`` whose key ``keep`` accepts (a value is
        read only then), skipping files gone meanwhile."""
        now = time.time()
        found = []
        for name in names:
            path = self.directory / name
            try:
                file: BinaryIO = path.open("rb")
            except FileNotFoundError:
                continue
            with file:
                header = _parse_header(file.readline(), path)
                if not header.live(now) or (keep is not None and not keep(header.key)):
                    continue
                found.append((header, file.read() if want_value else b""))
        return found

    # --- writes (under the lock) ----------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the namespace's lock; ``ProviderUnavailableError`` after ``lock_timeout`` s."""
        self.directory.mkdir(exist_ok=True)  # the store's directory must still be there
        with (self.directory / _LOCK).open("ab") as lock:
            deadline = time.monotonic() + self.lock_timeout
            pause = 0.0005
            while True:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise dmem.ProviderUnavailableError(
                            f"the namespace lock of {self.root} stayed taken for "
                            f"{self.lock_timeout:g}s (another process holds it)"
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def write(self, key: str, header: Header, value: bytes) -> None:
        """Replace the file of ``key`` atomically (temporary file, then ``os.replace``);
        the caller holds the lock and syncs the directory (:meth:`sync_directory`)."""
        temporary = self.directory / f"{_TMP}{secrets.token_hex(8)}"
        try:
            with temporary.open("wb") as file:
                file.write(header.encode())
                file.write(value)
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            os.replace(temporary, key_file(self.directory, key))
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise

    def sync_directory(self) -> None:
        """Make renames and removals durable (fsync of the directory), unless fsync=False."""
        if not self.fsync:
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def set_many(
        self,
        items: Iterable[tuple[str, bytes]],
        deadline: float | None,
        tags: Mapping[str, str],
        if_not_exists: bool,
    ) -> int:
        written = 0
        with self.locked():
            for key, value in items:
                if if_not_exists and self.read(key, want_value=False) is not None:
                    continue  # live: a refused write changes nothing
                self.write(key, Header(key, deadline, dict(tags)), value)
                written += 1
            if written:
                self.sync_directory()
        return written

    def delete(self, key: str) -> bool:
        with self.locked():
            path = key_file(self.directory, key)
            found = _read(path, key, want_value=False)
            if found is None:
                return False
            path.unlink()
            self.sync_directory()
            return found[0].live(time.time())  # an expired file goes too, but was not live

    def set_deadline(self, key: str, deadline: float | None) -> bool:
        with self.locked():
            found = self.read(key)
            if found is None:
                return False  # never revive an expired key
            header, value = found
            self.write(key, Header(key, deadline, header.tags), value)
            self.sync_directory()
            return True

    def clear(self) -> int:
        live = 0
        with self.locked():
            now = time.time()
            for name in self.names():
                path = self.directory / name
                found = _read(path, None, want_value=False)
                if found is None:
                    continue
                live += found[0].live(now)
                path.unlink()
            self.sync_directory()
        return live

    def sweep(self) -> int:
        """Remove expired files, and temporary files left by a crash; how many went.
        Takes the lock: a file is only ever removed while no writer can replace it."""
        removed = 0
        with self.locked():
            now = time.time()
            for entry in os.scandir(self.directory):
                if entry.name.startswith(_TMP):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < now - _STALE_TMP_SECONDS:
                            os.unlink(entry.path)
                            removed += 1
                    continue
                if entry.name.startswith("."):
                    continue
                try:
                    found = _read(Path(entry.path), None, want_value=False)
                except dmem.CorruptValueError:
                    continue  # not ours to delete
                if found is not None and not found[0].live(now):
                    os.unlink(entry.path)
                    removed += 1
            if removed:
                self.sync_directory()
        return removed


def check_root(root: Path, create: bool) -> None:
    """The store's directory exists (made with its parents when ``create``), or
    ``StoreNotFoundError``; any other OS error propagates (the provider maps it)."""
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        if not create:
            raise dmem.StoreNotFoundError(f"{root} does not exist (create=false)") from None
        root.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(root))
