"""``simkeep esim``: an eSIM order's profile for operators (show, retry), and the SM-DP+ test double."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.auth.actors import CLI
from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_session
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.esim import service
from simkeep.esim.errors import EsimProfileNotFound
from simkeep.models import EsimProfile, EsimProgressEvent

app = typer.Typer(help="eSIM profiles ordered from the SM-DP+ (ES2+).", no_args_is_help=True)


@contextmanager
def _session(as_json: bool) -> Iterator[tuple[Session, Settings]]:
    settings = load_settings()
    with open_session(settings) as session:
        try:
            yield session, settings
        except DomainError as exc:
            session.rollback()
            raise fail(exc.message, as_json=as_json, code=exc.code, **exc.details) from exc


def _text(reference: str, view: dict[str, object]) -> str:
    lines = [f"{reference}: eSIM profile (ICCID …{view['iccid_last4']}) is {view['state']}"]
    if view.get("error_message"):
        lines.append(f"  error {view['error_subject']}/{view['error_reason']}: {view['error_message']}")
    for key in ("released_at", "installed_at", "cancelled_at", "last_progress_at"):
        if view.get(key):
            lines.append(f"  {key.removesuffix('_at')}: {view[key]}")
    return "\n".join(lines)


@app.command("show")
def show(
    reference: str = typer.Argument(..., help="The order's reference (RO-...)."), as_json: bool = JSON_OPTION
) -> None:
    """Show an eSIM order's profile: its state, the SM-DP+'s last error, and the progress events."""
    from simkeep.replacements.service import get_order

    with _session(as_json) as (session, _settings):
        order = get_order(session, actor=CLI, reference=reference.strip().upper())
        view = service.staff_view(session, order)
        if view is None:
            raise EsimProfileNotFound("This order has no eSIM profile.")
        events = session.scalars(
            select(EsimProgressEvent)
            .join(EsimProfile, EsimProfile.id == EsimProgressEvent.profile_id)
            .where(EsimProfile.order_id == order.id)
            .order_by(EsimProgressEvent.event_timestamp)
        ).all()
        view["events"] = [
            {"point": e.notification_point_id, "status": e.status, "at": e.event_timestamp} for e in events
        ]
        text = _text(order.reference, view) + "".join(
            f"\n  event {e.notification_point_id} {e.status} at {e.event_timestamp}" for e in events
        )
        emit(view, as_json=as_json, text=text)


@app.command("retry")
def retry(
    reference: str = typer.Argument(..., help="The order's reference (RO-...)."),
    reissue: bool = typer.Option(
        False, "--reissue", help="Give a released profile a new matching id and confirmation code."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Retry what stopped: order the profile again at the SM-DP+, cancel it again, or activate the order."""
    with _session(as_json) as (session, settings):
        profile = service.retry(
            session, settings, actor=CLI, reference=reference.strip().upper(), reissue=reissue
        )
        session.commit()
        from simkeep.replacements.service import get_order

        order = get_order(session, actor=CLI, reference=reference.strip().upper())
        view = service.staff_view(session, order)
        assert view is not None
        emit(view, as_json=as_json, text=_text(order.reference, view))
        if str(profile.state) == "error":
            raise typer.Exit(1)


@app.command("test-smdp")
def run_test_smdp(  # noqa: PLR0917 - Typer maps each option to a parameter
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8701, help="Port to listen on."),
    callback_url: str = typer.Option("http://127.0.0.1:8000", help="simkeep's base URL for the callbacks."),
    callback_token: str = typer.Option(
        "", envvar="SIMKEEP_ESIM_CALLBACK_TOKEN", help="Bearer token of the callbacks."
    ),
    requester: str = typer.Option(
        "simkeep", envvar="SIMKEEP_ESIM_REQUESTER_ID", help="The accepted functionRequesterIdentifier."
    ),
    address: str = typer.Option("", help="SM-DP+ address put in activation codes (default: host:port)."),
    auto_provision: bool = typer.Option(True, help="Treat any valid unknown ICCID as an available profile."),
) -> None:
    """Run the ES2+ TEST DOUBLE of an SM-DP+ (for tests and demos; it is not an SM-DP+)."""
    import uvicorn

    from simkeep.esim.smdp_double import create_smdp_double

    app_ = create_smdp_double(
        requesters=(requester,),
        address=address or f"{host}:{port}",
        callback_url=callback_url,
        callback_token=callback_token,
        auto_provision=auto_provision,
    )
    typer.echo(f"ES2+ TEST DOUBLE (not an SM-DP+) on http://{host}:{port}{'/gsma/rsp2/es2plus/'}")
    uvicorn.run(app_, host=host, port=port, log_level="warning")
