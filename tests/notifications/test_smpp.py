"""SMS over SMPP 3.4 against a real SMSC on loopback (node-smpp's server, see smpp_server/server.js)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.jobs.worker import drain
from simkeep.models import JobState, Language
from simkeep.notifications.receipts import Receipt
from simkeep.notifications.smpp import (
    DATA_CODING_GSM7,
    DATA_CODING_UCS2,
    ESM_CLASS_UDHI,
    SmppConfig,
    SmppError,
    SmppRefused,
    SmppTransport,
    encode_sms,
)
from simkeep.notifications.transports import OutgoingMessage
from tests.notifications.conftest import Smsc
from tests.notifications.support import job_of, make_due, queue, reload

LONG_ZH = (
    "号码 +86138****0001 已挂失，SIM 卡已停用，任何人都无法再用它接收短信验证码。"
    "您可以在线或到营业厅补卡，号码不变。如非本人操作，请联系我们解除挂失。"
    "补卡申请受理后，新卡将在三个工作日内寄出，请保持联系电话畅通，注意查收运单短信。"
    "新卡送达后，请登录后输入新卡 ICCID 的后六位以激活；激活后旧卡立即失效，号码不变。"
)


def sms(body: str, to: str = "+8613912345678", key: str | None = "notification:1") -> OutgoingMessage:
    """An SMS to a holder."""
    return OutgoingMessage(channel="sms", to=to, subject="", body=body, template="loss_reported", key=key)


def transport(settings: Settings, server: Smsc, **overrides: object) -> tuple[SmppTransport, list[Receipt]]:
    """An SMPP transport bound to ``server``, and the receipts it is handed."""
    receipts: list[Receipt] = []
    config = SmppConfig.from_settings(server.settings(settings, **overrides))
    return SmppTransport(config, on_receipt=receipts.append), receipts


def reassemble(parts: tuple[bytes, ...], data_coding: int) -> str:
    """The text of encoded SMS parts (UDH stripped)."""
    payload = b"".join(p[6:] if len(parts) > 1 else p for p in parts)
    if data_coding == DATA_CODING_UCS2:
        return payload.decode("utf-16-be")
    from simkeep.notifications.smpp import GSM7_BASIC, GSM7_EXTENSION

    extension = {code: char for char, code in GSM7_EXTENSION.items()}
    out, escaped = [], False
    for code in payload:
        if escaped:
            out.append(extension[code])
            escaped = False
        elif code == 0x1B:
            escaped = True
        else:
            out.append(GSM7_BASIC[code])
    return "".join(out)


class TestSmsEncoding:
    """Choosing the alphabet and splitting long texts into concatenated parts."""

    def test_short_ascii_text_is_one_gsm7_part(self) -> None:
        """Plain ASCII text of up to 160 characters is one GSM 7-bit SMS without a header."""
        encoded = encode_sms("Your code is 123456.", reference=7)
        assert (encoded.data_coding, encoded.esm_class) == (DATA_CODING_GSM7, 0)
        assert encoded.parts == (b"Your code is 123456.",)

    def test_gsm7_specials_are_mapped(self) -> None:
        """'@' and '$' have codes of their own in GSM 03.38, '{' and '€' an escape before them."""
        (part,) = encode_sms("@$ {€}", reference=0).parts
        assert part == b"\x00\x02 \x1b\x28\x1b\x65\x1b\x29"

    def test_160_gsm7_characters_fit_one_sms_and_161_do_not(self) -> None:
        """160 septets are one SMS; one more makes two parts of at most 153 with a UDH."""
        assert len(encode_sms("a" * 160, reference=0).parts) == 1
        encoded = encode_sms("a" * 161, reference=9)
        assert encoded.esm_class == ESM_CLASS_UDHI
        assert [p[:6] for p in encoded.parts] == [b"\x05\x00\x03\x09\x02\x01", b"\x05\x00\x03\x09\x02\x02"]
        assert [len(p) - 6 for p in encoded.parts] == [153, 8]

    def test_an_escaped_character_is_never_split(self) -> None:
        """A two-septet character that would straddle parts moves whole to the next part."""
        encoded = encode_sms("a" * 152 + "€" + "b" * 10, reference=0)
        assert encoded.parts[0].endswith(b"a")
        assert encoded.parts[1][6:8] == b"\x1b\x65"
        assert reassemble(encoded.parts, encoded.data_coding) == "a" * 152 + "€" + "b" * 10

    def test_chinese_text_is_ucs2(self) -> None:
        """Text outside the GSM alphabet is UCS-2: 70 characters in one SMS."""
        encoded = encode_sms("验" * 70, reference=0)
        assert (encoded.data_coding, encoded.esm_class) == (DATA_CODING_UCS2, 0)
        assert encoded.parts == (("验" * 70).encode("utf-16-be"),)

    def test_long_chinese_text_is_split_into_ucs2_parts_of_67(self) -> None:
        """A longer Chinese text is split into parts of 67 characters that reassemble to the text."""
        encoded = encode_sms(LONG_ZH, reference=200)
        assert encoded.data_coding == DATA_CODING_UCS2
        assert encoded.esm_class == ESM_CLASS_UDHI
        total = len(encoded.parts)
        assert total == -(-len(LONG_ZH) // 67)
        for number, part in enumerate(encoded.parts, start=1):
            assert part[:6] == bytes([5, 0, 3, 200, total, number])
            assert len(part) <= 140
        assert reassemble(encoded.parts, encoded.data_coding) == LONG_ZH

    def test_a_surrogate_pair_is_never_split(self) -> None:
        """A character outside the BMP (4 octets in UTF-16) is not cut between two parts."""
        text = "验" * 66 + "😀" + "验" * 10
        encoded = encode_sms(text, reference=0)
        assert len(encoded.parts[0]) == 6 + 132
        assert reassemble(encoded.parts, encoded.data_coding) == text

    def test_backquote_is_not_gsm7(self) -> None:
        """The one printable ASCII character GSM 03.38 lacks sends the text as UCS-2."""
        assert encode_sms("say `hi`", reference=0).data_coding == DATA_CODING_UCS2

    def test_too_many_parts_are_refused(self) -> None:
        """More than 255 parts cannot be concatenated: refused before anything is sent."""
        with pytest.raises(ValueError, match="at most 255"):
            encode_sms("验" * (67 * 255 + 1), reference=0)


class TestSmppTransport:
    """Submitting SMS to an SMSC over a bound transceiver link."""

    def test_short_ascii_message_is_one_submit_sm_with_data_coding_0(
        self, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """A short ASCII text is one submit_sm in GSM 7-bit, addressed and with a receipt requested."""
        server = smsc()
        smpp, _ = transport(settings, server)
        returned = smpp.send(sms("Code 123456 @ {simkeep}: valid 5 min."))
        (submit,) = server.wait_for("submit_sm")
        (bind,) = server.of("bind")
        assert bind["command"] == "bind_transceiver"
        assert (bind["system_id"], bind["system_type"], bind["interface_version"]) == (
            "simkeep",
            "SIMKEEP",
            0x34,
        )
        assert submit["text"] == "Code 123456 @ {simkeep}: valid 5 min."
        assert (submit["data_coding"], submit["esm_class"], submit["udh"]) == (0, 0, "")
        assert submit["registered_delivery"] == 1
        assert (submit["source_addr"], submit["source_addr_ton"], submit["source_addr_npi"]) == (
            "10658888",
            3,
            1,
        )
        assert (submit["destination_addr"], submit["dest_addr_ton"], submit["dest_addr_npi"]) == (
            "8613912345678",
            1,
            1,
        )
        assert returned == submit["message_id"]

    def test_long_chinese_message_is_several_ucs2_parts_with_a_udh(
        self, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """A long Chinese text goes as UCS-2 parts sharing a reference; the last part asks for the receipt."""
        server = smsc()
        smpp, _ = transport(settings, server)
        returned = smpp.send(sms(LONG_ZH))
        submits = server.wait_for("submit_sm", 3)
        assert len(submits) == 3
        assert {s["data_coding"] for s in submits} == {8}
        assert {s["esm_class"] & ESM_CLASS_UDHI for s in submits} == {ESM_CLASS_UDHI}
        (reference,) = {s["udh"][4:6] for s in submits}
        assert [s["udh"] for s in submits] == [f"0003{reference}03{n:02x}" for n in (1, 2, 3)]
        assert "".join(s["text"] for s in submits) == LONG_ZH
        assert [s["registered_delivery"] for s in submits] == [0, 0, 1]
        assert returned == submits[-1]["message_id"]

    def test_the_link_stays_bound_between_messages(
        self, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """Several messages share one bind."""
        server = smsc()
        smpp, _ = transport(settings, server)
        first = smpp.send(sms("one"))
        second = smpp.send(sms("two"))
        assert first != second
        assert len(server.wait_for("submit_sm", 2)) == 2
        assert len(server.of("bind")) == 1

    def test_a_closed_link_is_bound_again(self, settings: Settings, smsc: Callable[..., Smsc]) -> None:
        """When the SMSC went away between messages, the next message binds anew and goes out."""
        first = smsc()
        smpp, _ = transport(settings, first)
        smpp.send(sms("before"))
        first.stop()
        second = smsc(port=first.port)
        smpp.send(sms("after"))
        assert [s["text"] for s in second.wait_for("submit_sm")] == ["after"]
        assert len(second.of("bind")) == 1

    def test_close_unbinds(self, settings: Settings, smsc: Callable[..., Smsc]) -> None:
        """Closing the transport unbinds the link."""
        server = smsc()
        smpp, _ = transport(settings, server)
        smpp.send(sms("hello"))
        smpp.close()
        assert len(server.wait_for("unbind")) == 1

    def test_receipts_on_the_sending_link_are_handed_on(
        self, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """A receipt that arrives while the transport waits for an answer is passed on and acknowledged."""
        server = smsc(receipts="session", fail_destinations=["8613900000002"])
        smpp, receipts = transport(settings, server)
        delivered = smpp.send(sms("one", to="+8613900000001"))
        failed = smpp.send(sms("two", to="+8613900000002"))
        smpp.close()  # the receipt of the last message precedes the answer to unbind
        assert [(r.message_id, r.state, r.outcome) for r in receipts] == [
            (delivered, "DELIVRD", "delivered"),
            (failed, "UNDELIV", "failed"),
        ]
        assert [e["status"] for e in server.wait_for("deliver_sm_resp", 2)] == [0, 0]

    def test_refused_bind_raises_and_submits_nothing(
        self, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """Wrong credentials: the bind is refused with its status, and no message is submitted."""
        server = smsc()
        smpp, _ = transport(settings, server, smpp_password="wrong")
        with pytest.raises(SmppRefused, match=r"refused to bind 'simkeep': 0x0000000D Bind Failed") as raised:
            smpp.send(sms("hello"))
        assert raised.value.status == 0x0D
        assert server.of("submit_sm") == []

    def test_refused_submit_raises_with_the_status(
        self, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """An error status in submit_sm_resp raises, naming it."""
        server = smsc(submit_status=0x58)
        smpp, _ = transport(settings, server)
        with pytest.raises(SmppRefused, match=r"refused the message: 0x00000058 Throttling error") as raised:
            smpp.send(sms("hello"))
        assert raised.value.status == 0x58

    def test_dropped_link_raises(self, settings: Settings, smsc: Callable[..., Smsc]) -> None:
        """An SMSC that closes the connection instead of answering makes the send raise."""
        server = smsc(submit_action="drop")
        smpp, _ = transport(settings, server)
        with pytest.raises(SmppError, match="closed the link"):
            smpp.send(sms("hello"))

    def test_unanswered_submit_times_out(self, settings: Settings, smsc: Callable[..., Smsc]) -> None:
        """An SMSC that never answers the submit makes the send raise once the timeout has passed."""
        server = smsc(submit_action="ignore")
        smpp, _ = transport(settings, server, smpp_timeout_seconds=0.3)
        with pytest.raises(SmppError, match=r"did not answer submit_sm within 0\.3 s"):
            smpp.send(sms("hello"))

    def test_smsc_down_raises(self, settings: Settings, closed_port: int) -> None:
        """Nothing listening: the send raises."""
        config = SmppConfig.from_settings(
            settings.model_copy(update={"smpp_host": "127.0.0.1", "smpp_port": closed_port})
        )
        with pytest.raises(SmppError, match=f"SMSC 127.0.0.1:{closed_port} could not be reached"):
            SmppTransport(config, on_receipt=lambda _r: None).send(sms("hello"))


class TestSmsThroughTheWorker:
    """Queued SMS notifications, delivered by the job queue over SMPP."""

    def test_queued_sms_is_sent_and_recorded_with_its_message_id(
        self, db: Session, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """The worker submits the holder's text and records the message id the receipt will carry."""
        server = smsc()
        sms_settings = server.settings(settings)
        row = queue(db, sms_settings, channel="sms", template="password_changed", language=Language.EN)
        drain(db, sms_settings)
        (submit,) = server.wait_for("submit_sm")
        row = reload(db, row)
        assert row.status == "sent"
        assert row.provider_message_id == submit["message_id"]
        assert submit["destination_addr"] == "8613912345678"
        assert submit["text"].startswith("The service password of +86138****")
        assert submit["data_coding"] == 0

    def test_refused_bind_leaves_the_job_to_be_retried(
        self, db: Session, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """A refused bind fails the try: the job waits for its next try with the error; nothing is sent."""
        server = smsc()
        sms_settings = server.settings(settings, smpp_password="wrong")
        row = queue(db, sms_settings, channel="sms")
        drain(db, sms_settings)
        job = job_of(db, row)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert "refused to bind 'simkeep': 0x0000000D Bind Failed" in (job.last_error or "")
        assert reload(db, row).status == "queued"
        assert server.of("submit_sm") == []

    def test_refused_submit_is_retried_then_dead_lettered(
        self, db: Session, settings: Settings, smsc: Callable[..., Smsc]
    ) -> None:
        """A submit refused at every try ends in a dead job with the SMSC's status; nothing counts as sent."""
        server = smsc(submit_status=0x08)
        sms_settings = server.settings(settings)
        row = queue(db, sms_settings, channel="sms")
        drain(db, sms_settings)
        assert job_of(db, row).attempts == 1
        for _ in range(job_of(db, row).max_attempts - 1):
            make_due(db)
            drain(db, sms_settings)
        job = job_of(db, row)
        assert job.state == JobState.DEAD
        assert job.attempts == job.max_attempts
        assert "SmppRefused" in (job.last_error or "")
        assert "0x00000008 System Error" in (job.last_error or "")
        assert reload(db, row).status == "queued"
        assert len(server.wait_for("submit_sm", job.max_attempts)) == job.max_attempts
