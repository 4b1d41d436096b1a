"""What each API worker keeps in memory for the CAMARA routes: a short-lived cache of clients, their rate
buckets and daily counts, and the buffer of queries that a background thread writes to the query log.

Rates hold across workers without a database round trip on the request path: each worker writes a
heartbeat to ``camara_workers`` about once a second (in the writer thread) and gives each client a bucket of
``requests_per_second / live workers``. Load spread evenly over the workers (the kernel's accept balancing
with many connections) gets the client's rate in total; a client on a single keep-alive connection, which
stays on one worker, gets that worker's share (erring on the side of refusing). Daily counts start from,
and are refreshed from, what the query log holds for today (UTC), so the quota holds across workers to
within a few seconds; a refresh reads only the last ``STABLE_LAG`` of rows and carries the rest over.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import structlog
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from simkeep.camara import repository
from simkeep.camara.auth import AccessToken, verify_token
from simkeep.camara.errors import CamaraError
from simkeep.camara.facts import FactsCache
from simkeep.camara.operations import Operation, operations_for
from simkeep.camara.reader import SwapReader
from simkeep.camara.repository import SwapFacts
from simkeep.config import Settings

SessionScope = Callable[[], AbstractContextManager[Session]]
#: Queries asked longer ago than this are taken as written to the query log (the writers flush every 0.1 s);
#: a client's daily count carries them over between reloads instead of counting the whole day again.
STABLE_LAG = timedelta(seconds=30)
#: The writer thread calls its ``on_tick`` (the heartbeat) at most this often, however often it flushes.
TICK_SECONDS = 1.0
#: Verified tokens a worker remembers (a bank re-uses its token for its lifetime); cleared when full.
TOKEN_CACHE_MAX = 10_000
log = structlog.get_logger("simkeep.camara")


_day: tuple[float, datetime] = (0.0, datetime.min.replace(tzinfo=UTC))


def _today_start() -> datetime:
    """Midnight UTC of today (worked out once a day: every admitted request asks)."""
    global _day  # noqa: PLW0603 - a one-day cache of this process
    now = time.time()
    if now >= _day[0]:
        start = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        _day = ((start + timedelta(days=1)).timestamp(), start)
    return _day[1]


@dataclass
class ClientState:
    """One client as this worker knows it."""

    pk: int
    active: bool
    rotated_at_ms: int
    rate: int
    daily_quota: int
    loaded_at: float
    tokens: float
    refilled_at: float
    day: datetime
    used_today: int
    #: Answered queries of the day in the query log up to ``stable_until`` (counted once, then extended).
    stable_count: int = 0
    stable_until: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: A request is reading a newer copy of this client (the others go on with this one meanwhile).
    refreshing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class QueryRecord(NamedTuple):
    """One query to record."""

    client_pk: int
    api: str
    msisdn: str | None
    answer: str
    status: int
    #: When it was asked: microseconds since the epoch, UTC (``time.time_ns() // 1000``; cheaper than a
    #: datetime on the hot path).
    asked_us: int


class QueryRecorder:
    """Buffers queries in memory; :meth:`flush` writes them in one statement (the background thread calls it
    every ``camara_query_flush_seconds``, and once more at shutdown)."""

    def __init__(
        self,
        scope: SessionScope,
        *,
        interval: float,
        max_buffer: int,
        on_tick: Callable[[], object] | None = None,
        tick_every: float = TICK_SECONDS,
    ) -> None:
        self._scope = scope
        self._interval = interval
        self._on_tick = on_tick
        self._tick_every = tick_every
        self._buffer: deque[QueryRecord] = deque(maxlen=max_buffer)
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, item: QueryRecord) -> None:
        """Queue one query (thread-safe, no I/O)."""
        if len(self._buffer) == self._buffer.maxlen:
            log.warning("camara.query_buffer_full", dropped=1)
        self._buffer.append(item)

    def pending(self) -> int:
        """Queries not yet written."""
        return len(self._buffer)

    def flush(self) -> int:
        """Write what is buffered; returns how many rows were written. On failure they are kept for later."""
        with self._flush_lock:
            batch: list[QueryRecord] = []
            while self._buffer:
                batch.append(self._buffer.popleft())
            if not batch:
                return 0
            rows: Sequence[repository.QueryRow] = batch  # a QueryRecord is a QueryRow
            try:
                with self._scope() as session:
                    repository.insert_queries(session, rows)
                    session.commit()
            except Exception:
                log.exception("camara.query_flush_failed", rows=len(rows))
                self._buffer.extendleft(reversed(batch))
                return 0
            return len(rows)

    def start(self) -> None:
        """Start the background writer."""
        self._thread = threading.Thread(target=self._run, name="camara-query-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ticked = float("-inf")
        while not self._stop.wait(self._interval):
            self.flush()
            if self._on_tick is not None and time.monotonic() - ticked >= self._tick_every:
                ticked = time.monotonic()
                try:
                    self._on_tick()
                except Exception:
                    log.exception("camara.heartbeat_failed")

    def stop(self) -> None:
        """Stop the writer and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


class CamaraRuntime:
    """The per-worker state of the CAMARA routes."""

    def __init__(
        self,
        settings: Settings,
        scope: SessionScope,
        *,
        heartbeat: bool = True,
        read_scope: SessionScope | None = None,
    ) -> None:
        self.settings = settings
        self.scope = scope
        #: Sessions for the reads of clients (:func:`simkeep.camara.reader.client_read_scope` on SQLite).
        self.read_scope = read_scope or scope
        self.recorder = QueryRecorder(
            scope,
            interval=settings.camara_query_flush_seconds,
            max_buffer=settings.camara_query_buffer_max,
            on_tick=self.heartbeat if heartbeat else None,
        )
        self._clients: dict[str, ClientState] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._lock = threading.Lock()
        #: Client refreshes running in the background (held so that they are not collected mid-way).
        self._refreshes: set[asyncio.Task[None]] = set()
        self.worker_id = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"
        #: API workers alive (this one included) as last counted; each client's rate is shared among them.
        self.workers = 1
        #: The query operations by path (simkeep.camara.operations), built once for this configuration.
        self.operations: dict[str, Operation] = operations_for(settings)
        #: The SIM Swap hot path's own read connections (set by the app's lifespan when it owns the database).
        self.reader: SwapReader | None = None
        #: This worker's copy of every line's SIM Swap facts (set by the lifespan when it owns the database).
        self.facts: FactsCache | None = None

    def inline_lookup(self) -> Callable[[str], SwapFacts | None] | None:
        """A way to read a number's SIM Swap facts at once, on the event loop: the worker's copy of the facts
        when it is loaded and fresh, else the SQLite reader; None when only a wait would do (PostgreSQL
        before the copy is ready)."""
        facts = self.facts
        if facts is not None and facts.ready:
            return facts.get
        reader = self.reader
        if reader is not None and reader.inline:
            return reader.swap_facts
        return None

    def heartbeat(self, *, now: datetime | None = None) -> int:
        """Tell the other workers this one is alive and count the live ones (seen within three ticks)."""
        now = now or datetime.now(UTC)
        live_after = now - timedelta(seconds=max(3.0, 3 * self.settings.camara_query_flush_seconds))
        with self.scope() as session:
            count = repository.heartbeat(session, worker_id=self.worker_id, now=now, live_after=live_after)
            session.commit()
        self.workers = max(1, count)
        return self.workers

    def verify(self, token: str) -> AccessToken:
        """The claims of a bearer token: checked once (signature, claims), then taken from this worker's
        cache until the token expires; UNAUTHENTICATED otherwise. Whether its client is still active and the
        token not issued before a secret rotation is checked at every call (:meth:`client_for`)."""
        claims = self._tokens.get(token)
        if claims is None:
            claims = verify_token(self.settings, token)
            if len(self._tokens) >= TOKEN_CACHE_MAX:
                self._tokens.clear()
            self._tokens[token] = claims
        if time.time() >= claims.expires_at:
            self._tokens.pop(token, None)
            raise CamaraError(
                "UNAUTHENTICATED", "The access token has expired. A new authentication is required."
            )
        return claims

    def session(self) -> AbstractContextManager[Session]:
        """A database session for a query."""
        return self.scope()

    def forget_clients(self) -> None:
        """Drop the cache (tests, or an operator's change that must apply at once)."""
        with self._lock:
            self._clients.clear()

    def _load(self, client_id: str, previous: ClientState | None) -> ClientState | None:
        with self.read_scope() as session:
            row = repository.client_by_client_id(session, client_id)
            if row is None:
                return None
            day = _today_start()
            # The day's count in two parts, so that a reload every few seconds reads only a few seconds of
            # rows however busy the day: the settled part (up to STABLE_LAG ago) carried over from the last
            # load and extended by what settled since, and the recent part counted afresh.
            cut = max(day, datetime.now(UTC) - STABLE_LAG)
            if previous is not None and previous.day == day and previous.stable_until <= cut:
                stable = previous.stable_count + repository.answered_since(
                    session, row.id, previous.stable_until, until=cut
                )
            else:
                stable = repository.answered_since(session, row.id, day, until=cut)
            used = stable + repository.answered_since(session, row.id, cut)
        now = time.monotonic()
        return ClientState(
            pk=row.id,
            active=row.active,
            rotated_at_ms=int(row.secret_rotated_at.timestamp() * 1000),
            rate=row.requests_per_second,
            daily_quota=row.daily_quota,
            loaded_at=now,
            tokens=float(row.requests_per_second),
            refilled_at=now,
            day=day,
            used_today=used,
            stable_count=stable,
            stable_until=cut,
        )

    @staticmethod
    def _carry_over(previous: ClientState, fresh: ClientState) -> None:
        """What this worker counted on its old copy (the bucket, today's answers) goes on in the new one."""
        with previous.lock:
            fresh.tokens = min(previous.tokens, float(fresh.rate))
            fresh.refilled_at = previous.refilled_at
            if previous.day == fresh.day:
                fresh.used_today = max(fresh.used_today, previous.used_today)

    def needs_load(self, token: AccessToken) -> bool:
        """Whether the caller should read the client with :meth:`load_client` (off the event loop): when this
        worker has no copy of it, or when its copy is older than the cache time and no other request is
        refreshing it already. Only one request at a time refreshes a client; the others go on with the copy
        they have meanwhile, so a busy client's refresh is one read, not one per request in flight."""
        state = self._clients.get(token.client_id)
        if state is None:
            return True
        if time.monotonic() - state.loaded_at < self.settings.camara_client_cache_seconds:
            return False
        with self._lock:
            if state.refreshing:
                return False
            state.refreshing = True
        return True

    def is_cached(self, token: AccessToken) -> bool:
        """Whether :meth:`cached_client` may answer now (no read due): this worker has a copy of the token's
        client that is fresh, or that another request is refreshing already. Changes nothing."""
        state = self._clients.get(token.client_id)
        if state is None:
            return False
        fresh = time.monotonic() - state.loaded_at < self.settings.camara_client_cache_seconds
        return fresh or state.refreshing

    def has_copy(self, token: AccessToken) -> bool:
        """Whether this worker holds a copy of the token's client (fresh or not)."""
        return token.client_id in self._clients

    def refresh_in_background(self, token: AccessToken) -> None:
        """Read the token's client again in the thread pool without anyone waiting for it (call from the
        event loop, after :meth:`needs_load` said so); the copy in use meanwhile stays until the new one is
        in. A client disabled or rotated in the meantime is refused once the refresh lands."""

        async def refresh() -> None:
            try:
                await run_in_threadpool(self.load_client, token)
            except CamaraError:
                pass  # the client is gone, disabled or rotated: the copy now says so
            except Exception:
                log.exception("camara.client_refresh_failed", client_id=token.client_id)
                state = self._clients.get(token.client_id)
                if state is not None:  # the next check tries again in a second, not at once
                    state.loaded_at = time.monotonic() - self.settings.camara_client_cache_seconds + 1.0

        task = asyncio.get_running_loop().create_task(refresh())
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    def load_client(self, token: AccessToken) -> ClientState:
        """Read the token's client into this worker's cache; then as :meth:`cached_client`."""
        previous = self._clients.get(token.client_id)
        try:
            fresh = self._load(token.client_id, previous)
        finally:
            if previous is not None:
                previous.refreshing = False
        with self._lock:
            if fresh is None:
                self._clients.pop(token.client_id, None)
            else:
                if previous is not None:
                    self._carry_over(previous, fresh)
                self._clients[token.client_id] = fresh
        return self._valid(fresh, token)

    def cached_client(self, token: AccessToken) -> ClientState:
        """The token's client from this worker's copy (see :meth:`_valid`)."""
        return self._valid(self._clients.get(token.client_id), token)

    @staticmethod
    def _valid(state: ClientState | None, token: AccessToken) -> ClientState:
        """The client, if it exists, is active and the token was issued after its last secret rotation."""
        if state is None or not state.active or token.issued_at_ms < state.rotated_at_ms:
            raise CamaraError("UNAUTHENTICATED")
        return state

    def client_for(self, token: AccessToken) -> ClientState:
        """The token's client, read again when this worker's copy is due (blocking: not on the event loop)."""
        if self.needs_load(token):
            return self.load_client(token)
        return self.cached_client(token)

    def admit(self, state: ClientState) -> None:
        """Take one request from the client's token bucket (this worker's share of the client's rate) and
        daily quota, or refuse with 429."""
        rate = state.rate / self.workers
        with state.lock:
            now = time.monotonic()
            state.tokens = min(max(rate, 1.0), state.tokens + (now - state.refilled_at) * rate)
            state.refilled_at = now
            day = _today_start()
            if day != state.day:
                state.day, state.used_today = day, 0
            if state.used_today >= state.daily_quota:
                raise CamaraError("QUOTA_EXCEEDED")
            if state.tokens < 1.0:
                raise CamaraError("TOO_MANY_REQUESTS")
            state.tokens -= 1.0
            state.used_today += 1

    def record(self, state: ClientState, *, api: str, msisdn: str | None, answer: str, status: int) -> None:
        """Buffer one query for the query log."""
        self.recorder.record(QueryRecord(state.pk, api, msisdn, answer, status, time.time_ns() // 1000))


def lifespan_runtime(settings: Settings, scope: SessionScope) -> Iterator[CamaraRuntime]:
    """Build the runtime, run its writer for the life of the app, and write what is left at the end."""
    runtime = CamaraRuntime(settings, scope)
    runtime.recorder.start()
    try:
        yield runtime
    finally:
        runtime.recorder.stop()
