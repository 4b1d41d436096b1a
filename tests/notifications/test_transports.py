"""Choosing a transport per channel: SIMKEEP_EMAIL_TRANSPORT, SIMKEEP_SMS_TRANSPORT and their default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from simkeep.config import Settings
from simkeep.notifications.smpp import SmppTransport
from simkeep.notifications.smtp import SmtpTransport
from simkeep.notifications.transports import (
    ConsoleTransport,
    FileTransport,
    NullTransport,
    OutgoingMessage,
    get_transport,
    read_outbox,
)
from tests.notifications.conftest import Smsc, SmtpServer

EMAIL = OutgoingMessage(
    channel="email", to="li.na@example.org", subject="主题", body="正文", template="t", key="k:1"
)
SMS = OutgoingMessage(channel="sms", to="+8613912345678", subject="", body="hello", template="t", key="k:2")


class TestTransportSelection:
    """Which transport each channel's messages take."""

    def test_both_channels_default_to_the_otp_transport(self, settings: Settings, outbox: Path) -> None:
        """Unset, e-mail and SMS use SIMKEEP_OTP_TRANSPORT (here the file outbox)."""
        transports = get_transport(settings)
        assert transports.send(EMAIL) is None
        assert transports.send(SMS) is None
        assert read_outbox(outbox) == [EMAIL, SMS]

    def test_each_channel_takes_its_own_transport(
        self, settings: Settings, outbox: Path, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """E-mail over SMTP while SMS stays with the file outbox."""
        server = smtp_server()
        transports = get_transport(server.settings(settings))
        assert isinstance(transports.transport("email"), SmtpTransport)
        assert isinstance(transports.transport("sms"), FileTransport)
        message_id = transports.send(EMAIL)
        transports.send(SMS)
        assert [r.email["Message-ID"] for r in server.received] == [message_id]
        assert read_outbox(outbox) == [SMS]

    def test_sms_over_smpp_with_email_on_the_console(
        self, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """SMS over SMPP returns the SMSC's message id; e-mail goes to the log."""
        server = smsc()
        transports = get_transport(server.settings(settings, email_transport="console"))
        assert isinstance(transports.transport("email"), ConsoleTransport)
        assert isinstance(transports.transport("sms"), SmppTransport)
        assert transports.send(EMAIL) is None
        message_id = transports.send(SMS)
        assert server.wait_for("submit_sm")[0]["message_id"] == message_id

    def test_null_transport_counts(self, settings: Settings) -> None:
        """The null transport delivers nowhere and counts."""
        transports = get_transport(settings.model_copy(update={"email_transport": "null"}))
        null = transports.transport("email")
        assert isinstance(null, NullTransport)
        before = null.sent
        transports.send(EMAIL)
        assert null.sent == before + 1

    def test_a_transport_is_built_once_per_configuration(self, settings: Settings, tmp_path: Path) -> None:
        """The same settings give the same transport (an SMPP link is kept); other settings another one."""
        first = get_transport(settings).transport("sms")
        assert get_transport(settings).transport("sms") is first
        other = settings.model_copy(update={"otp_outbox_dir": str(tmp_path / "elsewhere")})
        assert get_transport(other).transport("sms") is not first

    def test_unknown_channel_is_refused(self, settings: Settings) -> None:
        """A message on a channel simkeep does not know raises."""
        fax = OutgoingMessage(channel="fax", to="x", subject="", body="", template="t")
        with pytest.raises(ValueError, match="no transport for channel 'fax'"):
            get_transport(settings).send(fax)

    def test_a_transport_of_the_other_channel_is_refused(self, settings: Settings) -> None:
        """SMS cannot take SMTP (say through SIMKEEP_OTP_TRANSPORT): the error lists what it can take."""
        wrong = settings.model_copy(update={"otp_transport": "smtp"})
        with pytest.raises(ValueError, match=r"unknown sms transport 'smtp' \(console, file, smpp or null\)"):
            get_transport(wrong).send(SMS)

    def test_settings_refuse_a_transport_a_channel_cannot_take(self) -> None:
        """SIMKEEP_EMAIL_TRANSPORT=smpp is refused when the settings are read."""
        with pytest.raises(ValidationError, match="email_transport"):
            Settings(email_transport="smpp")  # type: ignore[arg-type]

    def test_settings_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The channel and server settings are read from SIMKEEP_* variables; passwords stay out of reprs."""
        monkeypatch.setenv("SIMKEEP_EMAIL_TRANSPORT", "smtp")
        monkeypatch.setenv("SIMKEEP_SMS_TRANSPORT", "smpp")
        monkeypatch.setenv("SIMKEEP_SMTP_TLS", "implicit")
        monkeypatch.setenv("SIMKEEP_SMTP_PASSWORD", "mail-secret")
        monkeypatch.setenv("SIMKEEP_SMPP_PASSWORD", "smpp-pw")
        loaded = Settings()
        assert (loaded.email_transport, loaded.sms_transport, loaded.smtp_tls) == ("smtp", "smpp", "implicit")
        assert "mail-secret" not in repr(loaded)
        assert "smpp-pw" not in repr(loaded)
