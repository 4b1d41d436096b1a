"""The ES2+ client against the SM-DP+ test double: every function, every refusal, the transport's failures."""

from __future__ import annotations

import itertools

import pytest

from simkeep.config import Settings
from simkeep.esim import protocol as p
from simkeep.esim.client import Es2PlusClient
from simkeep.esim.errors import EsimNotConfigured, SmdpError, SmdpProtocolError, SmdpUnavailable
from tests import factories
from tests.esim.conftest import REQUESTER, Smdp


def _client(smdp: Smdp, *, requester: str = REQUESTER, timeout_s: float = 2.0) -> Es2PlusClient:
    return Es2PlusClient(smdp.url, requester_id=requester, timeout_s=timeout_s)


_numbers = itertools.count(700_000)


def _iccid() -> str:
    return factories.make_iccid(next(_numbers))


def _released(smdp: Smdp, client: Es2PlusClient, code: str | None = "12345678") -> tuple[str, str]:
    iccid = _iccid()
    smdp.load(iccid)
    client.download_order(iccid=iccid)
    confirmed = client.confirm_order(iccid=iccid, release_flag=True, confirmation_code=code)
    return iccid, confirmed.matching_id


class TestDownloadOrder:
    """ES2+.DownloadOrder."""

    def test_reserves_the_profile(self, smdp: Smdp) -> None:
        """An available ICCID is allocated and its ICCID returned; the request carries the ES2+ headers."""
        iccid = _iccid()
        smdp.load(iccid)
        with _client(smdp) as client:
            assert client.download_order(iccid=iccid, call_id="call-1") == iccid
        assert smdp.profile(iccid)["state"] == "allocated"
        body = smdp.calls()[-1]["body"]
        assert body["header"] == {
            "functionRequesterIdentifier": REQUESTER,
            "functionCallIdentifier": "call-1",
        }
        assert body["iccid"] == iccid

    def test_by_profile_type(self, smdp: Smdp) -> None:
        """Without an ICCID, a profile of the type asked for is allocated."""
        iccid = _iccid()
        smdp.load(iccid, profile_type="gold")
        with _client(smdp) as client:
            assert client.download_order(profile_type="gold") == iccid

    def test_unknown_iccid(self, smdp: Smdp) -> None:
        """An ICCID the SM-DP+ does not hold is refused with 8.2.1 / 3.9 (Unknown)."""
        with _client(smdp) as client, pytest.raises(SmdpError) as refused:
            client.download_order(iccid=_iccid())
        assert (refused.value.status, refused.value.subject_code, refused.value.reason_code) == (
            "Failed",
            "8.2.1",
            "3.9",
        )
        assert refused.value.code == "ESIM_SMDP_REFUSED"
        assert not refused.value.retryable

    def test_profile_in_use(self, smdp: Smdp) -> None:
        """A profile already allocated is refused with 8.2.1 / 3.3 (Already in Use)."""
        iccid = _iccid()
        smdp.load(iccid)
        with _client(smdp) as client:
            client.download_order(iccid=iccid)
            with pytest.raises(SmdpError) as refused:
                client.download_order(iccid=iccid)
        assert (refused.value.subject_code, refused.value.reason_code) == ("8.2.1", "3.3")

    def test_no_profile_of_type_left(self, smdp: Smdp) -> None:
        """A profile type with nothing available left is refused with 8.2.5 / 3.7 (Unavailable)."""
        iccid = _iccid()
        smdp.load(iccid, profile_type="silver")
        with _client(smdp) as client:
            client.download_order(profile_type="silver")
            with pytest.raises(SmdpError) as refused:
                client.download_order(profile_type="silver")
        assert (refused.value.subject_code, refused.value.reason_code) == ("8.2.5", "3.7")

    def test_invalid_eid(self, smdp: Smdp) -> None:
        """An EID that is not 32 digits is refused with 8.1.1 / 2.1 (Invalid) and nothing is allocated."""
        iccid = _iccid()
        smdp.load(iccid)
        with _client(smdp) as client, pytest.raises(SmdpError) as refused:
            client.download_order(iccid=iccid, eid="1234")
        assert (refused.value.subject_code, refused.value.reason_code) == ("8.1.1", "2.1")
        assert smdp.profile(iccid)["state"] == "available"

    def test_needs_iccid_or_type(self, smdp: Smdp) -> None:
        """Asking for nothing is refused before any call is made."""
        with _client(smdp) as client, pytest.raises(SmdpProtocolError):
            client.download_order()
        assert smdp.calls() == []

    def test_unknown_requester(self, smdp: Smdp) -> None:
        """A function requester the SM-DP+ does not know is refused (1.1 / 1.1 Unknown); nothing changes."""
        iccid = _iccid()
        smdp.load(iccid)
        with _client(smdp, requester="somebody-else") as client, pytest.raises(SmdpError) as refused:
            client.download_order(iccid=iccid)
        assert (refused.value.subject_code, refused.value.reason_code) == ("1.1", "1.1")
        assert smdp.profile(iccid)["state"] == "available"


class TestConfirmOrder:
    """ES2+.ConfirmOrder."""

    def test_released_with_confirmation_code(self, smdp: Smdp) -> None:
        """Confirming with releaseFlag true releases the profile with a matching id and the SM-DP+ address."""
        iccid = _iccid()
        smdp.load(iccid)
        with _client(smdp) as client:
            client.download_order(iccid=iccid)
            confirmed = client.confirm_order(iccid=iccid, release_flag=True, confirmation_code="87654321")
        assert confirmed.matching_id
        assert confirmed.smdp_address == smdp.url.removeprefix("http://")
        seen = smdp.profile(iccid)
        assert (seen["state"], seen["matchingId"], seen["confirmationCodeRequired"]) == (
            "released",
            confirmed.matching_id,
            True,
        )
        assert smdp.calls()[-1]["body"]["releaseFlag"] is True

    def test_confirmed_without_release(self, smdp: Smdp) -> None:
        """releaseFlag false leaves the profile confirmed, not downloadable."""
        iccid = _iccid()
        smdp.load(iccid)
        with _client(smdp) as client:
            client.download_order(iccid=iccid)
            client.confirm_order(iccid=iccid, release_flag=False)
        assert smdp.profile(iccid)["state"] == "confirmed"

    def test_given_matching_id_in_use(self, smdp: Smdp) -> None:
        """A matching id another profile holds is refused with 8.2.6 / 3.3."""
        with _client(smdp) as client:
            _, matching = _released(smdp, client)
            iccid = _iccid()
            smdp.load(iccid)
            client.download_order(iccid=iccid)
            with pytest.raises(SmdpError) as refused:
                client.confirm_order(iccid=iccid, release_flag=True, matching_id=matching)
        assert (refused.value.subject_code, refused.value.reason_code) == ("8.2.6", "3.3")
        assert smdp.profile(iccid)["state"] == "allocated"

    def test_wrong_state(self, smdp: Smdp) -> None:
        """Confirming a profile that was never ordered is refused with 8.2.1 / 3.5."""
        iccid = _iccid()
        smdp.load(iccid)
        with _client(smdp) as client, pytest.raises(SmdpError) as refused:
            client.confirm_order(iccid=iccid, release_flag=True)
        assert (refused.value.subject_code, refused.value.reason_code) == ("8.2.1", "3.5")

    def test_unknown_iccid(self, smdp: Smdp) -> None:
        """An unknown ICCID is refused with 8.2.1 / 3.9."""
        with _client(smdp) as client, pytest.raises(SmdpError) as refused:
            client.confirm_order(iccid=_iccid(), release_flag=True)
        assert (refused.value.subject_code, refused.value.reason_code) == ("8.2.1", "3.9")


class TestCancelOrder:
    """ES2+.CancelOrder."""

    @pytest.mark.parametrize(("final", "state"), [("Available", "available"), ("Unavailable", "unavailable")])
    def test_cancels_a_released_profile(self, smdp: Smdp, final: str, state: str) -> None:
        """A released profile ends in the final state asked for, its matching id void."""
        with _client(smdp) as client:
            iccid, _ = _released(smdp, client)
            client.cancel_order(iccid=iccid, final_profile_status_indicator=final)
        seen = smdp.profile(iccid)
        assert (seen["state"], seen["matchingId"]) == (state, None)

    def test_bad_final_status_is_refused_before_calling(self, smdp: Smdp) -> None:
        """A final status other than Available or Unavailable is refused by the client; nothing is sent."""
        with _client(smdp) as client, pytest.raises(SmdpProtocolError):
            client.cancel_order(iccid=_iccid(), final_profile_status_indicator="Gone")
        assert smdp.calls() == []

    def test_installed_profile_cannot_be_cancelled(self, smdp: Smdp) -> None:
        """A profile already installed on a device is refused with 8.2.1 / 3.5 and stays installed."""
        with _client(smdp) as client:
            iccid, matching = _released(smdp, client)
            smdp.download(matching, "12345678", deliver=False)
            with pytest.raises(SmdpError) as refused:
                client.cancel_order(iccid=iccid, final_profile_status_indicator="Unavailable")
        assert (refused.value.subject_code, refused.value.reason_code) == ("8.2.1", "3.5")
        assert smdp.profile(iccid)["state"] == "installed"

    @pytest.mark.parametrize(("action", "state"), [("enable", "enabled"), ("delete", "deleted")])
    def test_enabled_or_deleted_profile_cannot_be_cancelled(
        self, smdp: Smdp, action: str, state: str
    ) -> None:
        """A profile the phone enabled or deleted is refused with 8.2.1 / 3.5 and keeps its state."""
        with _client(smdp) as client:
            iccid, matching = _released(smdp, client)
            smdp.download(matching, "12345678", deliver=False)
            r = smdp.control.post(f"/test-control/profiles/{iccid}/device", json={"action": action})
            assert r.status_code == 200
            with pytest.raises(SmdpError) as refused:
                client.cancel_order(iccid=iccid, final_profile_status_indicator="Available")
        assert refused.value.reason_code == "3.5"
        assert smdp.profile(iccid)["state"] == state

    def test_unknown_iccid(self, smdp: Smdp) -> None:
        """An unknown ICCID is refused with 8.2.1 / 3.9."""
        with _client(smdp) as client, pytest.raises(SmdpError) as refused:
            client.cancel_order(iccid=_iccid(), final_profile_status_indicator="Available")
        assert refused.value.reason_code == "3.9"


class TestReleaseProfile:
    """ES2+.ReleaseProfile."""

    def test_releases_a_confirmed_profile(self, smdp: Smdp) -> None:
        """A confirmed profile becomes released."""
        iccid = _iccid()
        smdp.load(iccid)
        with _client(smdp) as client:
            client.download_order(iccid=iccid)
            client.confirm_order(iccid=iccid, release_flag=False)
            client.release_profile(iccid=iccid)
        assert smdp.profile(iccid)["state"] == "released"

    def test_released_twice_is_refused(self, smdp: Smdp) -> None:
        """Releasing a profile that is not confirmed is refused with 8.2.1 / 3.5."""
        with _client(smdp) as client:
            iccid, _ = _released(smdp, client)
            with pytest.raises(SmdpError) as refused:
                client.release_profile(iccid=iccid)
        assert refused.value.reason_code == "3.5"

    def test_unknown_iccid(self, smdp: Smdp) -> None:
        """An unknown ICCID is refused with 8.2.1 / 3.9."""
        with _client(smdp) as client, pytest.raises(SmdpError) as refused:
            client.release_profile(iccid=_iccid())
        assert refused.value.reason_code == "3.9"


class TestFailures:
    """Failed and Expired answers, timeouts, server errors and answers that are not ES2+."""

    def test_expired(self, smdp: Smdp) -> None:
        """An Expired answer raises with status Expired and its codes."""
        smdp.fault(
            p.DOWNLOAD_ORDER, status="Expired", subjectCode="8.2", reasonCode="6.3", message="too late"
        )
        with _client(smdp) as client, pytest.raises(SmdpError) as refused:
            client.download_order(iccid=_iccid())
        assert (refused.value.status, refused.value.reason_code) == ("Expired", "6.3")
        assert "too late" in refused.value.message

    def test_timeout_is_retryable(self, smdp: Smdp) -> None:
        """An SM-DP+ that does not answer in time raises ESIM_SMDP_UNAVAILABLE, retryable."""
        smdp.fault(p.CONFIRM_ORDER, delay_s=1.5)
        with _client(smdp, timeout_s=0.3) as client, pytest.raises(SmdpUnavailable) as lost:
            client.confirm_order(iccid=_iccid(), release_flag=True)
        assert lost.value.retryable
        assert lost.value.code == "ESIM_SMDP_UNAVAILABLE"

    def test_server_error_is_retryable(self, smdp: Smdp) -> None:
        """An HTTP 503 raises ESIM_SMDP_UNAVAILABLE."""
        smdp.fault(p.RELEASE_PROFILE, http_status=503)
        with _client(smdp) as client, pytest.raises(SmdpUnavailable):
            client.release_profile(iccid=_iccid())

    def test_not_es2plus(self, smdp: Smdp) -> None:
        """An HTTP 404 without an ES2+ status raises ESIM_SMDP_BAD_ANSWER (not retryable)."""
        smdp.fault(p.CANCEL_ORDER, http_status=404)
        with _client(smdp) as client, pytest.raises(SmdpProtocolError) as bad:
            client.cancel_order(iccid=_iccid(), final_profile_status_indicator="Available")
        assert bad.value.code == "ESIM_SMDP_BAD_ANSWER"
        assert not bad.value.retryable

    def test_unreachable(self) -> None:
        """A refused connection raises ESIM_SMDP_UNAVAILABLE."""
        from tests.esim.conftest import free_port

        with (
            Es2PlusClient(f"http://127.0.0.1:{free_port()}", requester_id=REQUESTER, timeout_s=1) as client,
            pytest.raises(SmdpUnavailable),
        ):
            client.release_profile(iccid=_iccid())

    def test_missing_admin_protocol_header_is_refused(self, smdp: Smdp) -> None:
        """The double refuses a request without X-Admin-Protocol with HTTP 400 and an ES2+ Failed status."""
        r = smdp.control.post(
            f"{p.BASE_PATH}/{p.RELEASE_PROFILE}",
            json={"header": p.request_header(REQUESTER, "x"), "iccid": _iccid()},
        )
        assert r.status_code == 400
        assert r.json()["header"]["functionExecutionStatus"]["status"] == "Failed"


class TestConfiguration:
    """Building the client from the settings."""

    def test_no_url_is_a_clear_error(self) -> None:
        """With no SM-DP+ configured the client refuses with ESIM_NOT_CONFIGURED."""
        with pytest.raises(EsimNotConfigured) as missing:
            Es2PlusClient.from_settings(Settings(environment="test", esim_smdp_url=""))
        assert "SIMKEEP_ESIM_SMDP_URL" in missing.value.message

    def test_not_a_url(self) -> None:
        """A URL without a scheme is refused."""
        with pytest.raises(EsimNotConfigured):
            Es2PlusClient.from_settings(Settings(environment="test", esim_smdp_url="smdp.example.net"))

    def test_cert_without_key(self) -> None:
        """A client certificate without its key is refused."""
        with pytest.raises(EsimNotConfigured):
            Es2PlusClient.from_settings(
                Settings(
                    environment="test", esim_smdp_url="https://smdp.example.net", esim_client_cert="/x.pem"
                )
            )
