"""Content-addressed file storage: the interface the service codes against, and local files.

A stored file is named by its content: the key is ``<sha256 of the bytes>.<extension>``, never
anything a client sent, so identical files are stored once and a key can never point outside the
storage root. ``LocalFileStorage`` lays keys out as ``ab/cd/<key>`` (65,536 buckets) and writes
them atomically and durably: a temporary file in the target directory, ``fsync``, ``os.replace``,
then ``fsync`` of the directories whose entries changed. A reader or a crash sees the whole file
or none of it.

Every method blocks on the disk (a 100 KB ``put`` took 7-24 ms here, mostly ``fsync``), so async
callers run them in a worker thread (``anyio.to_thread.run_sync``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Final

__all__ = ["STORAGE_EXTENSIONS", "FileStorage", "LocalFileStorage", "content_key", "is_storage_key"]

# The file types the service stores (the cover formats); a key's extension is one of them.
STORAGE_EXTENSIONS: Final = ("jpg", "png", "webp")
_KEY_PATTERN = re.compile(rf"[0-9a-f]{{64}}\.(?:{'|'.join(STORAGE_EXTENSIONS)})")
# Prefix of the files being written; a crash between write and rename leaves one behind.
_TEMPORARY_PREFIX = ".tmp-"
# No write of a file of a few MB takes this long: a temporary file this old was abandoned.
_ABANDONED_WRITE_SECONDS = 600


def content_key(data: bytes, extension: str) -> str:
    """The key ``data`` is stored under as a file of type ``extension``."""
    return f"{hashlib.sha256(data).hexdigest()}.{extension}"


def is_storage_key(key: str) -> bool:
    """Whether ``key`` is a well-formed key: 64 lowercase hex digits, a dot, a stored extension."""
    return _KEY_PATTERN.fullmatch(key) is not None


class FileStorage(ABC):
    """Content-addressed file storage; every method blocks (call it in a thread).

    An abstract class rather than a Protocol: Litestar checks the type of a dependency with
    ``isinstance``, which a Protocol would answer only as ``runtime_checkable``, attribute by attribute.
    """

    @abstractmethod
    def put(self, data: bytes, extension: str) -> str:
        """Stores ``data`` atomically and durably and returns its key; storing bytes that are
        already there returns the same key and changes nothing."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the file of ``key`` is stored."""

    @abstractmethod
    def path(self, key: str) -> Path:
        """The local path of ``key``'s file (for serving it); ``ValueError`` for a malformed key."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The bytes stored under ``key``; ``FileNotFoundError`` when there are none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes ``key``'s file; a file that is already gone is fine."""

    @abstractmethod
    def stale_keys(self, older_than_seconds: float) -> list[str]:
        """The keys whose files are older than ``older_than_seconds`` (candidates for a sweep of
        unreferenced files); also removes the temporary files of writes interrupted long ago."""


class LocalFileStorage(FileStorage):
    """``FileStorage`` in a directory of the local filesystem, laid out ``ab/cd/<key>``.

    The root must be one filesystem (``os.replace`` is atomic only within one); it is created on
    the first ``put``.
    """

    def __init__(self, root: Path) -> None:
        self._root = root

    def put(self, data: bytes, extension: str) -> str:
        if extension not in STORAGE_EXTENSIONS:
            raise ValueError(f"cannot store files of type {extension!r}")
        key = content_key(data, extension)
        final_path = self.path(key)
        if final_path.exists():  # the same bytes are already stored under this name
            return key
        directory = final_path.parent
        new_directories = [bucket for bucket in (directory.parent, directory) if not bucket.exists()]
        directory.mkdir(parents=True, exist_ok=True)
        # In the target directory: same filesystem as the final name, so the rename is atomic.
        descriptor, temporary_name = tempfile.mkstemp(dir=directory, prefix=_TEMPORARY_PREFIX)
        try:
            with os.fdopen(descriptor, "wb") as temporary_file:
                os.fchmod(temporary_file.fileno(), 0o644)  # mkstemp creates 0600; the server reads it
                temporary_file.write(data)
                temporary_file.flush()
                os.fsync(temporary_file.fileno())
            os.replace(temporary_name, final_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary_name)
            raise
        # The rename, and the entries of buckets created just now, are durable only once their
        # directories are synced.
        for changed in (directory, *(bucket.parent for bucket in new_directories)):
            _fsync_directory(changed)
        return key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def path(self, key: str) -> Path:
        if not is_storage_key(key):
            raise ValueError(f"not a storage key: {key[:100]!r}")
        return self._root.joinpath(key[:2], key[2:4], key)

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def delete(self, key: str) -> None:
        # No directory fsync: a deletion lost in a crash leaves an unreferenced file, which the
        # sweep removes. Empty buckets stay: removing one could race with a `put` that has just
        # created it.
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    def stale_keys(self, older_than_seconds: float) -> list[str]:
        now = time.time()
        cutoff = now - older_than_seconds
        # A temporary file is being written, or was abandoned by a crash: only age tells, and
        # removing one being written would fail its upload, whatever age the sweep was asked for.
        temporary_cutoff = min(cutoff, now - _ABANDONED_WRITE_SECONDS)
        stale: list[str] = []
        for file_path in self._root.glob("*/*/*"):
            try:
                modified = file_path.stat().st_mtime
            except FileNotFoundError:  # deleted or renamed since the directory was listed
                continue
            if file_path.name.startswith(_TEMPORARY_PREFIX):
                if modified < temporary_cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        file_path.unlink()
            elif modified < cutoff and is_storage_key(file_path.name) and file_path == self.path(file_path.name):
                stale.append(file_path.name)
        return stale


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
