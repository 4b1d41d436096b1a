"""``simkeep notifications``: the SMS receipt listener, and a test message through the transports."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_engine
from simkeep.masking import mask_email, mask_msisdn

app = typer.Typer(help="Notifications: SMS delivery receipts and test messages.", no_args_is_help=True)

TEST_SUBJECT = "simkeep 测试消息 / test message"
TEST_BODY = "这是一条来自 simkeep 的测试消息。This is a test message from simkeep."


@app.command("receipts")
def receipts_command(
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="Return once the SMSC sent nothing for --idle-seconds.")
    ] = False,
    idle_seconds: Annotated[
        float, typer.Option("--idle-seconds", min=0.1, help="See --exit-when-idle.")
    ] = 5.0,
    as_json: bool = JSON_OPTION,
) -> None:
    """Bind to the SMSC as receiver and record SMS delivery receipts until stopped (SIGTERM or Ctrl-C).

    Each receipt is written as a job (applied by ``simkeep worker``) and committed before the SMSC is told
    it arrived; a link that drops is bound again.
    """
    from simkeep.db.engine import make_session_factory
    from simkeep.notifications.smpp import SmppConfig, SmppError, listen

    settings = load_settings()
    if not settings.smpp_system_id:
        raise fail(
            "set SIMKEEP_SMPP_HOST, SIMKEEP_SMPP_SYSTEM_ID and SIMKEEP_SMPP_PASSWORD",
            as_json=as_json,
            code="SMPP_NOT_CONFIGURED",
        )
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    with open_engine(settings) as engine:
        try:
            report = listen(
                SmppConfig.from_settings(settings),
                make_session_factory(engine),
                exit_when_idle=exit_when_idle,
                idle_seconds=idle_seconds,
                should_stop=lambda: stopping,
            )
        except SmppError as exc:
            raise fail(str(exc), as_json=as_json, code="SMPP_FAILED") from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    emit(
        {"receipts": report.receipts, "links": report.links},
        as_json=as_json,
        text=f"receipt listener stopped: {report.receipts} receipt(s) recorded",
    )


@app.command("send-test")
def send_test_command(
    channel: Annotated[str, typer.Option("--channel", help="email or sms.")],
    to: Annotated[str, typer.Option("--to", help="An e-mail address, or a phone number in E.164 (+86...).")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a test message through the transport configured for CHANNEL, to check its settings."""
    from simkeep.notifications.transports import (
        OutgoingMessage,
        TransportError,
        close_transports,
        get_transport,
        transport_kind,
    )

    if channel not in ("email", "sms"):
        raise fail("--channel is email or sms", as_json=as_json, code="USAGE", exit_code=2)
    settings = load_settings()
    transports = get_transport(settings)
    kind = transport_kind(settings, channel)
    shown = mask_email(to) if channel == "email" else mask_msisdn(to)
    message = OutgoingMessage(channel=channel, to=to, subject=TEST_SUBJECT, body=TEST_BODY, template="test")
    try:
        provider_id = transports.send(message)
    except (TransportError, ValueError) as exc:
        raise fail(str(exc), as_json=as_json, code="SEND_FAILED") from None
    finally:
        close_transports()
    emit(
        {"channel": channel, "to": shown, "transport": kind, "provider_message_id": provider_id},
        as_json=as_json,
        text=f"test {channel} handed to the {kind} transport for {shown}"
        + (f" (id {provider_id})" if provider_id else ""),
    )
