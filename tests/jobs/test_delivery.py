"""Queued notifications, sent by the worker through the ``notification.deliver`` job."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from simkeep.config import Settings
from simkeep.jobs import service
from simkeep.models import Job, JobState, Notification
from simkeep.notifications import tasks
from simkeep.notifications.service import notify
from simkeep.notifications.tasks import DELIVER
from simkeep.notifications.transports import OutgoingMessage, read_outbox
from tests import factories
from tests.jobs.conftest import Queue


@dataclass
class ProviderDouble:
    """A test double of a provider's gateway: gives each message an id, refuses the addresses named."""

    refuse: set[str] = field(default_factory=set)
    sent: list[OutgoingMessage] = field(default_factory=list)

    def send(self, message: OutgoingMessage) -> str:
        """Accept the message and return its id, or refuse it."""
        if message.to in self.refuse:
            raise ConnectionRefusedError(f"gateway refused {message.to}")
        self.sent.append(message)
        return f"msg-{len(self.sent)}-{message.key}"


def queue_notifications(queue: Queue, n: int) -> list[int]:
    """``n`` notifications to one holder, queued through ``notify`` and committed; returns their ids."""
    with queue.sessions() as session:
        holder = factories.holder(session, queue.settings)
        rows = [
            row
            for _ in range(n)
            for row in notify(
                session,
                queue.settings,
                subscriber=holder.subscriber,
                line=holder.line,
                template="password_changed",
            )
        ]
        session.commit()
        return [row.id for row in rows]


def add_notification(queue: Queue, *, template: str, destination: str | None) -> int:
    """A queued notification written directly (bypassing ``notify``'s checks) with its delivery job."""
    with queue.sessions() as session:
        holder = factories.holder(session, queue.settings)
        row = Notification(
            subscriber_id=holder.subscriber.id,
            channel="email",
            destination=destination,
            destination_masked="x***@example.org",
            template=template,
            language="en",
            params={"msisdn": "+86 138 **** 0001"},
            status="queued",
        )
        session.add(row)
        session.flush()
        service.enqueue(
            session, kind=DELIVER, key=f"notification:{row.id}", payload={"notification_id": row.id}
        )
        session.commit()
        return row.id


def notifications(queue: Queue) -> dict[int, Notification]:
    """Every notification as committed, by id."""
    with queue.sessions() as session:
        return {row.id: row for row in session.scalars(select(Notification))}


def delivery_job(queue: Queue, notification_id: int) -> Job:
    """The delivery job of a notification."""
    with queue.sessions() as session:
        return session.scalars(select(Job).where(Job.key == f"notification:{notification_id}")).one()


def outbox_keys(settings: Settings) -> list[str]:
    """The job keys of the messages written to the outbox."""
    return sorted(m.key or "" for m in read_outbox(Path(settings.otp_outbox_dir)))


class TestDelivery:
    """The ``notification.deliver`` job, alone or many in a batch."""

    def test_batch_sends_each_notification_once(self, queue: Queue) -> None:
        """Five queued notifications: five messages, each carrying its job's key, all recorded as sent."""
        ids = queue_notifications(queue, 5)
        assert queue.worker().run_batch() == 5
        assert outbox_keys(queue.settings) == sorted(f"notification:{i}" for i in ids)
        rows = notifications(queue)
        assert {rows[i].status for i in ids} == {"sent"}
        assert all(rows[i].sent_at is not None for i in ids)
        assert {delivery_job(queue, i).state for i in ids} == {JobState.DONE}

    def test_lone_notification_is_sent(self, queue: Queue) -> None:
        """A batch holding one delivery job sends it the same way."""
        [only] = queue_notifications(queue, 1)
        assert queue.worker().run_batch() == 1
        assert outbox_keys(queue.settings) == [f"notification:{only}"]
        assert notifications(queue)[only].status == "sent"

    def test_message_is_rendered_in_the_holders_language(self, queue: Queue) -> None:
        """The message goes to the holder's contact, in Chinese for a zh-CN holder, the number masked."""
        [only] = queue_notifications(queue, 1)
        queue.worker().run_batch()
        [message] = read_outbox(Path(queue.settings.otp_outbox_dir))
        row = notifications(queue)[only]
        assert (message.channel, message.to, message.template) == (
            "email",
            row.destination,
            "password_changed",
        )
        assert "服务密码已修改" in message.subject

    def test_sent_notification_is_not_sent_again(self, queue: Queue) -> None:
        """Another job for a notification already sent finishes without a second message."""
        [only] = queue_notifications(queue, 1)
        worker = queue.worker()
        worker.run_batch()
        again = queue.add(DELIVER, "notification-again", {"notification_id": only})
        assert worker.run_batch() == 1
        assert queue.job(again).state == JobState.DONE
        assert outbox_keys(queue.settings) == [f"notification:{only}"]

    def test_bad_message_fails_only_its_own_job(self, queue: Queue) -> None:
        """A notification whose template does not exist fails its job; the batch's others are sent."""
        good = queue_notifications(queue, 2)
        bad = add_notification(queue, template="no_such_template", destination="bad@example.org")
        assert queue.worker().run_batch() == 3
        rows = notifications(queue)
        assert {rows[i].status for i in good} == {"sent"}
        assert rows[bad].status == "queued"
        job = delivery_job(queue, bad)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert job.last_error == "KeyError: 'no_such_template'"
        assert outbox_keys(queue.settings) == sorted(f"notification:{i}" for i in good)

    def test_notification_without_address_is_marked_failed(self, queue: Queue) -> None:
        """A notification with no destination is recorded as failed; its job is done (nothing to retry)."""
        good = queue_notifications(queue, 1)
        lost = add_notification(queue, template="password_changed", destination=None)
        queue.worker().run_batch()
        row = notifications(queue)[lost]
        assert (row.status, row.error) == ("failed", "no destination")
        assert delivery_job(queue, lost).state == JobState.DONE
        assert notifications(queue)[good[0]].status == "sent"

    def test_provider_message_ids_are_recorded(self, queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each notification keeps the id its provider gave the message (delivery receipts name it)."""
        gateway = ProviderDouble()
        monkeypatch.setattr(tasks, "get_transport", lambda _settings: gateway)
        ids = queue_notifications(queue, 3)
        queue.worker().run_batch()
        rows = notifications(queue)
        given = {m.key: n for n, m in enumerate(gateway.sent, start=1)}
        assert {rows[i].provider_message_id for i in ids} == {
            f"msg-{given[f'notification:{i}']}-notification:{i}" for i in ids
        }

    def test_refused_message_fails_only_its_job(self, queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
        """A message the gateway refuses stays queued for a later try; the others are sent."""
        ids = queue_notifications(queue, 2)
        refused = add_notification(queue, template="password_changed", destination="refused@example.org")
        monkeypatch.setattr(tasks, "get_transport", lambda _settings: ProviderDouble({"refused@example.org"}))
        queue.worker().run_batch()
        rows = notifications(queue)
        assert {rows[i].status for i in ids} == {"sent"}
        assert (rows[refused].status, rows[refused].provider_message_id) == ("queued", None)
        job = delivery_job(queue, refused)
        assert job.state == JobState.QUEUED
        assert job.last_error == "ConnectionRefusedError: gateway refused refused@example.org"

    def test_dead_delivery_is_sent_after_a_retry(self, queue: Queue) -> None:
        """With the transport broken every try fails and the jobs die; retried once it works, they go out."""
        ids = queue_notifications(queue, 2)
        broken = queue.worker(settings=queue.settings.model_copy(update={"otp_transport": "broken"}))
        jobs = [delivery_job(queue, i).id for i in ids]
        for _ in range(8):
            queue.make_due(*jobs)
            broken.run_batch()
        assert {queue.job(j).state for j in jobs} == {JobState.DEAD}
        assert {notifications(queue)[i].status for i in ids} == {"queued"}
        with queue.sessions() as session:
            service.retry(session, jobs)
            session.commit()
        assert queue.worker().run_batch() == 2
        assert {notifications(queue)[i].status for i in ids} == {"sent"}
        assert outbox_keys(queue.settings) == sorted(f"notification:{i}" for i in ids)
