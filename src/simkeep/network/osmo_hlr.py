"""The network adapter for a running osmo-hlr (DOMAIN.md section 7; docs/network.md).

Everything goes through the CTRL interface, which osmo-hlr 1.5 offers for each step simkeep needs:

=====================================================  ================================================
``SET subscriber.create <imsi>``                        provision (``Subscriber already exists.`` = done)
``SET subscriber.by-imsi-<imsi>.aud3g MILENAGE,K,OPC,O``  Milenage K and OPc (``aud2g COMP128vN,KI`` for 2G)
``GET/SET subscriber.by-imsi-<imsi>.msisdn``            the number (``none`` takes it off)
``GET subscriber.by-msisdn-<digits>.info``              who holds a number
``SET subscriber.by-imsi-<imsi>.cs-enabled|ps-enabled``  network access (both 0: barred)
``GET subscriber.by-imsi-<imsi>.info`` / ``.info-aud``  read back
``SET subscriber.delete <imsi>``                        remove (``Subscriber doesn't exist.`` = done)
=====================================================  ================================================

The VTY is used only to list every subscriber (``show subscribers all``), which CTRL cannot do.

osmo-hlr keeps MSISDNs as digits; simkeep's are E.164 with ``+``, added and removed here. An unreachable or
silent HLR raises :class:`~simkeep.network.adapter.NetworkUnavailable` (retryable); a refusal raises
:class:`~simkeep.network.adapter.NetworkError`.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from simkeep.network.adapter import NetworkError, NetworkSubscriber, NetworkUnavailable, SimAuth
from simkeep.network.ipa_ctrl import CtrlClient, CtrlRefused, CtrlUnavailable
from simkeep.network.vty import VtyClient, VtyCommandError, VtyUnavailable

if TYPE_CHECKING:
    from simkeep.config import Settings

_IMSI = re.compile(r"[0-9]{5,15}")
_MSISDN = re.compile(r"\+?([1-9][0-9]{0,14})")
_NO_SUBSCRIBER = "No such subscriber."
_ALREADY_EXISTS = "Subscriber already exists."
_DOES_NOT_EXIST = "Subscriber doesn't exist."
_ALGO_TO_HLR = {
    "milenage": "MILENAGE",
    "comp128v1": "COMP128v1",
    "comp128v2": "COMP128v2",
    "comp128v3": "COMP128v3",
}
_ALGO_FROM_HLR = {v.lower(): k for k, v in _ALGO_TO_HLR.items()}
_NAM_MODE = {(True, True): "cs+ps", (True, False): "cs", (False, True): "ps", (False, False): "none"}


def _imsi(imsi: str) -> str:
    if not isinstance(imsi, str) or not _IMSI.fullmatch(imsi):
        raise NetworkError("An IMSI is 5 to 15 digits.", code="NETWORK_INVALID_IMSI")
    return imsi


def _digits(msisdn: str) -> str:
    match = _MSISDN.fullmatch(msisdn) if isinstance(msisdn, str) else None
    if match is None:
        raise NetworkError("An MSISDN is an E.164 number: up to 15 digits.", code="NETWORK_INVALID_MSISDN")
    return match.group(1)


def _e164(digits: str) -> str | None:
    digits = digits.strip()
    if not digits or digits == "none":
        return None
    return digits if digits.startswith("+") else "+" + digits


def _fields(text: str) -> dict[str, str]:
    """``key<TAB>value`` lines of a CTRL info reply."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            out[key.strip()] = value.strip()
    return out


class OsmoHlr:
    """The :class:`~simkeep.network.adapter.NetworkAdapter` of a running osmo-hlr.

    Changes take effect in the HLR at once and are not part of any database transaction. The CTRL
    connection is opened on first use and kept; :meth:`close` (or leaving a ``with`` block) ends it.
    """

    transactional: ClassVar[bool] = False

    def __init__(
        self, host: str, *, ctrl_port: int = 4259, vty_port: int = 4258, timeout: float = 2.0
    ) -> None:
        self.host = host
        self.ctrl_port = ctrl_port
        self.vty_port = vty_port
        self.timeout = timeout
        self._ctrl = CtrlClient(host, ctrl_port, timeout=timeout)
        self._finalizer = weakref.finalize(self, self._ctrl.close)

    @classmethod
    def from_settings(cls, settings: Settings) -> OsmoHlr:
        """The adapter for the HLR the settings name."""
        return cls(
            settings.hlr_host,
            ctrl_port=settings.hlr_ctrl_port,
            vty_port=settings.hlr_vty_port,
            timeout=settings.hlr_timeout_s,
        )

    def __enter__(self) -> OsmoHlr:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the CTRL connection."""
        self._ctrl.close()

    # --- CTRL with simkeep's errors -----------------------------------------------------------------------

    def _get(self, variable: str) -> str:
        try:
            return self._ctrl.get(variable)
        except CtrlUnavailable as exc:
            raise NetworkUnavailable(f"The HLR is unreachable: {exc}") from exc

    def _set(self, variable: str, value: str) -> str:
        try:
            return self._ctrl.set(variable, value)
        except CtrlUnavailable as exc:
            raise NetworkUnavailable(f"The HLR is unreachable: {exc}") from exc

    def _info(self, imsi: str) -> dict[str, str] | None:
        try:
            return _fields(self._get(f"subscriber.by-imsi-{imsi}.info"))
        except CtrlRefused as exc:
            if exc.reason == _NO_SUBSCRIBER:
                return None
            raise NetworkError(f"The HLR refused to read IMSI {imsi[:5]}…: {exc.reason}") from exc

    def _require(self, imsi: str) -> dict[str, str]:
        info = self._info(imsi)
        if info is None:
            raise NetworkError(f"IMSI {imsi[:5]}… is not provisioned")
        return info

    @staticmethod
    def _entry(info: dict[str, str]) -> NetworkSubscriber:
        cs, ps = info.get("nam_cs") == "1", info.get("nam_ps") == "1"
        mode = _NAM_MODE[(cs, ps)]
        return NetworkSubscriber(info["imsi"], _e164(info.get("msisdn", "")), mode == "none", mode)

    # --- the protocol -------------------------------------------------------------------------------------

    def provision(self, imsi: str, auth: SimAuth | None = None) -> None:
        """Create the subscriber if absent (live, no number), then store ``auth`` unless already there."""
        imsi = _imsi(imsi)
        try:
            self._set("subscriber.create", imsi)
        except CtrlRefused as exc:
            if exc.reason != _ALREADY_EXISTS:
                raise NetworkError(f"The HLR refused to create IMSI {imsi[:5]}…: {exc.reason}") from exc
        if auth is not None and self.auth(imsi) != auth:
            self._store_auth(imsi, auth)

    def _store_auth(self, imsi: str, auth: SimAuth) -> None:
        algo = _ALGO_TO_HLR[auth.algorithm]
        try:
            if auth.algorithm == "milenage":
                self._set(f"subscriber.by-imsi-{imsi}.aud3g", f"{algo},{auth.k},OPC,{auth.opc}")
            else:
                self._set(f"subscriber.by-imsi-{imsi}.aud2g", f"{algo},{auth.k}")
        except CtrlRefused as exc:
            raise NetworkError(
                f"The HLR refused the authentication data of IMSI {imsi[:5]}…: {exc.reason}"
            ) from exc

    def auth(self, imsi: str) -> SimAuth | None:
        """The authentication data stored for ``imsi`` (Milenage first), or None."""
        imsi = _imsi(imsi)
        try:
            fields = _fields(self._get(f"subscriber.by-imsi-{imsi}.info-aud"))
        except CtrlRefused as exc:
            if exc.reason == _NO_SUBSCRIBER:
                return None
            raise NetworkError(f"The HLR refused to read IMSI {imsi[:5]}…: {exc.reason}") from exc
        algo3g = _ALGO_FROM_HLR.get(fields.get("aud3g.algo", "").lower())
        if algo3g == "milenage" and "aud3g.k" in fields and "aud3g.opc" in fields:
            return SimAuth("milenage", fields["aud3g.k"], fields["aud3g.opc"])
        algo2g = _ALGO_FROM_HLR.get(fields.get("aud2g.algo", "").lower())
        if algo2g is not None and algo2g != "milenage" and "aud2g.ki" in fields:
            return SimAuth(algo2g, fields["aud2g.ki"])
        return None

    def bind_number(self, imsi: str, msisdn: str) -> None:
        """Give ``msisdn`` to ``imsi``; refused while another IMSI holds it."""
        imsi, digits = _imsi(imsi), _digits(msisdn)
        info = self._require(imsi)
        if info.get("msisdn") == digits:
            return
        self._refuse_if_held_elsewhere(imsi, digits)
        try:
            self._set(f"subscriber.by-imsi-{imsi}.msisdn", digits)
        except CtrlRefused as exc:
            self._refuse_if_held_elsewhere(imsi, digits)  # taken in the meantime
            raise NetworkError(f"The HLR refused the number for IMSI {imsi[:5]}…: {exc.reason}") from exc

    def _refuse_if_held_elsewhere(self, imsi: str, digits: str) -> None:
        try:
            holder = _fields(self._get(f"subscriber.by-msisdn-{digits}.info"))
        except CtrlRefused as exc:
            if exc.reason == _NO_SUBSCRIBER:
                return
            raise NetworkError(f"The HLR refused to look the number up: {exc.reason}") from exc
        if holder.get("imsi") not in {None, imsi}:
            raise NetworkError("the number is still on another IMSI", code="NETWORK_NUMBER_HELD")

    def unbind_number(self, imsi: str) -> None:
        """Take the number off ``imsi`` (nothing to do when it has none or is absent)."""
        imsi = _imsi(imsi)
        info = self._info(imsi)
        if info is None or not info.get("msisdn"):
            return
        try:
            self._set(f"subscriber.by-imsi-{imsi}.msisdn", "none")
        except CtrlRefused as exc:
            if exc.reason == _NO_SUBSCRIBER:
                return  # removed in the meantime
            raise NetworkError(
                f"The HLR refused to take the number off IMSI {imsi[:5]}…: {exc.reason}"
            ) from exc

    def set_barred(self, imsi: str, *, barred: bool) -> None:
        """Bar (CS and PS access off) or unbar (both on) the IMSI."""
        imsi = _imsi(imsi)
        info = self._require(imsi)
        value = "0" if barred else "1"
        for domain in ("cs", "ps"):
            if info.get(f"nam_{domain}") == value:
                continue
            try:
                self._set(f"subscriber.by-imsi-{imsi}.{domain}-enabled", value)
            except CtrlRefused as exc:
                raise NetworkError(
                    f"The HLR refused to change the access of IMSI {imsi[:5]}…: {exc.reason}"
                ) from exc

    def remove(self, imsi: str) -> None:
        """Delete the subscriber (nothing to do when absent)."""
        imsi = _imsi(imsi)
        try:
            self._set("subscriber.delete", imsi)
        except CtrlRefused as exc:
            if exc.reason != _DOES_NOT_EXIST:
                raise NetworkError(f"The HLR refused to delete IMSI {imsi[:5]}…: {exc.reason}") from exc

    def lookup(self, imsi: str) -> NetworkSubscriber | None:
        """The IMSI's entry, or None."""
        info = self._info(_imsi(imsi))
        return None if info is None else self._entry(info)

    def subscribers(self) -> Iterator[NetworkSubscriber]:
        """Every subscriber, from the VTY's ``show subscribers all`` (CTRL has no listing)."""
        try:
            with VtyClient(self.host, self.vty_port, timeout=self.timeout) as vty:
                lines = vty.command("show subscribers all", accept=("% No matching subscriber",))
        except VtyUnavailable as exc:
            raise NetworkUnavailable(f"The HLR's VTY is unreachable: {exc}") from exc
        except VtyCommandError as exc:
            raise NetworkError(f"The HLR's VTY refused to list subscribers: {exc.message}") from exc
        yield from parse_subscriber_table(lines)


def parse_subscriber_table(lines: list[str]) -> Iterator[NetworkSubscriber]:
    """The rows of ``show subscribers all``: ``ID MSISDN IMSI IMEI [NAM]``, NAM ``CS``, ``PS`` or ``CSPS``."""
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or not parts[0].isdigit() or not _IMSI.fullmatch(parts[2]):
            continue  # the header, its rule, the "Subscribers Shown" footer
        nam = parts[4] if len(parts) > 4 else ""
        if nam not in {"", "CS", "PS", "CSPS"}:
            raise NetworkError(f"Unexpected access mode {nam!r} in the HLR's subscriber list")
        mode = _NAM_MODE[("CS" in nam, "PS" in nam)]
        yield NetworkSubscriber(parts[2], _e164(parts[1]), mode == "none", mode)
