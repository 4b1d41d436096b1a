"""``simkeep clients``: relying parties of the CAMARA APIs (banks, apps), and what they asked us."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_session, reading_session
from simkeep.errors import DomainError
from simkeep.models import RelyingParty

if TYPE_CHECKING:
    pass

app = typer.Typer(help="Relying parties of the CAMARA APIs (OAuth2 clients).", no_args_is_help=True)


def _row(client: RelyingParty) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "scopes": client.scopes.split(),
        "active": client.active,
        "requests_per_second": client.requests_per_second,
        "daily_quota": client.daily_quota,
        "created_at": client.created_at.isoformat(),
        "secret_rotated_at": client.secret_rotated_at.isoformat(),
    }


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Who the client is, e.g. the bank's name."),
    scope: list[str] = typer.Option(  # noqa: B008 - typer's documented way to declare a repeated option
        ...,
        "--scope",
        help="A scope the client may ask for (repeat): number-recycling:check, sim-swap:check, ...",
    ),
    rps: int = typer.Option(100, "--rps", help="Requests per second allowed (shared by the API workers)."),
    daily_quota: int = typer.Option(1_000_000, "--daily-quota", help="Answered queries allowed per UTC day."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a client; its secret is printed this once and never stored."""
    from simkeep.camara import clients  # with FastAPI's error types: only for these commands

    settings = load_settings()
    with open_session(settings) as session:
        try:
            issued = clients.create_client(
                session, settings, name=name, scopes=scope, requests_per_second=rps, daily_quota=daily_quota
            )
        except DomainError as error:
            raise fail(error.message, as_json=as_json, code=error.code) from error
        session.commit()
        result = {**_row(issued.client), "client_secret": issued.secret}
    emit(
        result,
        as_json=as_json,
        text=(
            f"client_id     {result['client_id']}\nclient_secret {issued.secret}\n"
            "The secret is shown once: store it now."
        ),
    )


@app.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """Every client with its scopes, limits and state (never a secret)."""
    from simkeep.camara import clients  # with FastAPI's error types: only for these commands

    settings = load_settings()
    with open_session(settings) as session:
        rows = [_row(c) for c in clients.list_clients(session)]
    text = "\n".join(
        f"{r['client_id']}  {'active  ' if r['active'] else 'disabled'}  {r['name']}  "
        f"[{' '.join(r['scopes'])}]  {r['requests_per_second']}/s  {r['daily_quota']}/day"
        for r in rows
    )
    emit({"clients": rows}, as_json=as_json, text=text or "no clients")


@app.command("disable")
def disable(
    client_id: str = typer.Argument(..., help="The client's id."), as_json: bool = JSON_OPTION
) -> None:
    """Refuse the client's credentials and its tokens from now on."""
    from simkeep.camara import clients  # with FastAPI's error types: only for these commands

    settings = load_settings()
    with open_session(settings) as session:
        try:
            client = clients.disable_client(session, client_id=client_id)
        except DomainError as error:
            raise fail(error.message, as_json=as_json, code=error.code) from error
        session.commit()
        result = _row(client)
    emit(result, as_json=as_json, text=f"client {client_id} disabled")


@app.command("rotate-secret")
def rotate_secret(
    client_id: str = typer.Argument(..., help="The client's id."), as_json: bool = JSON_OPTION
) -> None:
    """Issue a new secret (printed once); the old secret and the tokens issued with it stop working."""
    from simkeep.camara import clients  # with FastAPI's error types: only for these commands

    settings = load_settings()
    with open_session(settings) as session:
        try:
            issued = clients.rotate_secret(session, settings, client_id=client_id)
        except DomainError as error:
            raise fail(error.message, as_json=as_json, code=error.code) from error
        session.commit()
        result = {**_row(issued.client), "client_secret": issued.secret}
    emit(
        result,
        as_json=as_json,
        text=f"client_secret {issued.secret}\nThe secret is shown once: store it now.",
    )


#: The period ``clients queries`` reads when none is given, and the longest it reads: the log has no index on
#: the number (migration 0010), so a request reads every query of its period.
DEFAULT_QUERY_PERIOD = timedelta(days=30)
MAX_QUERY_PERIOD = timedelta(days=366)


def _moment(option: str, value: str, *, as_json: bool) -> datetime:
    """``--since`` or ``--until``: a date (its midnight, UTC) or an ISO 8601 time (UTC unless it names a
    zone)."""
    try:
        stamp = datetime.fromisoformat(value.strip())
        return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone that moves the time out of years 1..9999
        raise fail(
            f"{option} {value!r}: not a date (YYYY-MM-DD) or an ISO 8601 time (2026-11-30T08:00:00+08:00)",
            as_json=as_json,
            code="INVALID_DATE",
        ) from None


def _period(
    since: str | None, until: str | None, *, now: datetime, as_json: bool
) -> tuple[datetime, datetime]:
    """``[since, until)`` from the options: until defaults to now, since to 30 days before until."""
    end = _moment("--until", until, as_json=as_json) if until is not None else now
    try:
        start = (
            _moment("--since", since, as_json=as_json) if since is not None else end - DEFAULT_QUERY_PERIOD
        )
    except OverflowError:  # 30 days before the year 1
        raise fail(f"--until {until!r}: too early", as_json=as_json, code="INVALID_DATE") from None
    if start >= end:
        raise fail(
            f"--since ({start.isoformat()}) must come before --until ({end.isoformat()})",
            as_json=as_json,
            code="INVALID_PERIOD",
        )
    if end - start > MAX_QUERY_PERIOD:
        raise fail(
            f"the period from {start.isoformat()} to {end.isoformat()} is longer than "
            f"{MAX_QUERY_PERIOD.days} days; ask for it in parts (--since and --until)",
            as_json=as_json,
            code="PERIOD_TOO_LONG",
        )
    return start, end


@app.command("queries")
def queries(
    number: Annotated[str, typer.Option("--number", help="The holder's number, in E.164 (+8613800138000).")],
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="From this date (UTC midnight) or ISO 8601 time, included. Default: --until - 30 days.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Up to this date (UTC midnight) or ISO 8601 time, excluded. Default: now."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=100_000, help="At most this many queries, oldest first.")
    ] = 1000,
    as_json: bool = JSON_OPTION,
) -> None:
    """Which clients asked about a number, when, and what they were told (a holder's privacy request).

    Reads ``[--since, --until)``, 30 days by default and at most 366: the query log has no index on the
    number, so it is read by period. Exit 1 on a bad number or period."""
    from simkeep.camara.repository import queries_about
    from simkeep.db.base import utcnow
    from simkeep.identifiers import InvalidMsisdn, normalise_msisdn
    from simkeep.masking import mask_msisdn

    try:
        msisdn = normalise_msisdn(number)
    except InvalidMsisdn as error:
        raise fail(f"--number: {error.message}", as_json=as_json, code=error.code) from error
    start, end = _period(since, until, now=utcnow(), as_json=as_json)
    settings = load_settings()
    with reading_session(settings) as session:
        found = queries_about(session, msisdn, since=start, until=end, limit=limit + 1)
    rows = [
        {
            "client_id": q.client_id,
            "client_name": q.client_name,
            "api": q.api,
            "answer": q.answer,
            "status": q.status,
            "asked_at": q.asked_at.isoformat(),
        }
        for q in found[:limit]
    ]
    period = f"from {start.isoformat()} to {end.isoformat()} (excluded)"
    emit(rows, as_json=as_json, text=_queries_table(rows, f"about {mask_msisdn(msisdn)} {period}"))
    if len(found) > limit:
        typer.echo(
            f"more queries in the period than --limit {limit}; for the rest: "
            f"--since {found[limit - 1].asked_at.isoformat()} (the queries of that time come again)",
            err=True,
        )


def _queries_table(rows: list[dict[str, Any]], about: str) -> str:
    """The queries as a table for a person (times in UTC, to the second; names cut to 30 columns)."""
    if not rows:
        return f"no queries {about}"
    cells = [
        (
            datetime.fromisoformat(r["asked_at"]).strftime("%Y-%m-%d %H:%M:%S"),
            r["client_id"],
            _cut(r["client_name"], 30),
            r["api"],
            str(r["status"]),
            r["answer"],
        )
        for r in rows
    ]
    head = ("asked at (UTC)", "client_id", "client", "api", "status", "answer")
    widths = [max(_columns(c[i]) for c in [head, *cells]) for i in range(len(head) - 1)]
    lines = [f"{len(rows)} queries {about}:", ""]
    lines += [
        "  ".join([*(_pad(c[i], w) for i, w in enumerate(widths)), c[-1]]).rstrip() for c in [head, *cells]
    ]
    return "\n".join(lines)


def _columns(text: str) -> int:
    """Terminal columns ``text`` takes (Chinese characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns."""
    return text + " " * max(width - _columns(text), 0)


def _cut(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` terminal columns, an ellipsis marking the cut."""
    if _columns(text) <= width:
        return text
    while _columns(text) > width - 1:
        text = text[:-1]
    return text + "…"
