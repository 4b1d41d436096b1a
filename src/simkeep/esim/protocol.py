"""ES2+ (SGP.22 v2.5) on the wire: the admin-protocol header, paths, statuses, subject and reason codes.

Shared by the client (:mod:`simkeep.esim.client`), the callback endpoint (:mod:`simkeep.esim.api`) and the
test double of an SM-DP+ (:mod:`simkeep.esim.smdp_double`), so that both sides speak the same JSON.
"""

from __future__ import annotations

from typing import Any

ADMIN_PROTOCOL = "gsma/rsp/v2.5.0"
ADMIN_PROTOCOL_HEADER = "X-Admin-Protocol"
CONTENT_TYPE = "application/json;charset=UTF-8"
BASE_PATH = "/gsma/rsp2/es2plus"

DOWNLOAD_ORDER = "downloadOrder"
CONFIRM_ORDER = "confirmOrder"
CANCEL_ORDER = "cancelOrder"
RELEASE_PROFILE = "releaseProfile"
HANDLE_DOWNLOAD_PROGRESS_INFO = "handleDownloadProgressInfo"

SUCCESS = "Executed-Success"
WARNING = "Executed-WithWarning"
FAILED = "Failed"
EXPIRED = "Expired"
STATUSES = frozenset({SUCCESS, WARNING, FAILED, EXPIRED})

# Subject codes (SGP.22 section 5.2.6.1) that simkeep and the test double use.
SUBJECT_FUNCTION_REQUESTER = "1.1"
SUBJECT_FUNCTION_PROVIDER = "1.2"
SUBJECT_FUNCTION = "1.6"  # an input parameter of the function (the message names it)
SUBJECT_EID = "8.1.1"
SUBJECT_PROFILE = "8.2"
SUBJECT_ICCID = "8.2.1"
SUBJECT_PROFILE_TYPE = "8.2.5"
SUBJECT_MATCHING_ID = "8.2.6"
SUBJECT_CONFIRMATION_CODE = "8.2.7"

# Reason codes (SGP.22 section 5.2.6.2).
REASON_UNKNOWN_CALLER = "1.1"  # Unknown (Identification or Authentication)
REASON_NOT_ALLOWED = "1.2"  # Not Allowed (Authorisation)
REASON_INVALID = "2.1"
REASON_MISSING = "2.2"  # Mandatory Element Missing
REASON_CONDITIONAL_MISSING = "2.3"
REASON_IN_USE = "3.3"  # Already in Use
REASON_INVALID_TRANSITION = "3.5"
REASON_UNAVAILABLE = "3.7"
REASON_UNKNOWN = "3.9"
REASON_INVALID_ASSOCIATION = "3.10"
REASON_VERIFICATION_FAILED = "6.1"
REASON_MAX_RETRIES = "6.4"  # Maximum number of retries exceeded
REASON_EXECUTION_ERROR = "4.2"

# handleDownloadProgressInfo notification points (SGP.22 section 5.3.5).
POINT_ELIGIBILITY = 1
POINT_CONFIRMATION_FAILURE = 2
POINT_BPP_DOWNLOAD = 3
POINT_BPP_INSTALLATION = 4

#: Final profile states cancelOrder may ask for.
FINAL_PROFILE_STATUSES = frozenset({"Available", "Unavailable"})


def request_header(requester_id: str, call_id: str) -> dict[str, str]:
    """The ``header`` object of every ES2+ request."""
    return {"functionRequesterIdentifier": requester_id, "functionCallIdentifier": call_id}


def response(
    status: str = SUCCESS, *, status_code_data: dict[str, str] | None = None, **body: Any
) -> dict[str, Any]:
    """An ES2+ response body: ``header.functionExecutionStatus`` and the function's output data."""
    execution: dict[str, Any] = {"status": status}
    if status_code_data:
        execution["statusCodeData"] = status_code_data
    return {"header": {"functionExecutionStatus": execution}, **body}


def failed(
    subject: str, reason: str, message: str, *, identifier: str | None = None, status: str = FAILED
) -> dict[str, Any]:
    """A Failed (or Expired) response with its status code data."""
    data = {"subjectCode": subject, "reasonCode": reason, "message": message}
    if identifier is not None:
        data["subjectIdentifier"] = identifier
    return response(status, status_code_data=data)


def activation_code(smdp_address: str, matching_id: str, *, confirmation_code_required: bool) -> str:
    """The activation code the holder scans (SGP.22 section 4.1): ``LPA:1$address$matching id[$$1]``."""
    code = f"LPA:1${smdp_address}${matching_id}"
    return code + "$$1" if confirmation_code_required else code
