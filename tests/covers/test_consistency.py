"""Cover files and book rows stay consistent: every file a row names exists, and every file on disk
is named by a row (counted in the test's own covers directory), through replaces, deletes, shared
images, failed uploads, concurrent uploads and the sweep of files left by interrupted uploads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bookstore.books.queries import Actor
from bookstore.core.database import fetch_all, fetch_one
from bookstore.core.storage import LocalFileStorage
from bookstore.covers.images import process_cover
from bookstore.covers.queries import replace_cover, sweep_files
from bookstore.testing import clean_environment
from tests.covers.conftest import Covers, cover_path
from tests.covers.images import jpeg_bytes, png_bytes, truncated, webp_bytes
from tests.helpers import TEST_SERVER_ENV, Account, assert_problem

BOOKS = "/api/v1/books"
# A cover is two files: the image and its thumbnail.
FILES_PER_COVER = 2
DEADLINE_SECONDS = 10.0


async def named_keys() -> set[str]:
    """Every storage key a book row names."""
    rows = await fetch_all("SELECT cover_key, cover_thumbnail_key FROM book WHERE cover_key IS NOT NULL")
    return {key for row in rows for key in row.values()}


async def assert_files_match_rows(covers: Covers) -> set[str]:
    """The files on disk are exactly those the rows name (none missing, none orphaned); their keys."""
    keys = await named_keys()
    assert covers.files() == keys
    return keys


async def new_book(covers: Covers, owner: Account) -> int:
    book_id: int = (await covers.api.create_book(owner))["id"]
    return book_id


async def put_cover(covers: Covers, book_id: int, data: bytes, owner: Account) -> dict[str, Any]:
    response = await covers.upload(book_id, data, owner)
    assert response.status_code in (200, 201), response.text
    cover: dict[str, Any] = response.json()
    return cover


async def test_replacing_a_cover_deletes_the_previous_files(covers: Covers) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    await put_cover(covers, book_id, png_bytes(), owner)
    first_files = await assert_files_match_rows(covers)
    assert len(first_files) == FILES_PER_COVER
    await put_cover(covers, book_id, jpeg_bytes(), owner)
    second_files = await assert_files_match_rows(covers)
    assert len(second_files) == FILES_PER_COVER
    assert not first_files & second_files


async def test_replacing_a_cover_by_the_same_image_keeps_its_files(covers: Covers) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    data = webp_bytes()
    await put_cover(covers, book_id, data, owner)
    again = await covers.upload(book_id, data, owner)
    assert again.status_code == 200
    assert len(await assert_files_match_rows(covers)) == FILES_PER_COVER
    assert (await covers.api.get(cover_path(book_id))).content == data


async def test_deleting_a_cover_deletes_its_files(covers: Covers) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    await put_cover(covers, book_id, png_bytes(), owner)
    assert len(covers.files()) == FILES_PER_COVER
    assert (await covers.api.delete(cover_path(book_id), headers=owner.headers)).status_code == 204
    assert covers.files() == set()
    assert await named_keys() == set()


async def test_deleting_the_book_deletes_its_cover_files(covers: Covers) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    await put_cover(covers, book_id, jpeg_bytes(), owner)
    assert len(covers.files()) == FILES_PER_COVER
    assert (await covers.api.delete(f"{BOOKS}/{book_id}", headers=owner.headers)).status_code == 204
    assert covers.files() == set()


async def test_books_with_the_same_image_share_its_files_until_the_last_lets_go(covers: Covers) -> None:
    owner = await covers.api.account()
    first, second, third = [await new_book(covers, owner) for _ in range(3)]
    data = png_bytes()
    for book_id in (first, second, third):
        await put_cover(covers, book_id, data, owner)
    shared = await assert_files_match_rows(covers)
    assert len(shared) == FILES_PER_COVER

    # Each way of letting go of a shared file keeps it for the books that still name it.
    await put_cover(covers, first, jpeg_bytes(), owner)
    assert shared <= covers.files()
    assert (await covers.api.delete(cover_path(second), headers=owner.headers)).status_code == 204
    assert shared <= covers.files()
    assert (await covers.api.get(cover_path(third))).content == data
    await assert_files_match_rows(covers)

    assert (await covers.api.delete(f"{BOOKS}/{third}", headers=owner.headers)).status_code == 204
    assert not shared & covers.files()
    await assert_files_match_rows(covers)


@pytest.mark.parametrize(
    ("build", "status"),
    [
        pytest.param(lambda: b"not an image at all", 415, id="415"),
        pytest.param(lambda: truncated(jpeg_bytes(300, 200)), 422, id="422"),
    ],
)
async def test_a_refused_upload_leaves_neither_a_file_nor_a_reference(
    covers: Covers, build: Callable[[], bytes], status: int
) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    await put_cover(covers, book_id, png_bytes(), owner)
    before = await assert_files_match_rows(covers)
    assert_problem(await covers.upload(book_id, build(), owner), status)
    assert await assert_files_match_rows(covers) == before


async def test_an_upload_over_the_size_limit_leaves_nothing(make_covers: Callable[..., Any]) -> None:
    covers: Covers = await make_covers(cover_max_bytes=4096)
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    assert_problem(await covers.upload(book_id, png_bytes(400, 300), owner), 413)
    assert covers.files() == set()
    assert await named_keys() == set()


async def wait_for_a_blocked_cover_write() -> None:
    """Return once a session waits for a row lock in the cover write (``FOR NO KEY UPDATE``)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    # On a pooled connection outside any transaction: pg_stat_activity is a snapshot per transaction.
    while not await fetch_one(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR NO KEY UPDATE'"
    ):
        assert time.monotonic() < deadline, "the upload never reached its row lock"
        await asyncio.sleep(0.01)


async def test_an_upload_whose_book_is_deleted_meanwhile_leaves_no_file(covers: Covers, database_url: str) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    blocker = await asyncpg.connect(database_url)
    try:
        # Hold the book's row so the upload stops after writing its files, before its row names them.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM book WHERE id = $1 FOR UPDATE", book_id)
        upload = asyncio.create_task(covers.upload(book_id, jpeg_bytes(), owner))
        await wait_for_a_blocked_cover_write()
        assert len(covers.files()) == FILES_PER_COVER  # written, not yet named
        await blocker.execute("DELETE FROM book WHERE id = $1", book_id)
        await transaction.commit()
        response = await asyncio.wait_for(upload, DEADLINE_SECONDS)
    finally:
        await blocker.close()
    assert_problem(response, 404)
    assert covers.files() == set()


async def test_concurrent_uploads_to_one_book_leave_exactly_one_cover(covers: Covers) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    images = [png_bytes(100 + number, 80) for number in range(10)]
    responses = await asyncio.gather(*(covers.upload(book_id, image, owner) for image in images))
    # The row lock serialises them: one found no cover, each of the others replaced one.
    assert Counter(response.status_code for response in responses) == {201: 1, 200: 9}
    files = await assert_files_match_rows(covers)
    assert len(files) == FILES_PER_COVER
    served = await covers.api.get(cover_path(book_id))
    assert served.content in images
    assert (await covers.api.get(f"{BOOKS}/{book_id}")).json()["cover_url"] in {
        response.json()["url"] for response in responses
    }


async def wait_for_advisory_lock_waiters(count: int) -> None:
    """Return once ``count`` sessions wait for an advisory (storage key) lock."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
    while (row := await fetch_one(sql)) is None or row[0] < count:
        assert time.monotonic() < deadline, f"fewer than {count} sessions came to wait for a key lock"
        await asyncio.sleep(0.01)


async def test_naming_a_shared_image_while_another_book_lets_go_of_it_never_loses_the_file(
    covers: Covers, database_url: str
) -> None:
    """Book 1 takes image A while book 2 replaces its A by B, in the worst order: book 1 finds A's
    file already there (so writes nothing), then book 2's release deletes it before book 1's row
    names it. The writer re-checks its files under the key lock, so the file must be there."""
    owner = await covers.api.account()
    first, second = await new_book(covers, owner), await new_book(covers, owner)
    shared = png_bytes()
    await put_cover(covers, second, shared, owner)
    shared_key = f"{hashlib.sha256(shared).hexdigest()}.png"  # stored as uploaded: no metadata
    assert shared_key in covers.files()
    holder = await asyncpg.connect(database_url)
    try:
        # Both the release of A and the writer naming A queue behind this lock, in that order.
        await holder.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", shared_key)
        letting_go = asyncio.create_task(covers.upload(second, jpeg_bytes(), owner))
        await wait_for_advisory_lock_waiters(1)
        taking = asyncio.create_task(covers.upload(first, shared, owner))
        await wait_for_advisory_lock_waiters(2)
        await holder.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", shared_key)
        responses = await asyncio.wait_for(asyncio.gather(letting_go, taking), DEADLINE_SECONDS)
    finally:
        await holder.close()
    assert [response.status_code for response in responses] == [200, 201]
    await assert_files_match_rows(covers)
    assert shared_key in covers.files()
    assert (await covers.api.get(cover_path(first))).content == shared


async def test_racing_uploads_of_shared_images_leave_files_and_rows_matching(covers: Covers) -> None:
    """The same race without staging, a few times over: whatever the order, rows and files match."""
    owner = await covers.api.account()
    first, second = await new_book(covers, owner), await new_book(covers, owner)
    for round_number in range(5):
        shared, replacement = png_bytes(60 + round_number, 60), jpeg_bytes(60 + round_number, 60)
        await put_cover(covers, second, shared, owner)
        taking, letting_go = await asyncio.gather(
            covers.upload(first, shared, owner), covers.upload(second, replacement, owner)
        )
        assert (taking.status_code, letting_go.status_code) == (201, 200), (taking.text, letting_go.text)
        await assert_files_match_rows(covers)
        assert (await covers.api.get(cover_path(first))).content == shared
        for book_id in (first, second):
            assert (await covers.api.delete(cover_path(book_id), headers=owner.headers)).status_code == 204
        assert covers.files() == set()


async def test_the_sweep_deletes_unnamed_files_and_keeps_named_ones(covers: Covers) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    await put_cover(covers, book_id, png_bytes(), owner)
    named = await named_keys()
    storage = LocalFileStorage(covers.directory)
    # As an upload interrupted between writing its file and committing its row leaves it.
    orphan = storage.put(jpeg_bytes(), "jpg")
    interrupted_write = storage.path(orphan).parent / ".tmp-interrupted"
    interrupted_write.write_bytes(b"half a file")
    assert await sweep_files(storage, 3600) == 0  # too young: maybe an upload still under way
    assert covers.files() == {*named, orphan, interrupted_write.name}

    # A temporary file may be a write in progress, whatever age the sweep is asked for: only one
    # abandoned long ago goes.
    assert await sweep_files(storage, 0) == 1
    assert covers.files() == {*named, interrupted_write.name}
    an_hour_ago = time.time() - 3600
    os.utime(interrupted_write, (an_hour_ago, an_hour_ago))
    assert await sweep_files(storage, 0) == 0
    assert covers.files() == named
    assert (await covers.api.get(cover_path(book_id))).status_code == 200


class _ThumbnailsFail(LocalFileStorage):
    """Stores images but fails on thumbnails (WebP), as a full disk would on the second file."""

    def put(self, data: bytes, extension: str) -> str:
        if extension == "webp":
            raise OSError(28, "No space left on device")
        return super().put(data, extension)


async def test_an_upload_whose_files_cannot_all_be_written_leaves_none(covers: Covers) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    storage = _ThumbnailsFail(covers.directory)
    image = process_cover(png_bytes(), max_pixels=10**6)
    with pytest.raises(OSError, match="No space left"):
        await replace_cover(book_id, Actor(owner.id, is_admin=False), image, storage)
    assert covers.files() == set()
    assert await named_keys() == set()


async def test_the_sweep_covers_command_deletes_unnamed_files(covers: Covers, tmp_path: Path) -> None:
    owner = await covers.api.account()
    book_id = await new_book(covers, owner)
    await put_cover(covers, book_id, webp_bytes(), owner)
    named = await named_keys()
    storage = LocalFileStorage(covers.directory)
    orphans = {storage.put(png_bytes(30 + number, 30), "png") for number in range(3)}
    assert covers.files() == named | orphans
    environment = {
        **clean_environment(),
        **TEST_SERVER_ENV,
        "BOOKSTORE_DATA_DIR": str(tmp_path / "data"),
        "BOOKSTORE_COVERS_DIR": str(covers.directory),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bookstore",
        "sweep-covers",
        "--older-than",
        "0",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert "Deleted 3 " in stdout.decode()
    assert covers.files() == named
