"""SMS delivery receipts: read from the SMSC, written as jobs, recorded on the notification."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.jobs.worker import Worker, drain
from simkeep.models import Job, JobState, Notification
from simkeep.notifications.receipts import (
    RECEIPT,
    RECEIPT_ATTEMPTS,
    Receipt,
    apply_receipt,
    enqueue_receipt,
    parse_receipt_text,
)
from simkeep.notifications.smpp import SmppConfig, listen, receipt_of
from simkeep.notifications.transports import close_transports
from tests.notifications.conftest import Smsc
from tests.notifications.support import make_due, queue, reload

TEXT = (
    "id:7F3A0001 sub:001 dlvrd:001 submit date:2611301200 done date:2611301201 stat:DELIVRD err:000 text:Your"
)
FAILING = "+8613900000002"


def sent_sms(db: Session, settings: Settings, message_id: str = "smsc-1") -> Notification:
    """An SMS notification the SMSC accepted as ``message_id``."""
    row = queue(db, settings, channel="sms")
    row.status, row.sent_at, row.provider_message_id = "sent", utcnow(), message_id
    db.flush()
    return row


def receipt(message_id: str = "smsc-1", state: str = "DELIVRD", error: str | None = "000") -> Receipt:
    """A receipt received a minute ago."""
    return Receipt(
        message_id=message_id, state=state, error=error, received_at=utcnow() - timedelta(minutes=1)
    )


def receipt_jobs(db: Session) -> list[Job]:
    """The receipt jobs, oldest first."""
    db.expire_all()
    return list(db.scalars(select(Job).where(Job.kind == RECEIPT).order_by(Job.id)))


class TestReceiptReading:
    """Reading a deliver_sm that carries a receipt."""

    def test_receipt_text_fields(self) -> None:
        """The fields of the SMPP 3.4 appendix B text are read, 'submit date' and 'done date' included."""
        fields = parse_receipt_text(TEXT)
        assert fields == {
            "id": "7F3A0001",
            "sub": "001",
            "dlvrd": "001",
            "submit date": "2611301200",
            "done date": "2611301201",
            "stat": "DELIVRD",
            "err": "000",
        }

    def test_the_message_text_is_not_read_as_fields(self) -> None:
        """What follows 'Text:' (the start of the message, in any case) is never taken for a field."""
        fields = parse_receipt_text("id:1 stat:DELIVRD err:000 Text:stat:UNDELIV id:2")
        assert (fields["id"], fields["stat"]) == ("1", "DELIVRD")

    def test_tlvs_are_preferred_to_the_text(self) -> None:
        """receipted_message_id and message_state win over the text (where some SMSCs write ids otherwise)."""
        pdu = SimpleNamespace(
            esm_class=0x04, short_message=TEXT.encode(), receipted_message_id=b"abc", message_state=5
        )
        found = receipt_of(pdu)
        assert found is not None
        assert (found.message_id, found.state, found.outcome, found.error) == (
            "abc",
            "UNDELIV",
            "failed",
            "000",
        )

    def test_text_alone_is_enough(self) -> None:
        """Without the TLVs the id and state come from the text."""
        pdu = SimpleNamespace(
            esm_class=0x04, short_message=TEXT.encode(), receipted_message_id=None, message_state=None
        )
        found = receipt_of(pdu)
        assert found is not None
        assert (found.message_id, found.state, found.outcome) == ("7F3A0001", "DELIVRD", "delivered")

    def test_a_message_from_a_handset_is_no_receipt(self) -> None:
        """A mobile-originated deliver_sm (esm_class without the receipt type) is not read as a receipt."""
        pdu = SimpleNamespace(
            esm_class=0x00, short_message=TEXT.encode(), receipted_message_id=None, message_state=None
        )
        assert receipt_of(pdu) is None

    def test_intermediate_states_have_no_outcome(self) -> None:
        """ENROUTE, ACCEPTD and UNKNOWN are not final."""
        assert [receipt(state=s).outcome for s in ("ENROUTE", "ACCEPTD", "UNKNOWN")] == [None, None, None]


class TestReceiptJob:
    """Applying a receipt job to the notification it names."""

    def test_delivered_receipt_marks_the_notification_delivered(
        self, db: Session, settings: Settings
    ) -> None:
        """DELIVRD: status delivered, delivered_at when the receipt came, no error."""
        row = sent_sms(db, settings)
        given = receipt()
        enqueue_receipt(db, given)
        drain(db, settings)
        row = reload(db, row)
        assert (row.status, row.delivered_at, row.error) == ("delivered", given.received_at, None)
        assert [j.state for j in receipt_jobs(db)] == [JobState.DONE]

    def test_failure_receipt_marks_the_notification_failed(self, db: Session, settings: Settings) -> None:
        """UNDELIV: status failed, with the SMSC's state and error code; no delivered_at."""
        row = sent_sms(db, settings)
        enqueue_receipt(db, receipt(state="UNDELIV", error="012"))
        drain(db, settings)
        row = reload(db, row)
        assert (row.status, row.delivered_at, row.error) == ("failed", None, "SMSC receipt: UNDELIV err:012")

    def test_intermediate_receipt_changes_nothing(self, db: Session, settings: Settings) -> None:
        """ENROUTE leaves the notification sent."""
        row = sent_sms(db, settings)
        enqueue_receipt(db, receipt(state="ENROUTE"))
        drain(db, settings)
        assert reload(db, row).status == "sent"

    def test_first_final_receipt_wins(self, db: Session, settings: Settings) -> None:
        """A failure reported after a delivery does not undo it."""
        row = sent_sms(db, settings)
        assert apply_receipt(db, receipt()) == "recorded"
        assert apply_receipt(db, receipt(state="UNDELIV")) == "ignored"
        assert reload(db, row).status == "delivered"

    def test_the_same_receipt_twice_is_one_job(self, db: Session, settings: Settings) -> None:
        """An SMSC that repeats a receipt adds no second job."""
        assert enqueue_receipt(db, receipt()) is True
        assert enqueue_receipt(db, receipt()) is False
        assert len(receipt_jobs(db)) == 1

    def test_email_with_the_same_id_is_not_touched(self, db: Session, settings: Settings) -> None:
        """Only SMS notifications are matched."""
        row = queue(db, settings, channel="email")
        row.status, row.provider_message_id = "sent", "smsc-1"
        db.flush()
        assert apply_receipt(db, receipt()) == "unmatched"
        assert reload(db, row).status == "sent"

    def test_unmatched_receipt_is_retried_and_applies_once_its_message_is_known(
        self, db: Session, settings: Settings
    ) -> None:
        """A receipt ahead of its message's commit waits: its job is tried again and then applies."""
        enqueue_receipt(db, receipt("smsc-late"))
        drain(db, settings)
        (job,) = receipt_jobs(db)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert "ReceiptNotMatched" in (job.last_error or "")
        row = sent_sms(db, settings, "smsc-late")
        make_due(db)
        drain(db, settings)
        assert reload(db, row).status == "delivered"
        assert [j.state for j in receipt_jobs(db)] == [JobState.DONE]

    def test_receipt_that_never_matches_is_dropped_after_its_last_try(
        self, db: Session, settings: Settings
    ) -> None:
        """A receipt for a message simkeep did not send ends done (with a warning), not dead."""
        enqueue_receipt(db, receipt("someone-else"))
        for _ in range(RECEIPT_ATTEMPTS):
            drain(db, settings)
            make_due(db)
        (job,) = receipt_jobs(db)
        assert (job.state, job.attempts) == (JobState.DONE, RECEIPT_ATTEMPTS)


def _commit_queued(sessions: Callable[[], Session], settings: Settings, phones: list[str]) -> list[int]:
    with sessions() as session:
        rows = [queue(session, settings, channel="sms", phone=phone) for phone in phones]
        session.commit()
        return [row.id for row in rows]


def _rows(sessions: Callable[[], Session], ids: list[int]) -> list[Notification]:
    with sessions() as session:
        return [session.get_one(Notification, i) for i in ids]


def _work(settings: Settings, sessions: Callable[[], Session]) -> None:
    factory = sessions
    assert isinstance(factory, sessionmaker)
    Worker(settings, factory).run(exit_when_idle=True)


class TestReceiptsEndToEnd:
    """Receipts from a real SMSC, through the job queue, onto committed notifications."""

    def test_receipts_on_the_sending_link_reach_the_notifications(
        self,
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
        smsc: Callable[..., Smsc],
    ) -> None:
        """Receipts the SMSC sends on the worker's own link are recorded: delivered, and failed."""
        server = smsc(receipts="session", fail_destinations=[FAILING.removeprefix("+")])
        settings = server.settings(fresh[1])
        ids = _commit_queued(fresh_session_factory, settings, ["+8613900000001", FAILING])
        _work(settings, fresh_session_factory)
        close_transports()  # unbinds (reading the receipts still on the way) and writes what is in hand
        _work(settings, fresh_session_factory)
        delivered, failed = _rows(fresh_session_factory, ids)
        assert delivered.status == "delivered"
        assert delivered.delivered_at is not None
        assert (failed.status, failed.error) == ("failed", "SMSC receipt: UNDELIV err:001")
        assert {e["status"] for e in server.of("deliver_sm_resp")} == {0}

    def test_listener_records_receipts_sent_to_a_receiver(
        self,
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
        smsc: Callable[..., Smsc],
    ) -> None:
        """The listener binds as receiver, writes each receipt as a job, and the worker records it."""
        server = smsc(receipts="receiver", fail_destinations=[FAILING.removeprefix("+")])
        settings = server.settings(fresh[1])
        ids = _commit_queued(fresh_session_factory, settings, ["+8613900000001", FAILING])
        _work(settings, fresh_session_factory)
        assert [r.status for r in _rows(fresh_session_factory, ids)] == ["sent", "sent"]
        report = listen(
            SmppConfig.from_settings(settings), fresh_session_factory, exit_when_idle=True, idle_seconds=0.5
        )
        assert (report.receipts, report.links) == (2, 1)
        assert [b["command"] for b in server.of("bind")][-1] == "bind_receiver"
        _work(settings, fresh_session_factory)
        delivered, failed = _rows(fresh_session_factory, ids)
        assert (delivered.status, failed.status) == ("delivered", "failed")

    def test_listener_that_cannot_store_a_receipt_has_it_offered_again(
        self,
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
        smsc: Callable[..., Smsc],
    ) -> None:
        """A receipt is acknowledged only once stored: when the database fails the SMSC keeps it for later."""
        server = smsc(receipts="receiver")
        settings = server.settings(fresh[1])
        (notification_id,) = _commit_queued(fresh_session_factory, settings, ["+8613900000001"])
        _work(settings, fresh_session_factory)

        def broken() -> Session:
            raise OperationalError("BEGIN", {}, Exception("database is unavailable"))

        config = SmppConfig.from_settings(settings)
        report = listen(config, broken, exit_when_idle=True, idle_seconds=0.5)
        assert report.receipts == 0
        assert [e["status"] for e in server.wait_for("deliver_sm_resp")] == [0x64]
        report = listen(config, fresh_session_factory, exit_when_idle=True, idle_seconds=0.5)
        assert report.receipts == 1
        _work(settings, fresh_session_factory)
        (row,) = _rows(fresh_session_factory, [notification_id])
        assert row.status == "delivered"
