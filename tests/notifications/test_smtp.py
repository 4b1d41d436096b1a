"""E-mail over SMTP against real aiosmtpd servers on loopback: plain, STARTTLS, implicit TLS, AUTH, errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.jobs import service as jobs
from simkeep.jobs.worker import drain
from simkeep.models import JobState, Language
from simkeep.notifications.smtp import SmtpConfig, SmtpError, SmtpTransport
from simkeep.notifications.transports import OutgoingMessage
from tests.notifications.conftest import SMTP_PASSWORD, SMTP_USER, RawServer, SmtpServer, TlsFiles
from tests.notifications.support import job_of, make_due, queue, reload

SUBJECT_ZH = "号码已挂失"
BODY_ZH = "号码 +86138****0001 已挂失，SIM 卡已停用。如非本人操作，请联系我们解除挂失。"


def message(
    key: str | None = "notification:1", *, subject: str = "Hello", body: str = "Plain text."
) -> OutgoingMessage:
    """An e-mail to a holder."""
    return OutgoingMessage(
        channel="email",
        to="zhang.wei@example.org",
        subject=subject,
        body=body,
        template="loss_reported",
        key=key,
    )


def transport(settings: Settings, server: SmtpServer, **overrides: object) -> SmtpTransport:
    """An SMTP transport aimed at ``server``."""
    return SmtpTransport(SmtpConfig.from_settings(server.settings(settings, **overrides)))


class TestSmtpTransport:
    """Handing one message to an SMTP server."""

    def test_message_arrives_with_its_headers_and_body(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """The server gets From, To, Subject, Date, Message-ID and the body, from the configured sender."""
        server = smtp_server()
        returned = transport(settings, server).send(message(body="Your SIM is suspended."))
        (got,) = server.received
        email = got.email
        assert not got.tls
        assert got.mail_from == "notify@operator.example"
        assert got.rcpt_tos == ["zhang.wei@example.org"]
        assert email["To"] == "zhang.wei@example.org"
        assert email["From"].addresses[0].addr_spec == "notify@operator.example"
        assert email["From"].addresses[0].display_name == "运营商通知"
        assert email["Subject"] == "Hello"
        assert email["Date"] is not None
        assert email["Auto-Submitted"] == "auto-generated"
        assert email["Message-ID"] == returned
        assert email.get_content().strip() == "Your SIM is suspended."

    def test_chinese_subject_and_body_arrive_intact_as_utf8(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """A Chinese subject travels as an RFC 2047 encoded word, the body as UTF-8; both decode unchanged."""
        server = smtp_server()
        transport(settings, server).send(message(subject=SUBJECT_ZH, body=BODY_ZH))
        (got,) = server.received
        raw_headers = got.raw.split(b"\r\n\r\n", 1)[0]
        assert raw_headers.isascii()
        assert b"=?utf-8?" in raw_headers.lower()
        email = got.email
        assert email["Subject"] == SUBJECT_ZH
        assert email.get_content_charset() == "utf-8"
        assert email.get_content().strip() == BODY_ZH

    def test_message_id_is_the_same_for_the_same_job_key(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """A message sent twice under one key carries one Message-ID (a receiver can drop the copy)."""
        server = smtp_server()
        smtp = transport(settings, server)
        first = smtp.send(message("notification:42"))
        again = smtp.send(message("notification:42"))
        other = smtp.send(message("notification:43"))
        assert first == again != other
        assert [r.email["Message-ID"] for r in server.received] == [first, first, other]
        assert first.startswith("<simkeep.") and first.endswith("@operator.example>")

    def test_message_without_key_gets_a_fresh_message_id(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """Messages sent directly (one-time codes) carry a Message-ID of their own each."""
        server = smtp_server()
        smtp = transport(settings, server)
        assert smtp.send(message(None)) != smtp.send(message(None))

    def test_message_id_domain_can_be_set(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """SIMKEEP_SMTP_MESSAGE_ID_DOMAIN replaces the sender's domain in Message-IDs."""
        server = smtp_server()
        returned = transport(settings, server, smtp_message_id_domain="mail.operator.example").send(message())
        assert returned.endswith("@mail.operator.example>")

    def test_starttls_and_login(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer], tls_files: TlsFiles
    ) -> None:
        """With STARTTLS and a user name the message goes over TLS after a login the server accepted."""
        server = smtp_server(tls="starttls", auth=True)
        smtp = transport(
            settings,
            server,
            smtp_username=SMTP_USER,
            smtp_password=SMTP_PASSWORD,
            smtp_ca_file=str(tls_files.cert),
        )
        smtp.send(message(subject=SUBJECT_ZH, body=BODY_ZH))
        (got,) = server.received
        assert got.tls
        assert got.login == SMTP_USER
        assert got.email["Subject"] == SUBJECT_ZH

    @pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
    def test_implicit_tls(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer], tls_files: TlsFiles
    ) -> None:
        """With implicit TLS (port 465 style) the connection is TLS from its first byte."""
        server = smtp_server(tls="implicit", auth=True)
        smtp = transport(
            settings,
            server,
            smtp_username=SMTP_USER,
            smtp_password=SMTP_PASSWORD,
            smtp_ca_file=str(tls_files.cert),
        )
        smtp.send(message())
        (got,) = server.received
        assert got.tls
        assert got.login == SMTP_USER

    def test_wrong_password_raises(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer], tls_files: TlsFiles
    ) -> None:
        """A refused login raises, naming the user but not the password, and nothing is sent."""
        server = smtp_server(tls="starttls", auth=True)
        smtp = transport(
            settings,
            server,
            smtp_username=SMTP_USER,
            smtp_password="wrong-pass",
            smtp_ca_file=str(tls_files.cert),
        )
        with pytest.raises(SmtpError, match="refused the login of 'mailer'") as raised:
            smtp.send(message())
        assert "wrong-pass" not in str(raised.value)
        assert server.received == []

    def test_server_without_starttls_is_refused_not_downgraded(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """When STARTTLS is asked for and the server does not offer it, nothing is sent in clear."""
        server = smtp_server(tls="off")
        with pytest.raises(SmtpError, match="STARTTLS"):
            transport(settings, server, smtp_tls="starttls").send(message())
        assert server.received == []

    def test_untrusted_certificate_is_refused(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """A certificate no trusted CA signed fails the TLS handshake, and nothing is sent."""
        server = smtp_server(tls="starttls")
        with pytest.raises(SmtpError, match="could not be reached: SSLCertVerificationError"):
            transport(settings, server).send(message())
        assert server.received == []

    def test_refused_recipient_raises_with_the_answer_and_a_masked_address(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """A 550 for the recipient raises with the server's answer; the address in it is masked."""
        server = smtp_server(refuse="550 5.1.1 <zhang.wei@example.org>: Recipient address rejected")
        with pytest.raises(SmtpError) as raised:
            transport(settings, server).send(message())
        text = str(raised.value)
        assert "refused the recipient: 550 5.1.1 <z***@example.org>: Recipient address rejected" in text
        assert "zhang.wei@" not in text
        assert server.received == []

    def test_temporary_refusal_raises(
        self, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """A 4xx answer (greylisting, a full queue) raises too: the job tries again later."""
        server = smtp_server(refuse="451 4.7.1 Greylisted, try again later")
        with pytest.raises(SmtpError, match=r"451 4\.7\.1 Greylisted"):
            transport(settings, server).send(message())

    def test_server_down_raises(self, settings: Settings, closed_port: int) -> None:
        """Nothing listening on the port raises."""
        config = SmtpConfig.from_settings(
            settings.model_copy(
                update={"smtp_host": "127.0.0.1", "smtp_port": closed_port, "smtp_tls": "off"}
            )
        )
        with pytest.raises(SmtpError, match=f"127.0.0.1:{closed_port} could not be reached"):
            SmtpTransport(config).send(message())

    def test_dropped_connection_raises(
        self, settings: Settings, raw_server: Callable[[str], RawServer]
    ) -> None:
        """A server that hangs up before greeting raises."""
        server = raw_server("drop")
        config = SmtpConfig.from_settings(
            settings.model_copy(
                update={"smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_tls": "off"}
            )
        )
        with pytest.raises(SmtpError, match="closed the connection"):
            SmtpTransport(config).send(message())

    def test_silent_server_times_out(
        self, settings: Settings, raw_server: Callable[[str], RawServer]
    ) -> None:
        """A server that accepts and never answers raises once the timeout has passed."""
        server = raw_server("silent")
        config = SmtpConfig.from_settings(
            settings.model_copy(
                update={
                    "smtp_host": "127.0.0.1",
                    "smtp_port": server.port,
                    "smtp_tls": "off",
                    "smtp_timeout_seconds": 0.3,
                }
            )
        )
        with pytest.raises(SmtpError, match=r"did not answer within 0\.3 s"):
            SmtpTransport(config).send(message())


class TestEmailThroughTheWorker:
    """Queued e-mail notifications, delivered by the job queue over SMTP."""

    def test_queued_email_is_sent_and_recorded(
        self, db: Session, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """The worker sends the notification in the holder's language and records it with its Message-ID."""
        server = smtp_server()
        mail_settings = server.settings(settings)
        row = queue(db, mail_settings, channel="email")
        drain(db, mail_settings)
        (got,) = server.received
        row = reload(db, row)
        assert row.status == "sent"
        assert row.sent_at is not None
        assert got.email["Message-ID"] == row.provider_message_id
        assert got.email["Subject"] == "号码已挂失"
        assert got.rcpt_tos == [row.destination]
        assert job_of(db, row).state == JobState.DONE

    def test_english_holder_gets_english_mail(
        self, db: Session, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """A holder whose language is English gets the English text."""
        server = smtp_server()
        mail_settings = server.settings(settings)
        queue(db, mail_settings, channel="email", language=Language.EN)
        drain(db, mail_settings)
        (got,) = server.received
        assert got.email["Subject"] == "Your SIM is suspended"

    def test_refusal_is_retried_then_dead_lettered_with_the_error(
        self, db: Session, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """A 550 fails each try; after the last the job is dead with the answer; nothing is marked sent."""
        server = smtp_server(refuse="550 5.7.1 Relaying denied")
        mail_settings = server.settings(settings)
        row = queue(db, mail_settings, channel="email")
        drain(db, mail_settings)
        job = job_of(db, row)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert job.run_at > job.created_at
        assert "550 5.7.1 Relaying denied" in (job.last_error or "")
        for _ in range(job.max_attempts - 1):
            make_due(db)
            drain(db, mail_settings)
        job = job_of(db, row)
        assert job.state == JobState.DEAD
        assert job.attempts == job.max_attempts
        assert job.last_error is not None
        assert job.last_error.startswith("SmtpError: 127.0.0.1:")
        assert "550 5.7.1 Relaying denied" in job.last_error
        row = reload(db, row)
        assert row.status == "queued"
        assert row.sent_at is None
        assert server.received == []

    def test_dead_email_goes_out_once_retried_after_the_server_recovers(
        self, db: Session, settings: Settings, smtp_server: Callable[..., SmtpServer]
    ) -> None:
        """Nothing is lost: a dead job retried by an admin delivers the message, once."""
        server = smtp_server(refuse="550 5.7.1 Relaying denied")
        mail_settings = server.settings(settings)
        row = queue(db, mail_settings, channel="email")
        for _ in range(8):
            drain(db, mail_settings)
            make_due(db)
        assert job_of(db, row).state == JobState.DEAD
        server.handler.refuse = None
        jobs.retry(db, [job_of(db, row).id])
        drain(db, mail_settings)
        assert len(server.received) == 1
        assert reload(db, row).status == "sent"
        assert job_of(db, row).state == JobState.DONE

    def test_server_down_leaves_the_job_queued_for_a_retry(
        self, db: Session, settings: Settings, closed_port: int
    ) -> None:
        """With the server down the job is queued again for later with the error; nothing is marked sent."""
        mail_settings = settings.model_copy(
            update={
                "email_transport": "smtp",
                "smtp_host": "127.0.0.1",
                "smtp_port": closed_port,
                "smtp_tls": "off",
            }
        )
        row = queue(db, mail_settings, channel="email")
        drain(db, mail_settings)
        job = job_of(db, row)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert f"127.0.0.1:{closed_port} could not be reached" in (job.last_error or "")
        assert reload(db, row).status == "queued"
