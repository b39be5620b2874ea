"""Fixtures of the covers API tests: an app whose cover files live in this test's own temporary
directory (so every file on disk is one this test made), and what a test needs to count them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio

from tests.helpers import Account, ApiClient

__all__ = ["Covers", "cover_path"]


def cover_path(book_id: int) -> str:
    return f"/api/v1/books/{book_id}/cover"


@dataclass
class Covers:
    """A client of an app storing its covers under ``directory``, and what that directory holds."""

    api: ApiClient
    directory: Path

    async def upload(
        self,
        book_id: int,
        data: bytes,
        account: Account | None,
        *,
        content_type: str = "image/png",
        raw: bool = False,
        field: str = "file",
        filename: str = "cover.png",
    ) -> httpx.Response:
        """PUT ``data`` as the book's cover: as the ``field`` part of a multipart body (named
        ``filename``, declared ``content_type``), or with ``raw`` as the whole body."""
        headers = account.headers if account is not None else {}
        if raw:
            return await self.api.put(
                cover_path(book_id), content=data, headers={**headers, "Content-Type": content_type}
            )
        files = {field: (filename, data, content_type)}
        return await self.api.put(cover_path(book_id), files=files, headers=headers)

    def files(self) -> set[str]:
        """The names of every file under the directory (stored covers and any temporary file)."""
        if not self.directory.exists():
            return set()
        return {path.name for path in self.directory.rglob("*") if path.is_file()}


@pytest_asyncio.fixture
async def make_covers(
    make_client: Callable[..., Awaitable[ApiClient]], tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Covers]]]:
    """Build apps with their own covers directory and settings (e.g. a small ``cover_max_bytes``)."""
    numbers = itertools.count(1)

    async def build(**overrides: Any) -> Covers:
        directory = tmp_path / f"covers-{next(numbers)}"
        api = await make_client(covers_dir=directory, **overrides)
        return Covers(api, directory)

    yield build


@pytest_asyncio.fixture
async def covers(make_covers: Callable[..., Awaitable[Covers]]) -> Covers:
    return await make_covers()
