"""file_response: the bytes fallback in process (httpx's ASGITransport offers no path send), and
path send under a live Granian, with HEAD answered through HeadAsGet.

The same small app serves both: a route serving files of a directory through file_response,
HeadAsGet around it as in ``create_app``, and outermost a recorder of the ASGI message types each
file request sends, which shows who sent the body (Python's bytes, or the server by path).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from bookstore.core.errors import create_problem_details_plugin
from bookstore.core.files import file_response
from bookstore.core.http import HeadAsGet
from bookstore.testing import LOOPBACK, HttpServer, clean_environment, free_port
from tests.helpers import assert_problem

FILES = "/test-only/files"
SENT_MESSAGES = "/test-only/sent-messages"
FILES_DIRECTORY_VARIABLE = "TEST_FILES_DIRECTORY"
REPOSITORY = Path(__file__).resolve().parents[2]
HEADERS = {"etag": '"3f5a"', "cache-control": "public, no-cache", "x-content-type-options": "nosniff"}
START, BODY, PATH_SEND = "http.response.start", "http.response.body", "http.response.pathsend"


@get(f"{FILES}/{{name:str}}")
async def serve_file(request: Request[Any, Any, Any], name: FromPath[str], size: FromQuery[int]) -> ASGIResponse:
    """The file ``name`` of the app's directory, of ``size`` bytes (as a database row would say)."""
    path = request.app.state.files_directory / name
    return await file_response(request, path, size=size, media_type="image/png", headers=HEADERS)


@get(SENT_MESSAGES, sync_to_thread=False)
def pop_sent_messages(request: Request[Any, Any, Any]) -> list[str]:
    """The message types the file requests have sent since the last call."""
    sent: list[str] = request.app.state.sent_messages
    popped = list(sent)
    sent.clear()
    return popped


class MessageTypeRecorder:
    """ASGI wrapper recording the type of every message the app sends for a file request."""

    def __init__(self, app: ASGIApp, sent: list[str]) -> None:
        self.app = app
        self.sent = sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not scope.get("path", "").startswith(FILES):
            await self.app(scope, receive, send)
            return

        async def recording_send(message: Message) -> None:
            self.sent.append(message["type"])
            await send(message)

        await self.app(scope, receive, recording_send)


def create_file_app(directory: Path) -> Litestar:
    sent_messages: list[str] = []
    app = Litestar(
        route_handlers=[serve_file, pop_sent_messages],
        plugins=[create_problem_details_plugin()],
        state=State({"files_directory": directory, "sent_messages": sent_messages}),
    )
    app.asgi_handler = HeadAsGet(app.asgi_handler)
    app.asgi_handler = MessageTypeRecorder(app.asgi_handler, sent_messages)
    return app


def create_file_app_from_environment() -> Litestar:
    """Granian's ``--factory`` target: the app serving the directory the test names."""
    return create_file_app(Path(os.environ[FILES_DIRECTORY_VARIABLE]))


@pytest.fixture(scope="module")
def files_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("files")
    # Far more than one read of Granian's (128 KiB) or one body message.
    (directory / "cover.png").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    return directory


# --- in process: no path send ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def file_app(files_directory: Path) -> Litestar:
    return create_file_app(files_directory)


@pytest_asyncio.fixture
async def http(file_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    file_app.state.sent_messages.clear()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=file_app), base_url="http://testserver") as client:
        yield client


def sent_messages(app: Litestar) -> list[str]:
    sent: list[str] = app.state.sent_messages
    popped = list(sent)
    sent.clear()
    return popped


async def test_without_path_send_the_file_is_sent_as_bytes(http: httpx.AsyncClient, file_app: Litestar) -> None:
    data = (file_app.state.files_directory / "cover.png").read_bytes()
    response = await http.get(f"{FILES}/cover.png", params={"size": len(data)})
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "image/png"
    assert {name: response.headers[name] for name in HEADERS} == HEADERS
    assert sent_messages(file_app) == [START, BODY]


async def test_without_path_send_head_answers_the_headers_only(http: httpx.AsyncClient, file_app: Litestar) -> None:
    size = (file_app.state.files_directory / "cover.png").stat().st_size
    response = await http.head(f"{FILES}/cover.png", params={"size": size})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(size)
    assert response.headers["etag"] == HEADERS["etag"]


async def test_without_path_send_a_vanished_file_is_a_404_problem(http: httpx.AsyncClient, file_app: Litestar) -> None:
    response = await http.get(f"{FILES}/vanished.png", params={"size": 100})
    assert "removed" in assert_problem(response, 404)["detail"]
    assert "etag" not in response.headers


# --- live Granian: path send ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def granian(files_directory: Path) -> Iterator[HttpServer]:
    port = free_port()
    argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", LOOPBACK, "--port", str(port)]
    target = f"{__name__}:{create_file_app_from_environment.__name__}"
    with HttpServer(
        "granian",
        [*argv, "--workers", "1", "--no-ws", "--factory", target],
        port=port,
        env={**clean_environment(), FILES_DIRECTORY_VARIABLE: str(files_directory)},
        log=files_directory.parent / f"granian-{port}.log",
        ready_path=SENT_MESSAGES,
        ready_timeout=30,
        cwd=REPOSITORY,
        stop_timeout=10,
    ) as server:
        yield server


@pytest.fixture
def live(granian: HttpServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=granian.base_url, timeout=10) as client:
        client.get(SENT_MESSAGES)  # start from no recorded messages
        yield client


def live_sent_messages(client: httpx.Client) -> list[str]:
    response = client.get(SENT_MESSAGES)
    assert response.status_code == 200
    sent: list[str] = response.json()
    return sent


def test_granian_sends_the_file_by_path(live: httpx.Client, files_directory: Path) -> None:
    data = (files_directory / "cover.png").read_bytes()
    response = live.get(f"{FILES}/cover.png", params={"size": len(data)})
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "image/png"
    assert {name: response.headers[name] for name in HEADERS} == HEADERS
    # The body never went through Python: the app sent only the file's path.
    assert live_sent_messages(live) == [START, PATH_SEND]


def test_granian_answers_head_through_head_as_get_with_the_headers_only(
    live: httpx.Client, files_directory: Path
) -> None:
    data = (files_directory / "cover.png").read_bytes()
    head = live.head(f"{FILES}/cover.png", params={"size": len(data)})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["etag"] == HEADERS["etag"]
    # The same connection carries the next response intact: no stray body bytes after the HEAD.
    get_after = live.get(f"{FILES}/cover.png", params={"size": len(data)})
    assert get_after.status_code == 200
    assert get_after.content == data
    assert live_sent_messages(live) == [START, PATH_SEND, START, PATH_SEND]


def test_granian_answers_its_own_404_for_a_vanished_file(live: httpx.Client) -> None:
    response = live.get(f"{FILES}/vanished.png", params={"size": 100})
    assert response.status_code == 404
    # The app handed over the path; the answer is Granian's, without the app's headers.
    assert live_sent_messages(live) == [START, PATH_SEND]
    assert "etag" not in response.headers
