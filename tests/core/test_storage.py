"""LocalFileStorage on real files: content keys, layout, atomic writes that leave nothing behind
when they fail, key validation, deletion, and what a sweep is told is stale."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bookstore.core.storage import LocalFileStorage, is_storage_key

HOUR = 3600.0
SOME_BYTES = b"\xff\xd8 not really a JPEG, the storage does not care"
SOME_KEY = hashlib.sha256(SOME_BYTES).hexdigest() + ".jpg"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "covers"


@pytest.fixture
def storage(root: Path) -> LocalFileStorage:
    return LocalFileStorage(root)


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def make_old(path: Path, age_seconds: float) -> None:
    then = time.time() - age_seconds
    os.utime(path, (then, then))


def test_put_stores_the_bytes_under_their_content_key(storage: LocalFileStorage, root: Path) -> None:
    key = storage.put(SOME_BYTES, "jpg")

    assert key == SOME_KEY
    assert storage.path(key) == root / key[:2] / key[2:4] / key
    assert files_under(root) == [storage.path(key)]
    assert storage.path(key).read_bytes() == SOME_BYTES
    assert storage.read(key) == SOME_BYTES
    assert storage.exists(key)


def test_the_extension_is_part_of_the_key(storage: LocalFileStorage) -> None:
    assert storage.put(SOME_BYTES, "png") != storage.put(SOME_BYTES, "webp")


def test_put_of_stored_bytes_changes_nothing(storage: LocalFileStorage, root: Path) -> None:
    key = storage.put(SOME_BYTES, "jpg")
    first = storage.path(key).stat()

    assert storage.put(SOME_BYTES, "jpg") == key

    again = storage.path(key).stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert files_under(root) == [storage.path(key)]


def test_concurrent_puts_of_the_same_bytes_store_one_complete_file(storage: LocalFileStorage, root: Path) -> None:
    data = os.urandom(1 << 20)

    with ThreadPoolExecutor(max_workers=4) as pool:
        keys = set(pool.map(lambda _: storage.put(data, "png"), range(8)))

    assert len(keys) == 1
    assert files_under(root) == [storage.path(keys.pop())]
    assert files_under(root)[0].read_bytes() == data


def test_stored_files_are_readable_by_everyone_and_writable_by_the_owner(storage: LocalFileStorage) -> None:
    key = storage.put(SOME_BYTES, "jpg")

    assert stat.S_IMODE(storage.path(key).stat().st_mode) == 0o644


# Each fails after the temporary file exists: setting its mode, syncing it, renaming it.
@pytest.mark.parametrize("failing", ["fchmod", "fsync", "replace"])
def test_failed_write_leaves_no_file(
    storage: LocalFileStorage, root: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)

    with pytest.raises(OSError, match="No space left"):
        storage.put(SOME_BYTES, "jpg")

    monkeypatch.undo()
    assert files_under(root) == []
    assert not storage.exists(SOME_KEY)


@pytest.mark.parametrize("extension", ["gif", "JPG", "", "jpg/../x", "../jpg"])
def test_put_refuses_other_extensions(storage: LocalFileStorage, root: Path, extension: str) -> None:
    with pytest.raises(ValueError, match="cannot store files of type"):
        storage.put(SOME_BYTES, extension)

    assert not root.exists()


MALFORMED_KEYS = [
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "",
    SOME_KEY.upper(),
    SOME_KEY[:-3] + "JPG",
    SOME_KEY[:-4] + ".gif",
    SOME_KEY[:-4],
    SOME_KEY[1:],
    "g" + SOME_KEY[1:],
    SOME_KEY + "\n",
    SOME_KEY + "/..",
    f"{SOME_KEY[:2]}/{SOME_KEY[2:4]}/{SOME_KEY}",
    "../" + SOME_KEY,
]


@pytest.mark.parametrize("key", MALFORMED_KEYS)
@pytest.mark.parametrize("method", ["path", "exists", "read", "delete"])
def test_malformed_key_is_refused(storage: LocalFileStorage, key: str, method: str) -> None:
    assert not is_storage_key(key)

    with pytest.raises(ValueError, match="not a storage key"):
        getattr(storage, method)(key)


@pytest.mark.parametrize("extension", ["jpg", "png", "webp"])
def test_well_formed_keys(extension: str) -> None:
    assert is_storage_key(f"{SOME_KEY[:-4]}.{extension}")


def test_delete_removes_the_file(storage: LocalFileStorage, root: Path) -> None:
    key = storage.put(SOME_BYTES, "jpg")

    storage.delete(key)

    assert not storage.exists(key)
    assert files_under(root) == []
    with pytest.raises(FileNotFoundError):
        storage.read(key)


def test_delete_of_a_missing_file_is_fine(storage: LocalFileStorage) -> None:
    storage.delete(SOME_KEY)

    assert not storage.exists(SOME_KEY)


def test_stale_keys_are_those_of_files_older_than_asked(storage: LocalFileStorage) -> None:
    old_key = storage.put(b"old cover", "jpg")
    newer_key = storage.put(b"newer cover", "webp")
    make_old(storage.path(old_key), 2 * HOUR)
    make_old(storage.path(newer_key), HOUR / 2)

    assert storage.stale_keys(HOUR) == [old_key]
    assert sorted(storage.stale_keys(HOUR / 4)) == sorted([old_key, newer_key])
    assert storage.exists(old_key)  # listing is not deleting: the caller checks references first


def test_stale_keys_ignores_files_that_are_not_keys_in_their_place(storage: LocalFileStorage, root: Path) -> None:
    key = storage.put(SOME_BYTES, "jpg")
    stray = root / key[:2] / key[2:4] / "notes.txt"
    misplaced = root / "00" / "00" / key
    for path in (stray, misplaced):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        make_old(path, 2 * HOUR)

    assert storage.stale_keys(HOUR) == []
    assert stray.exists()
    assert misplaced.exists()


def test_stale_keys_removes_old_temporary_files_only(storage: LocalFileStorage, root: Path) -> None:
    key = storage.put(SOME_BYTES, "jpg")
    bucket = storage.path(key).parent
    old_temporary, new_temporary = bucket / ".tmp-crashed", bucket / ".tmp-in-progress"
    old_temporary.write_bytes(b"half a cover")
    new_temporary.write_bytes(b"being written")
    make_old(old_temporary, 2 * HOUR)

    assert storage.stale_keys(HOUR) == []

    assert not old_temporary.exists()
    assert new_temporary.exists()
    assert storage.exists(key)


def test_stale_keys_keeps_temporary_files_a_write_may_still_be_using(storage: LocalFileStorage) -> None:
    key = storage.put(SOME_BYTES, "jpg")
    in_progress = storage.path(key).parent / ".tmp-in-progress"
    in_progress.write_bytes(b"being written")
    make_old(in_progress, 5 * 60)
    # Asked for everything older than now: the key is listed, the temporary file stays.
    assert storage.stale_keys(0) == [key]
    assert in_progress.exists()


def test_stale_keys_of_an_empty_storage(storage: LocalFileStorage) -> None:
    assert storage.stale_keys(0) == []
