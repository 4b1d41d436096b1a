"""The adapter protocol's shared parts: SimAuth, the embedded HLR, choosing the adapter."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.errors import InvalidInput
from simkeep.network.adapter import (
    EmbeddedHlr,
    NetworkError,
    NetworkSubscriber,
    NetworkUnavailable,
    SimAuth,
    network_for,
)

K = "000102030405060708090A0B0C0D0E0F"
OPC = "f0e0d0c0b0a090807060504030201000"


class TestSimAuth:
    def test_milenage_normalised(self) -> None:
        """Milenage keeps K and OPc in lower case; the repr hides both."""
        auth = SimAuth("milenage", K, OPC)
        assert auth.k == K.lower()
        assert auth.opc == OPC
        assert K.lower() not in repr(auth)
        assert OPC not in repr(auth)

    def test_comp128_without_opc(self) -> None:
        """COMP128 versions take a Ki only."""
        assert SimAuth("comp128v3", K).opc is None

    @pytest.mark.parametrize(
        ("algorithm", "k", "opc", "message"),
        [
            ("xor", K, None, "Unknown authentication algorithm"),
            ("milenage", K[:-1], OPC, "32 hexadecimal"),
            ("milenage", "zz" + K[2:], OPC, "32 hexadecimal"),
            ("milenage", K, None, "needs OPc"),
            ("milenage", K, OPC + "00", "needs OPc"),
            ("comp128v1", K, OPC, "takes no OPc"),
        ],
    )
    def test_bad_data_refused(self, algorithm: str, k: str, opc: str | None, message: str) -> None:
        """Unknown algorithms, malformed keys and an OPc where none belongs raise INVALID_SIM_AUTH."""
        with pytest.raises(InvalidInput, match=message) as info:
            SimAuth(algorithm, k, opc)
        assert info.value.code == "INVALID_SIM_AUTH"


class TestErrors:
    def test_unavailable_is_retryable_network_error(self) -> None:
        """NetworkUnavailable is a NetworkError with its own code, marked retryable; a refusal is not."""
        exc = NetworkUnavailable("down")
        assert isinstance(exc, NetworkError)
        assert (exc.code, exc.retryable) == ("NETWORK_UNAVAILABLE", True)
        assert NetworkError("no").retryable is False


class TestEmbeddedHlr:
    def test_transactional(self, db: Session) -> None:
        """The embedded HLR's changes ride on the caller's transaction."""
        assert EmbeddedHlr(db).transactional is True

    def test_provision_accepts_auth_and_lists(self, db: Session) -> None:
        """provision takes authentication data; subscribers lists entries with their access mode."""
        hlr = EmbeddedHlr(db)
        hlr.provision("001010000000101", SimAuth("milenage", K, OPC))
        hlr.provision("001010000000102")
        hlr.bind_number("001010000000102", "+8613800000102")
        hlr.set_barred("001010000000102", barred=True)
        assert list(hlr.subscribers()) == [
            NetworkSubscriber("001010000000101", None, False, "cs+ps"),
            NetworkSubscriber("001010000000102", "+8613800000102", True, "none"),
        ]

    def test_rollback_undoes_changes(self, db: Session) -> None:
        """A change made inside a savepoint that is rolled back leaves no entry."""
        hlr = EmbeddedHlr(db)
        savepoint = db.begin_nested()
        hlr.provision("001010000000103")
        savepoint.rollback()
        assert hlr.lookup("001010000000103") is None

    def test_an_operations_steps_read_each_entry_once_and_few_are_held(self, db: Session) -> None:
        """Later steps on an IMSI find its entry without a query; a long run holds only the latest few."""
        imsis = [f"0010100000002{n:02d}" for n in range(20)]
        for imsi in imsis:
            EmbeddedHlr(db).provision(imsi)
        db.expunge_all()
        hlr = EmbeddedHlr(db)
        selects: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                selects.append(statement)

        event.listen(db.get_bind(), "before_cursor_execute", count)
        try:
            hlr.set_barred(imsis[0], barred=True)
            hlr.bind_number(imsis[0], "+8613800000200")  # one more SELECT: who else holds the number
            hlr.set_barred(imsis[0], barred=False)
            assert hlr.lookup(imsis[0]) == NetworkSubscriber(imsis[0], "+8613800000200", False, "cs+ps")
            assert len(selects) == 2
            for imsi in imsis:
                assert hlr.lookup(imsi) is not None
        finally:
            event.remove(db.get_bind(), "before_cursor_execute", count)
        assert list(hlr._held) == imsis[-8:]  # the bound is the point


class TestNetworkFor:
    def test_default_is_embedded(self, db: Session, settings: Settings) -> None:
        """Without settings, or with the default ones, the embedded HLR is used."""
        assert isinstance(network_for(db), EmbeddedHlr)
        assert isinstance(network_for(db, settings), EmbeddedHlr)

    def test_unknown_adapter_setting_refused(self) -> None:
        """An unknown SIMKEEP_NETWORK_ADAPTER value is refused when the settings are read."""
        with pytest.raises(ValueError, match="network_adapter"):
            Settings(network_adapter="hss")
