"""Page tests: simkeep served by a real uvicorn on loopback, driven by Debian's Chromium through Playwright.

Each test gets a private, migrated database (committed, as a real server needs) and its own server; the
browser is launched once per session. A screenshot of the page each test ends on is kept under
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from simkeep.app import create_app
from simkeep.config import Settings
from simkeep.db.engine import make_session_factory
from simkeep.notifications.transports import read_outbox

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


def chromium_path() -> str:
    """Debian's Chromium (scripts/system-deps --test installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is not installed: run scripts/system-deps --test (Debian package chromium)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (Playwright's sync API holds an event loop in this thread
    while it runs, so it is closed before other modules' asyncio tests)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@dataclass
class LiveServer:
    """A running simkeep and what the test needs to reach it."""

    url: str
    settings: Settings
    engine: Engine
    outbox: Path

    def session(self) -> Session:
        """A session on the server's database (commit what you add)."""
        return make_session_factory(self.engine)()

    def last_code(self) -> str:
        """The code in the newest one-time-code message sent."""
        codes = [m for m in read_outbox(self.outbox) if m.template == "otp"]
        assert codes, "no one-time code was sent"
        found = re.search(r"\b(\d{6})\b", codes[-1].body)
        assert found is not None
        return found.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(fresh: tuple[Engine, Settings]) -> Iterator[LiveServer]:
    """simkeep on a free loopback port, on this test's private database."""
    engine, settings = fresh
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, engine, Path(settings.otp_outbox_dir))
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page (phone-sized); its last view is kept as a screenshot."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:120]
        try:
            tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()


@pytest.fixture
def desk_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A desktop-sized page (the console's counter screen)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:120]
        try:
            tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()


Seeder = Callable[[Session, Settings], Any]


def seed(server: LiveServer, make: Seeder) -> Any:
    """Run ``make`` on the server's database and commit; returns what it returns."""
    with server.session() as session:
        result = make(session, server.settings)
        session.commit()
        session.expunge_all()
    return result
