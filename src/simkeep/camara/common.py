"""What every CAMARA operation checks the same way: the x-correlator, the JSON body, the phone number."""

from __future__ import annotations

import json
import re
from typing import Any

from simkeep.camara.errors import CamaraError

#: The spec's XCorrelator pattern.
CORRELATOR = re.compile(r"^[a-zA-Z0-9\-_:;./<>{}]{0,256}\Z")
#: The spec's PhoneNumber pattern (E.164 with a leading "+").
PHONE_NUMBER = re.compile(r"^\+[1-9][0-9]{4,14}\Z")


def correlator(value: str | None) -> str | None:
    """The x-correlator to echo; INVALID_ARGUMENT when it breaks the spec's pattern."""
    if value is None:
        return None
    if not CORRELATOR.fullmatch(value):
        raise CamaraError("INVALID_ARGUMENT", "Invalid x-correlator header.")
    return value


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; INVALID_ARGUMENT otherwise."""
    try:
        # UTF-8 (RFC 8259) decoded first: json.loads on bytes would sniff the encoding of every body.
        data = json.loads(body.decode("utf-8") if body[:3] != b"\xef\xbb\xbf" else body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CamaraError("INVALID_ARGUMENT", "The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise CamaraError("INVALID_ARGUMENT", "The request body must be a JSON object.")
    return data


def optional_phone_number(data: dict[str, Any]) -> str | None:
    """``phoneNumber`` when present; INVALID_ARGUMENT when it is not an E.164 string."""
    if "phoneNumber" not in data:
        return None
    value = data["phoneNumber"]
    if not isinstance(value, str) or not PHONE_NUMBER.fullmatch(value):
        raise CamaraError("INVALID_ARGUMENT", "phoneNumber must be in E.164 format with a leading '+'.")
    return value


def subject(*, from_token: str | None, from_body: str | None) -> str:
    """The phone number asked about: from a three-legged token or the body, never both, never neither."""
    if from_token is not None and from_body is not None:
        raise CamaraError("UNNECESSARY_IDENTIFIER")
    number = from_token or from_body
    if number is None:
        raise CamaraError("MISSING_IDENTIFIER")
    return number
