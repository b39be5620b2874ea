"""Reads and writes of book covers: the cover columns of the ``book`` table and the stored files
they name.

Stored files are keyed by their content hash, so books with the same image share one file, and a
file may only be deleted once no book names it. Both sides of that race take a PostgreSQL
advisory lock on the key: a writer about to name a key makes sure, under the lock, that the file
is (still) there before its row names it; a release checks, under the lock, that no row names
the key before it deletes the file. So a file named by a committed row is never deleted, and a
file no row names is deleted once its last reference goes (or, after a crash between writing a
file and committing, by the sweep).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio.to_thread
import asyncpg

from bookstore.books.queries import Actor, check_may_change
from bookstore.core.database import DATABASE_UNAVAILABLE_ERRORS, fetch_one, transaction
from bookstore.core.errors import NotFoundError
from bookstore.core.storage import FileStorage, content_key
from bookstore.covers.schemas import Cover, cover_url

if TYPE_CHECKING:
    # Only its type: importing images loads Pillow (see covers.controller).
    from bookstore.covers.images import ProcessedCover

__all__ = ["StoredCover", "get_cover", "release_files", "remove_cover", "replace_cover", "sweep_files"]

_logger = logging.getLogger(__name__)
# What may stop a release: the database, or the file system.
_RELEASE_FAILURES: Final[tuple[type[Exception], ...]] = (*DATABASE_UNAVAILABLE_ERRORS, OSError)

_COVER_COLUMNS: Final = (
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size"
)
GET_COVER: Final = f"SELECT {_COVER_COLUMNS} FROM book WHERE id = $1"  # noqa: S608 - composed of constants only
# The row lock serialises the cover writes of one book (and a concurrent delete of the book).
LOCK_BOOK: Final = f"SELECT created_by, {_COVER_COLUMNS} FROM book WHERE id = $1 FOR NO KEY UPDATE"  # noqa: S608 - constants only
# A cover change changes the book's representation (`cover_url`): the table's trigger gives it a
# new version.
SET_COVER: Final = (
    "UPDATE book SET cover_key = $2, cover_content_type = $3, cover_width = $4, cover_height = $5, "
    "cover_size = $6, cover_thumbnail_key = $7, cover_thumbnail_size = $8 WHERE id = $1"
)
LOCK_KEY: Final = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
# Two lookups, each on its own partial index (an OR would scan the table).
KEY_IS_NAMED: Final = (
    "SELECT EXISTS (SELECT 1 FROM book WHERE cover_key = $1) "
    "OR EXISTS (SELECT 1 FROM book WHERE cover_thumbnail_key = $1)"
)


@dataclass(frozen=True, slots=True)
class StoredCover:
    """A book's cover as its row describes it."""

    key: str
    content_type: str
    width: int
    height: int
    size: int
    thumbnail_key: str
    thumbnail_size: int

    @property
    def keys(self) -> tuple[str, str]:
        return self.key, self.thumbnail_key

    def to_cover(self, book_id: int) -> Cover:
        return Cover(
            content_type=self.content_type,
            width=self.width,
            height=self.height,
            size=self.size,
            url=cover_url(book_id, self.key),
            thumbnail_url=cover_url(book_id, self.thumbnail_key, "thumbnail"),
        )


def _stored_cover(row: asyncpg.Record) -> StoredCover | None:
    if row["cover_key"] is None:
        return None
    return StoredCover(
        key=row["cover_key"],
        content_type=row["cover_content_type"],
        width=row["cover_width"],
        height=row["cover_height"],
        size=row["cover_size"],
        thumbnail_key=row["cover_thumbnail_key"],
        thumbnail_size=row["cover_thumbnail_size"],
    )


async def get_cover(book_id: int) -> StoredCover:
    """The book's cover, or NotFoundError (no such book, or no cover)."""
    row = await fetch_one(GET_COVER, book_id, read_only=True)
    if row is None:
        raise NotFoundError(f"Book {book_id} does not exist.")
    cover = _stored_cover(row)
    if cover is None:
        raise NotFoundError(f"Book {book_id} has no cover.")
    return cover


async def _lock_changeable_book(connection: asyncpg.Connection, book_id: int, actor: Actor) -> StoredCover | None:
    """Lock the book's row; its current cover. NotFoundError or PermissionDeniedError as the API's."""
    row = await connection.fetchrow(LOCK_BOOK, book_id)
    if row is None:
        raise NotFoundError(f"Book {book_id} does not exist.")
    check_may_change(row["created_by"], actor)
    return _stored_cover(row)


def _store_all(storage: FileStorage, files: Iterable[tuple[bytes, str]]) -> list[str]:
    return [storage.put(data, extension) for data, extension in files]


async def replace_cover(
    book_id: int, actor: Actor, image: ProcessedCover, storage: FileStorage
) -> tuple[StoredCover, StoredCover | None]:
    """Store ``image`` and its thumbnail and make them the book's cover; the new and the previous cover.

    The files are written first (durably), then named by the row in one transaction; the previous
    cover's files are released after the commit, the new ones if the transaction fails.
    """
    files = [(image.data, image.extension), (image.thumbnail, "webp")]
    cover = StoredCover(
        key=content_key(image.data, image.extension),
        content_type=image.content_type,
        width=image.width,
        height=image.height,
        size=len(image.data),
        thumbnail_key=content_key(image.thumbnail, "webp"),
        thumbnail_size=len(image.thumbnail),
    )
    try:
        # Written before any lock is taken (the durable write is the slow part), and written
        # again under the locks below if a release removed them meanwhile.
        await anyio.to_thread.run_sync(_store_all, storage, files)
        async with transaction() as connection:
            for locked_key in sorted(set(cover.keys)):
                await connection.execute(LOCK_KEY, locked_key)
            previous = await _lock_changeable_book(connection, book_id, actor)
            # A release of the same content (another book's old cover) may have deleted a file
            # between writing it and taking the lock: under the lock, it is there for good.
            await anyio.to_thread.run_sync(_store_all, storage, files)
            if previous == cover:
                # The same image again: nothing to change, and no new version of the book.
                return cover, previous
            await connection.execute(
                SET_COVER,
                book_id,
                cover.key,
                cover.content_type,
                cover.width,
                cover.height,
                cover.size,
                cover.thumbnail_key,
                cover.thumbnail_size,
            )
    except BaseException:
        await release_files(storage, cover.keys)
        raise
    if previous is not None:
        await release_files(storage, set(previous.keys) - set(cover.keys))
    return cover, previous


async def remove_cover(book_id: int, actor: Actor, storage: FileStorage) -> None:
    """Take the book's cover away and release its files; NotFoundError when it has none."""
    async with transaction() as connection:
        previous = await _lock_changeable_book(connection, book_id, actor)
        if previous is None:
            raise NotFoundError(f"Book {book_id} has no cover.")
        await connection.execute(SET_COVER, book_id, None, None, None, None, None, None, None)
    await release_files(storage, previous.keys)


async def release_files(storage: FileStorage, keys: Iterable[str]) -> int:
    """Delete the stored files of ``keys`` that no book names any more; how many it deleted.

    Never raises for an outage: a file it could not release stays until the sweep finds it, which
    is better than failing a request whose own work is done.
    """
    deleted = 0
    for key in sorted(set(keys)):
        try:
            async with transaction() as connection:
                await connection.execute(LOCK_KEY, key)
                if not await connection.fetchval(KEY_IS_NAMED, key):
                    await anyio.to_thread.run_sync(storage.delete, key)
                    deleted += 1
        except _RELEASE_FAILURES as error:
            _logger.warning("cover file %s not released, the sweep will retry: %s", key, error)
    return deleted


async def sweep_files(storage: FileStorage, older_than_seconds: float) -> int:
    """Delete every stored file older than ``older_than_seconds`` that no book names: files of
    uploads that failed before their row named them (a crash, a lost connection); how many. The
    age keeps the sweep off files an upload has just written and not yet named."""
    keys = await anyio.to_thread.run_sync(storage.stale_keys, older_than_seconds)
    return await release_files(storage, keys)
