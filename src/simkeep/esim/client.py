"""An ES2+ client (SGP.22 v2.5): the operator's calls to an SM-DP+.

Each function is a JSON POST under ``/gsma/rsp2/es2plus/`` with the ``X-Admin-Protocol`` header and a request
``header`` naming us (``functionRequesterIdentifier``) and the call (``functionCallIdentifier``). The SM-DP+
answers HTTP 200 with ``header.functionExecutionStatus``: Executed-Success and Executed-WithWarning return
the function's data; Failed and Expired raise :class:`~simkeep.esim.errors.SmdpError` with SGP.22's subject
and reason codes. A timeout, a refused connection or an HTTP 5xx raise
:class:`~simkeep.esim.errors.SmdpUnavailable` (``retryable``); anything else that is not ES2+ raises
:class:`~simkeep.esim.errors.SmdpProtocolError`.
"""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from simkeep.config import Settings
from simkeep.esim import protocol as p
from simkeep.esim.errors import EsimNotConfigured, SmdpError, SmdpProtocolError, SmdpUnavailable
from simkeep.logging import get_logger

log = get_logger("simkeep.esim")


@dataclass(frozen=True)
class ConfirmedOrder:
    """What confirmOrder returns: the matching id and, when the SM-DP+ gives one, its address."""

    matching_id: str
    smdp_address: str | None


class Es2PlusClient:
    """Calls the four ES2+ functions of one SM-DP+. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        *,
        requester_id: str,
        timeout_s: float = 10.0,
        verify: bool | str = True,
        client_cert: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.strip():
            raise EsimNotConfigured("No SM-DP+ is configured: set SIMKEEP_ESIM_SMDP_URL.")
        if not base_url.startswith(("https://", "http://")):
            raise EsimNotConfigured(f"SIMKEEP_ESIM_SMDP_URL must be an https:// URL, not {base_url!r}.")
        self.requester_id = requester_id
        tls: bool | ssl.SSLContext = (
            verify if isinstance(verify, bool) else ssl.create_default_context(cafile=verify)
        )
        if client_cert is not None:
            context = tls if isinstance(tls, ssl.SSLContext) else ssl.create_default_context()
            if tls is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            context.load_cert_chain(certfile=client_cert[0], keyfile=client_cert[1])
            tls = context
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            verify=tls,
            transport=transport,
            headers={p.ADMIN_PROTOCOL_HEADER: p.ADMIN_PROTOCOL, "Content-Type": p.CONTENT_TYPE},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Es2PlusClient:
        """The client for the configured SM-DP+ (refused with ESIM_NOT_CONFIGURED when there is none)."""
        verify: bool | str = settings.esim_ca_file or settings.esim_tls_verify
        cert = (settings.esim_client_cert, settings.esim_client_key) if settings.esim_client_cert else None
        if cert is not None and not settings.esim_client_key:
            raise EsimNotConfigured("SIMKEEP_ESIM_CLIENT_CERT needs SIMKEEP_ESIM_CLIENT_KEY.")
        return cls(
            settings.esim_smdp_url,
            requester_id=settings.esim_requester_id,
            timeout_s=settings.esim_timeout_s,
            verify=verify,
            client_cert=cert,
        )

    def __enter__(self) -> Es2PlusClient:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # The four functions -------------------------------------------------------------------------------

    def download_order(
        self,
        *,
        iccid: str | None = None,
        eid: str | None = None,
        profile_type: str | None = None,
        call_id: str | None = None,
    ) -> str:
        """ES2+.DownloadOrder: reserve a profile (the ICCID given, or one of ``profile_type``).

        Returns the reserved profile's ICCID.
        """
        if not iccid and not profile_type:
            raise SmdpProtocolError(
                "downloadOrder needs an ICCID or a profile type.", code="ESIM_REQUEST_INVALID"
            )
        body = _without_none({"eid": eid, "iccid": iccid, "profileType": profile_type})
        data = self._call(p.DOWNLOAD_ORDER, body, call_id)
        found = data.get("iccid")
        if not isinstance(found, str) or not found:
            raise SmdpProtocolError("downloadOrder succeeded without an ICCID in its answer.")
        return found

    def confirm_order(
        self,
        *,
        iccid: str,
        release_flag: bool,
        confirmation_code: str | None = None,
        eid: str | None = None,
        matching_id: str | None = None,
        smdp_address: str | None = None,
        call_id: str | None = None,
    ) -> ConfirmedOrder:
        """ES2+.ConfirmOrder: confirm the reserved profile (with a confirmation code, and released when
        ``release_flag``); returns the matching id of the activation code."""
        body = _without_none(
            {
                "iccid": iccid,
                "eid": eid,
                "matchingId": matching_id,
                "confirmationCode": confirmation_code,
                "smdsAddress": smdp_address,
                "releaseFlag": release_flag,
            }
        )
        data = self._call(p.CONFIRM_ORDER, body, call_id)
        found = data.get("matchingId")
        if not isinstance(found, str) or not found:
            raise SmdpProtocolError("confirmOrder succeeded without a matchingId in its answer.")
        address = data.get("smdpAddress")
        return ConfirmedOrder(found, address if isinstance(address, str) and address else None)

    def cancel_order(
        self,
        *,
        iccid: str,
        final_profile_status_indicator: str,
        eid: str | None = None,
        matching_id: str | None = None,
        call_id: str | None = None,
    ) -> None:
        """ES2+.CancelOrder: undo a download order; the profile ends ``Available`` or ``Unavailable``."""
        if final_profile_status_indicator not in p.FINAL_PROFILE_STATUSES:
            raise SmdpProtocolError(
                "finalProfileStatusIndicator is Available or Unavailable.", code="ESIM_REQUEST_INVALID"
            )
        body = _without_none(
            {
                "iccid": iccid,
                "eid": eid,
                "matchingId": matching_id,
                "finalProfileStatusIndicator": final_profile_status_indicator,
            }
        )
        self._call(p.CANCEL_ORDER, body, call_id)

    def release_profile(self, *, iccid: str, call_id: str | None = None) -> None:
        """ES2+.ReleaseProfile: let a confirmed (not yet released) profile be downloaded."""
        self._call(p.RELEASE_PROFILE, {"iccid": iccid}, call_id)

    # The exchange -------------------------------------------------------------------------------------

    def _call(self, function: str, body: dict[str, Any], call_id: str | None) -> dict[str, Any]:
        call_id = call_id or uuid.uuid4().hex
        payload = {"header": p.request_header(self.requester_id, call_id), **body}
        try:
            reply = self._http.post(f"{p.BASE_PATH}/{function}", json=payload)
        except httpx.TimeoutException as exc:
            raise SmdpUnavailable(f"The SM-DP+ did not answer {function} in time.") from exc
        except httpx.TransportError as exc:
            raise SmdpUnavailable(
                f"The SM-DP+ could not be reached for {function}: {type(exc).__name__}."
            ) from exc
        if reply.status_code >= 500:
            raise SmdpUnavailable(f"The SM-DP+ failed {function} on its side (HTTP {reply.status_code}).")
        try:
            data = reply.json()
        except ValueError:
            data = None
        status_obj = _execution_status(data)
        if status_obj is None:
            raise SmdpProtocolError(
                f"The SM-DP+ answered {function} with HTTP {reply.status_code} "
                "and no ES2+ function execution status."
            )
        status = status_obj.get("status")
        if status in (p.SUCCESS, p.WARNING) and reply.status_code == 200:
            if status == p.WARNING:
                log.warning(
                    "esim.smdp_warning", function=function, status_code_data=status_obj.get("statusCodeData")
                )
            assert isinstance(data, dict)
            return {k: v for k, v in data.items() if k != "header"}
        if status in (p.FAILED, p.EXPIRED):
            codes = status_obj.get("statusCodeData") or {}
            if not isinstance(codes, dict):
                codes = {}
            subject, reason = str(codes.get("subjectCode", "")), str(codes.get("reasonCode", ""))
            text = str(codes.get("message") or "")
            raise SmdpError(
                f"The SM-DP+ answered {function} with {status} ({subject}/{reason})"
                + (f": {text}" if text else "."),
                status=str(status),
                subject_code=subject,
                reason_code=reason,
                subject_identifier=codes.get("subjectIdentifier"),
            )
        raise SmdpProtocolError(
            f"The SM-DP+ answered {function} with HTTP {reply.status_code} and status {status!r}."
        )


def _execution_status(data: object) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        return None
    header = data.get("header")
    if not isinstance(header, dict):
        return None
    status = header.get("functionExecutionStatus")
    if not isinstance(status, dict) or status.get("status") not in p.STATUSES:
        return None
    return status


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}
