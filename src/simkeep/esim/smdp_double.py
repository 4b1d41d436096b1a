"""A TEST DOUBLE of an SM-DP+: the four ES2+ functions of SGP.22 v2.5 and the callbacks, for tests and demos.

No SM-DP+ ships on a package registry, so simkeep's tests, benchmark and demo talk to this small ASGI app
instead. It is NOT an SM-DP+: it holds profiles in memory, prepares no profile package, and its "device" is
a test-control endpoint. What it does implement exactly is ES2+ as an operator sees it: the
``X-Admin-Protocol`` header, the request ``header``, ``header.functionExecutionStatus`` in every answer,
the profile states (available, allocated, confirmed, released, downloaded, installed, enabled, deleted and
unavailable) and SGP.22's subject and reason codes for unknown ICCIDs, wrong states, missing elements and
unknown requesters; and it calls the operator's ``handleDownloadProgressInfo`` as a device downloads.

Test control (not ES2+, for tests only), under ``/test-control/``:

- ``POST profiles {"iccids": [...], "profileType": "..."}``: load available profiles.
- ``GET profiles/{iccid}``: a profile's state as the double sees it.
- ``POST faults {"function", "status", "subjectCode", "reasonCode", "message", "delay_s", "http_status",
  "times"}``: make the next calls of a function fail (Failed or Expired), hang (``delay_s``) or answer an
  HTTP error.
- ``POST download {"matchingId", "confirmationCode", "eid", "failAt", "duplicate", "reverse", "deliver"}``:
  a device downloads and installs the profile; each notification point is sent to the operator (or only
  returned, with ``deliver`` false).
- ``POST profiles/{iccid}/device {"action": "enable" | "delete"}``: the phone enables or deletes it.
- ``GET calls``: every ES2+ call received. ``POST reset``.

Run it with ``simkeep esim test-smdp --host 127.0.0.1 --port 8701`` (see docs/esim.md).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from simkeep.esim import protocol as p
from simkeep.identifiers import luhn_valid

_MATCHING_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
#: States from which cancelOrder may run (SGP.22: allocated, linked, confirmed, released).
_CANCELLABLE = frozenset({"allocated", "confirmed", "released"})


@dataclass
class DoubleProfile:
    """One profile as the double holds it."""

    iccid: str
    profile_type: str = "simkeep-test"
    state: str = "available"
    eid: str | None = None
    matching_id: str | None = None
    confirmation_code_sha256: str | None = None
    failed_confirmations: int = 0


@dataclass
class Fault:
    """A failure to answer the next ``times`` calls of a function with."""

    status: str = p.FAILED
    subject_code: str = p.SUBJECT_FUNCTION_PROVIDER
    reason_code: str = p.REASON_EXECUTION_ERROR
    message: str = "injected failure"
    delay_s: float = 0.0
    http_status: int = 200
    times: int = 1


@dataclass
class DoubleState:
    """Everything the double remembers (in memory, behind one lock)."""

    requesters: frozenset[str]
    address: str
    callback_url: str
    callback_token: str
    auto_provision: bool
    profiles: dict[str, DoubleProfile] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Refused(Exception):
    """Ends an ES2+ call with a Failed answer."""

    def __init__(
        self,
        subject: str,
        reason: str,
        message: str,
        *,
        identifier: str | None = None,
        http_status: int = 200,
    ) -> None:
        super().__init__(message)
        self.body = p.failed(subject, reason, message, identifier=identifier)
        self.http_status = http_status


class SmdpDouble:
    """The ES2+ functions of the double, on its in-memory state (each runs under the state's lock)."""

    def __init__(self, state: DoubleState) -> None:
        self.state = state

    def profile(self, iccid: object) -> DoubleProfile:
        """The profile of ``iccid``, or the SGP.22 refusal for a missing or unknown ICCID."""
        if not iccid or not isinstance(iccid, str):
            raise _Refused(p.SUBJECT_FUNCTION, p.REASON_MISSING, "iccid is missing")
        found = self.state.profiles.get(iccid)
        new = found is None and self.state.auto_provision and len(iccid) in (19, 20)
        if new and iccid.isdigit() and luhn_valid(iccid):
            found = self.state.profiles[iccid] = DoubleProfile(iccid)
        if found is None:
            raise _Refused(p.SUBJECT_ICCID, p.REASON_UNKNOWN, "unknown ICCID", identifier=iccid)
        return found

    @staticmethod
    def require_state(profile: DoubleProfile, function: str, *states: str) -> None:
        """Refuse ``function`` on a profile in any other state."""
        if profile.state not in states:
            raise _Refused(
                p.SUBJECT_ICCID,
                p.REASON_INVALID_TRANSITION,
                f"{function} is not possible for a profile in state {profile.state}",
                identifier=profile.iccid,
            )

    def download_order(self, body: dict[str, Any], _netloc: str) -> dict[str, Any]:
        """ES2+.DownloadOrder."""
        eid, iccid, profile_type = body.get("eid"), body.get("iccid"), body.get("profileType")
        if eid is not None and not (isinstance(eid, str) and eid.isdigit() and len(eid) == 32):
            raise _Refused(p.SUBJECT_EID, p.REASON_INVALID, "an EID is 32 digits")
        if iccid:
            profile = self.profile(iccid)
            if profile_type and profile.profile_type != profile_type:
                raise _Refused(
                    p.SUBJECT_PROFILE_TYPE, p.REASON_UNKNOWN, "the ICCID is of another profile type"
                )
            if profile.state != "available":
                raise _Refused(
                    p.SUBJECT_ICCID, p.REASON_IN_USE, "the profile is not available", identifier=profile.iccid
                )
        elif profile_type:
            typed = [x for x in self.state.profiles.values() if x.profile_type == profile_type]
            if not typed:
                raise _Refused(p.SUBJECT_PROFILE_TYPE, p.REASON_UNKNOWN, "unknown profile type")
            free = [x for x in typed if x.state == "available"]
            if not free:
                raise _Refused(
                    p.SUBJECT_PROFILE_TYPE, p.REASON_UNAVAILABLE, "no profile of this type is left"
                )
            profile = free[0]
        else:
            raise _Refused(p.SUBJECT_FUNCTION, p.REASON_CONDITIONAL_MISSING, "give an iccid or a profileType")
        profile.state, profile.eid = "allocated", eid
        return {"iccid": profile.iccid}

    def confirm_order(self, body: dict[str, Any], netloc: str) -> dict[str, Any]:
        """ES2+.ConfirmOrder."""
        release = body.get("releaseFlag")
        if not isinstance(release, bool):
            raise _Refused(p.SUBJECT_FUNCTION, p.REASON_MISSING, "releaseFlag (true or false) is missing")
        code, matching, eid = body.get("confirmationCode"), body.get("matchingId"), body.get("eid")
        if code is not None and not (isinstance(code, str) and code):
            raise _Refused(p.SUBJECT_CONFIRMATION_CODE, p.REASON_INVALID, "empty confirmation code")
        profile = self.profile(body.get("iccid"))
        self.require_state(profile, p.CONFIRM_ORDER, "allocated")
        if eid is not None and profile.eid is not None and eid != profile.eid:
            raise _Refused(p.SUBJECT_EID, p.REASON_INVALID_ASSOCIATION, "the EID differs from the order's")
        if matching and any(x.matching_id == matching for x in self.state.profiles.values()):
            raise _Refused(p.SUBJECT_MATCHING_ID, p.REASON_IN_USE, "matchingId already in use")
        profile.matching_id = matching or "-".join(
            "".join(secrets.choice(_MATCHING_ALPHABET) for _ in range(5)) for _ in range(4)
        )
        profile.confirmation_code_sha256 = hashlib.sha256(code.encode()).hexdigest() if code else None
        profile.eid = profile.eid or eid
        profile.state = "released" if release else "confirmed"
        out: dict[str, Any] = {"matchingId": profile.matching_id, "smdpAddress": self.state.address or netloc}
        if profile.eid:
            out["eid"] = profile.eid
        return out

    def cancel_order(self, body: dict[str, Any], _netloc: str) -> dict[str, Any]:
        """ES2+.CancelOrder."""
        final = body.get("finalProfileStatusIndicator")
        if final is None:
            raise _Refused(p.SUBJECT_FUNCTION, p.REASON_MISSING, "finalProfileStatusIndicator is missing")
        if final not in p.FINAL_PROFILE_STATUSES:
            raise _Refused(
                p.SUBJECT_FUNCTION,
                p.REASON_INVALID,
                "finalProfileStatusIndicator is Available or Unavailable",
            )
        profile = self.profile(body.get("iccid"))
        self.require_state(profile, p.CANCEL_ORDER, *_CANCELLABLE)
        if body.get("matchingId") and body["matchingId"] != profile.matching_id:
            raise _Refused(
                p.SUBJECT_MATCHING_ID, p.REASON_INVALID_ASSOCIATION, "matchingId is another profile's"
            )
        profile.state = "available" if final == "Available" else "unavailable"
        profile.matching_id = profile.confirmation_code_sha256 = profile.eid = None
        return {}

    def release_profile(self, body: dict[str, Any], _netloc: str) -> dict[str, Any]:
        """ES2+.ReleaseProfile."""
        profile = self.profile(body.get("iccid"))
        self.require_state(profile, p.RELEASE_PROFILE, "confirmed")
        profile.state = "released"
        return {}

    def check_call(self, headers: Any, body: object, function: str) -> tuple[dict[str, Any], Fault | None]:
        """The request body after the checks every function shares, and the fault to answer with, if any."""
        if headers.get(p.ADMIN_PROTOCOL_HEADER) != p.ADMIN_PROTOCOL:
            raise _Refused(
                p.SUBJECT_FUNCTION,
                p.REASON_INVALID,
                f"{p.ADMIN_PROTOCOL_HEADER} must be {p.ADMIN_PROTOCOL}",
                http_status=400,
            )
        if not isinstance(body, dict) or not isinstance(body.get("header"), dict):
            raise _Refused(p.SUBJECT_FUNCTION, p.REASON_MISSING, "header is missing", http_status=400)
        header = body["header"]
        if not isinstance(header.get("functionCallIdentifier"), str) or not header["functionCallIdentifier"]:
            raise _Refused(p.SUBJECT_FUNCTION, p.REASON_MISSING, "functionCallIdentifier is missing")
        if header.get("functionRequesterIdentifier") not in self.state.requesters:
            raise _Refused(
                p.SUBJECT_FUNCTION_REQUESTER, p.REASON_UNKNOWN_CALLER, "unknown function requester"
            )
        self.state.calls.append({"function": function, "body": body})
        queue = self.state.faults.get(function) or []
        fault = queue[0] if queue else None
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
        return body, fault


def create_smdp_double(
    *,
    requesters: tuple[str, ...] = ("simkeep",),
    address: str = "",
    callback_url: str = "",
    callback_token: str = "",
    auto_provision: bool = False,
    max_confirmation_attempts: int = 3,
) -> FastAPI:
    """The test double as an ASGI app.

    ``address`` is the SM-DP+ address put in activation codes (default: the host the request came to);
    ``callback_url`` the operator's base URL for handleDownloadProgressInfo, called with ``callback_token``
    as a bearer token; with ``auto_provision`` any valid ICCID not yet known counts as an available profile.
    """
    app = FastAPI(title="ES2+ test double of an SM-DP+ (not an SM-DP+)", docs_url=None, redoc_url=None)
    state = DoubleState(
        requesters=frozenset(requesters),
        address=address,
        callback_url=callback_url.rstrip("/"),
        callback_token=callback_token,
        auto_provision=auto_provision,
    )
    double = SmdpDouble(state)
    app.state.double = state
    functions = {
        p.DOWNLOAD_ORDER: double.download_order,
        p.CONFIRM_ORDER: double.confirm_order,
        p.CANCEL_ORDER: double.cancel_order,
        p.RELEASE_PROFILE: double.release_profile,
    }

    def es2(body: dict[str, Any], status_code: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status_code, media_type=p.CONTENT_TYPE)

    @app.post(p.BASE_PATH + "/{function}")
    async def es2plus(function: str, request: Request) -> JSONResponse:
        """The four ES2+ functions."""
        handler = functions.get(function)
        if handler is None:
            return JSONResponse({"error": f"no ES2+ function {function}"}, status_code=404)
        try:
            raw: object = await request.json()
        except ValueError:
            raw = None
        try:
            with state.lock:
                body, fault = double.check_call(request.headers, raw, function)
        except _Refused as refused:
            return es2(refused.body, refused.http_status)
        if fault is not None:
            if fault.delay_s:
                await anyio.sleep(fault.delay_s)
            if fault.http_status != 200:
                return JSONResponse({"error": "injected"}, status_code=fault.http_status)
            return es2(p.failed(fault.subject_code, fault.reason_code, fault.message, status=fault.status))
        try:
            with state.lock:
                return es2(p.response(**handler(body, request.url.netloc)))
        except _Refused as refused:
            return es2(refused.body)

    _add_test_control(app, state, max_confirmation_attempts)
    return app


def _add_test_control(app: FastAPI, state: DoubleState, max_confirmation_attempts: int) -> None:
    """The test-control routes (not ES2+): load profiles, inject faults, play a device's download."""

    @app.post("/test-control/profiles")
    async def add_profiles(request: Request) -> JSONResponse:
        body = await request.json()
        iccids = body.get("iccids") or []
        kind = str(body.get("profileType") or "simkeep-test")
        with state.lock:
            for iccid in iccids:
                state.profiles[str(iccid)] = DoubleProfile(str(iccid), kind)
        return JSONResponse({"added": len(iccids)})

    @app.get("/test-control/profiles/{iccid}")
    def show_profile(iccid: str) -> JSONResponse:
        with state.lock:
            profile = state.profiles.get(iccid)
            if profile is None:
                return JSONResponse({"error": "unknown ICCID"}, status_code=404)
            return JSONResponse(
                {
                    "iccid": profile.iccid,
                    "state": profile.state,
                    "eid": profile.eid,
                    "matchingId": profile.matching_id,
                    "confirmationCodeRequired": profile.confirmation_code_sha256 is not None,
                    "profileType": profile.profile_type,
                }
            )

    @app.get("/test-control/calls")
    def list_calls() -> JSONResponse:
        with state.lock:
            return JSONResponse(list(state.calls))

    @app.post("/test-control/faults")
    async def add_fault(request: Request) -> JSONResponse:
        body = await request.json()
        fault = Fault(
            status=str(body.get("status", p.FAILED)),
            subject_code=str(body.get("subjectCode", p.SUBJECT_FUNCTION_PROVIDER)),
            reason_code=str(body.get("reasonCode", p.REASON_EXECUTION_ERROR)),
            message=str(body.get("message", "injected failure")),
            delay_s=float(body.get("delay_s", 0)),
            http_status=int(body.get("http_status", 200)),
            times=int(body.get("times", 1)),
        )
        with state.lock:
            state.faults.setdefault(str(body["function"]), []).append(fault)
        return JSONResponse({"queued": True})

    @app.post("/test-control/profiles/{iccid}/device")
    def device_action(iccid: str, body: dict[str, Any]) -> JSONResponse:
        """The phone enables or deletes an installed profile (the double records the state only)."""
        target = {"enable": "enabled", "delete": "deleted"}.get(str(body.get("action")))
        with state.lock:
            profile = state.profiles.get(iccid)
            if profile is None or target is None:
                return JSONResponse({"error": "unknown ICCID or action"}, status_code=404)
            if profile.state not in ("installed", "enabled"):
                return JSONResponse({"error": f"profile is {profile.state}"}, status_code=409)
            profile.state = target
            return JSONResponse({"state": profile.state})

    @app.post("/test-control/reset")
    def reset() -> JSONResponse:
        with state.lock:
            state.profiles.clear()
            state.faults.clear()
            state.calls.clear()
        return JSONResponse({"reset": True})

    @app.post("/test-control/download")
    def download(body: dict[str, Any]) -> JSONResponse:
        """A device downloads the profile named by ``matchingId``: each step is reported to the operator."""
        eid = str(body.get("eid") or "89049032" + "0" * 23 + "1")
        with state.lock:
            found = [
                x
                for x in state.profiles.values()
                if x.matching_id and x.matching_id == body.get("matchingId")
            ]
            if not found:
                return JSONResponse({"error": "unknown matchingId"}, status_code=404)
            profile = found[0]
            if profile.state != "released":
                return JSONResponse({"error": f"profile is {profile.state}, not released"}, status_code=409)
            points = _device_steps(profile, body, eid, max_confirmation_attempts)
        events = [_progress(profile, eid, point, status, codes) for point, status, codes in points]
        if body.get("duplicate"):
            events = [e for event in events for e in (event, event)]
        if body.get("reverse"):
            events.reverse()
        results = [_deliver(state, event) for event in events] if body.get("deliver", True) else []
        return JSONResponse({"events": events, "deliveries": results, "state": profile.state})


def _device_steps(
    profile: DoubleProfile, body: dict[str, Any], eid: str, max_attempts: int
) -> list[tuple[int, str, dict[str, str] | None]]:
    """What a device's download goes through, moving the profile (the double's lock is held)."""
    if profile.eid is not None and profile.eid != eid:
        return [
            (
                p.POINT_ELIGIBILITY,
                p.FAILED,
                {
                    "subjectCode": p.SUBJECT_EID,
                    "reasonCode": p.REASON_INVALID_ASSOCIATION,
                    "message": "another eUICC",
                },
            )
        ]
    steps: list[tuple[int, str, dict[str, str] | None]] = [(p.POINT_ELIGIBILITY, p.SUCCESS, None)]
    if profile.confirmation_code_sha256 is not None:
        given = str(body.get("confirmationCode") or "")
        if hashlib.sha256(given.encode()).hexdigest() != profile.confirmation_code_sha256:
            profile.failed_confirmations += 1
            reason = (
                p.REASON_MAX_RETRIES
                if profile.failed_confirmations >= max_attempts
                else p.REASON_VERIFICATION_FAILED
            )
            if reason == p.REASON_MAX_RETRIES:
                profile.state = "unavailable"
            codes = {
                "subjectCode": p.SUBJECT_CONFIRMATION_CODE,
                "reasonCode": reason,
                "message": "wrong confirmation code",
            }
            return [*steps, (p.POINT_CONFIRMATION_FAILURE, p.FAILED, codes)]
    fail_at = body.get("failAt")
    for point, target in ((p.POINT_BPP_DOWNLOAD, "downloaded"), (p.POINT_BPP_INSTALLATION, "installed")):
        if fail_at == point:
            codes = {
                "subjectCode": p.SUBJECT_PROFILE,
                "reasonCode": "4.2",
                "message": "the device failed this step",
            }
            profile.state = "released"  # the device may try again
            return [*steps, (point, p.FAILED, codes)]
        profile.state, profile.eid = target, eid
        steps.append((point, p.SUCCESS, None))
    return steps


def _progress(
    profile: DoubleProfile, eid: str, point: int, status: str, codes: dict[str, str] | None
) -> dict[str, Any]:
    status_obj: dict[str, Any] = {"status": status}
    if codes:
        status_obj["statusCodeData"] = codes
    time.sleep(0.001)  # distinct timestamps, as a device's steps have
    return {
        "header": p.request_header("smdp-test-double", secrets.token_hex(8)),
        "eid": eid,
        "iccid": profile.iccid,
        "profileType": profile.profile_type,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "notificationPointId": point,
        "notificationPointStatus": status_obj,
    }


def _deliver(state: DoubleState, event: dict[str, Any]) -> dict[str, Any]:
    """Send one handleDownloadProgressInfo to the operator; returns the operator's answer."""
    if not state.callback_url:
        return {"http_status": None, "error": "no callback URL configured"}
    try:
        reply = httpx.post(
            f"{state.callback_url}{p.BASE_PATH}/{p.HANDLE_DOWNLOAD_PROGRESS_INFO}",
            json=event,
            headers={
                p.ADMIN_PROTOCOL_HEADER: p.ADMIN_PROTOCOL,
                "Authorization": f"Bearer {state.callback_token}",
            },
            timeout=10.0,
        )
    except httpx.HTTPError as exc:
        return {"http_status": None, "error": type(exc).__name__}
    try:
        answer = reply.json()
    except ValueError:
        answer = None
    return {"http_status": reply.status_code, "body": answer}
