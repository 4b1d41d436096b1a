"""The osmo-hlr adapter against a real osmo-hlr, read back through CTRL and the VTY."""

from __future__ import annotations

import pytest

from simkeep.config import Settings
from simkeep.network.adapter import NetworkError, NetworkUnavailable, SimAuth, move_number, network_for
from simkeep.network.ipa_ctrl import CtrlClient, CtrlRefused
from simkeep.network.osmo_hlr import OsmoHlr, parse_subscriber_table
from simkeep.network.vty import VtyClient
from tests.network.osmo import OsmoHlrHandle

OLD, NEW, OTHER = "001010000000011", "001010000000012", "001010000000013"
NUMBER = "+8613800000011"
K = "000102030405060708090a0b0c0d0e0f"
OPC = "f0e0d0c0b0a090807060504030201000"


def ctrl_get(handle: OsmoHlrHandle, variable: str) -> str:
    """Read a CTRL variable on a connection of the test's own (not the adapter's)."""
    with CtrlClient(handle.host, handle.ctrl_port) as ctrl:
        return ctrl.get(variable)


def vty_show(handle: OsmoHlrHandle, imsi: str) -> list[str]:
    """``show subscriber imsi X`` on the HLR's VTY, stripped lines."""
    with VtyClient(handle.host, handle.vty_port) as vty:
        return [line.strip() for line in vty.command(f"show subscriber imsi {imsi}")]


def exists(handle: OsmoHlrHandle, imsi: str) -> bool:
    try:
        ctrl_get(handle, f"subscriber.by-imsi-{imsi}.info")
    except CtrlRefused:
        return False
    return True


class TestProvision:
    def test_creates_live_subscriber_without_number(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """provision creates the IMSI with CS and PS access and no MSISDN."""
        hlr.provision(NEW)
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{NEW}.msisdn") == "none"
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{NEW}.cs-enabled") == "1"
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{NEW}.ps-enabled") == "1"

    def test_twice_is_fine(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """A second provision of the same IMSI succeeds and keeps the one entry and its number."""
        hlr.provision(NEW)
        hlr.bind_number(NEW, NUMBER)
        hlr.provision(NEW)
        assert [s.imsi for s in hlr.subscribers()] == [NEW]
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{NEW}.msisdn") == NUMBER[1:]

    def test_milenage_keys_stored(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """Milenage K and OPc given at provisioning appear in the VTY's view of the subscriber."""
        hlr.provision(NEW, SimAuth("milenage", K.upper(), OPC))
        shown = vty_show(hlr_handle, NEW)
        assert "3G auth: MILENAGE" in shown
        assert f"K={K}" in shown
        assert f"OPC={OPC}" in shown
        assert hlr.auth(NEW) == SimAuth("milenage", K, OPC)

    def test_comp128_ki_stored(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """A COMP128v1 Ki is stored as 2G authentication data."""
        hlr.provision(NEW, SimAuth("comp128v1", K))
        shown = vty_show(hlr_handle, NEW)
        assert "2G auth: COMP128v1" in shown
        assert f"KI={K}" in shown

    def test_same_keys_again_keep_sequence_number(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """Provisioning again with the same keys does not rewrite them (the SQN is not reset)."""
        auth = SimAuth("milenage", K, OPC)
        hlr.provision(NEW, auth)
        with CtrlClient(hlr_handle.host, hlr_handle.ctrl_port) as ctrl:
            before = ctrl.get(f"subscriber.by-imsi-{NEW}.info-aud")
        hlr.provision(NEW, auth)
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{NEW}.info-aud") == before

    def test_bad_imsi_refused_and_nothing_created(self, hlr: OsmoHlr) -> None:
        """A malformed IMSI is refused with a clear error and the HLR stays empty."""
        with pytest.raises(NetworkError, match="5 to 15 digits") as info:
            hlr.provision("12ab")
        assert info.value.code == "NETWORK_INVALID_IMSI"
        assert list(hlr.subscribers()) == []


class TestBindNumber:
    def test_binds_and_reads_back(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """The number is stored as digits and read back as E.164."""
        hlr.provision(NEW)
        hlr.bind_number(NEW, NUMBER)
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{NEW}.msisdn") == "8613800000011"
        entry = hlr.lookup(NEW)
        assert entry is not None
        assert entry.msisdn == NUMBER

    def test_rebinding_same_number_is_fine(self, hlr: OsmoHlr) -> None:
        """Binding the number an IMSI already holds succeeds."""
        hlr.provision(NEW)
        hlr.bind_number(NEW, NUMBER)
        hlr.bind_number(NEW, NUMBER)
        assert hlr.lookup(NEW) is not None

    def test_number_on_another_imsi_refused(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """While another IMSI holds the number, binding it fails and both entries stay as they were."""
        hlr.provision(OLD)
        hlr.provision(NEW)
        hlr.bind_number(OLD, NUMBER)
        with pytest.raises(NetworkError, match="another IMSI") as info:
            hlr.bind_number(NEW, NUMBER)
        assert not info.value.retryable
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{OLD}.msisdn") == NUMBER[1:]
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{NEW}.msisdn") == "none"

    def test_unprovisioned_imsi_refused(self, hlr: OsmoHlr) -> None:
        """Binding to an IMSI the HLR does not know fails and creates nothing."""
        with pytest.raises(NetworkError, match="not provisioned"):
            hlr.bind_number(NEW, NUMBER)
        assert list(hlr.subscribers()) == []

    def test_malformed_number_refused(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """A number that is not E.164 is refused and the IMSI keeps no number."""
        hlr.provision(NEW)
        with pytest.raises(NetworkError) as info:
            hlr.bind_number(NEW, "+86 138 0000")
        assert info.value.code == "NETWORK_INVALID_MSISDN"
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{NEW}.msisdn") == "none"


class TestUnbindNumber:
    def test_takes_number_off(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """unbind leaves the IMSI without a number; repeating it, or on an absent IMSI, is fine."""
        hlr.provision(OLD)
        hlr.bind_number(OLD, NUMBER)
        hlr.unbind_number(OLD)
        hlr.unbind_number(OLD)
        hlr.unbind_number(OTHER)
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{OLD}.msisdn") == "none"


class TestSetBarred:
    def test_bar_and_unbar(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """Barring turns CS and PS access off, unbarring on; each twice in a row is fine."""
        hlr.provision(OLD)
        hlr.set_barred(OLD, barred=True)
        hlr.set_barred(OLD, barred=True)
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{OLD}.cs-enabled") == "0"
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{OLD}.ps-enabled") == "0"
        entry = hlr.lookup(OLD)
        assert entry is not None
        assert entry.barred
        assert entry.access_mode == "none"
        hlr.set_barred(OLD, barred=False)
        hlr.set_barred(OLD, barred=False)
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{OLD}.cs-enabled") == "1"
        assert ctrl_get(hlr_handle, f"subscriber.by-imsi-{OLD}.ps-enabled") == "1"

    def test_half_barred_entry_is_not_live(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """An entry with only CS access reads as neither barred nor live, and unbarring restores both."""
        hlr.provision(OLD)
        with CtrlClient(hlr_handle.host, hlr_handle.ctrl_port) as ctrl:
            ctrl.set(f"subscriber.by-imsi-{OLD}.ps-enabled", "0")
        entry = hlr.lookup(OLD)
        assert entry is not None
        assert (entry.barred, entry.live, entry.access_mode) == (False, False, "cs")
        hlr.set_barred(OLD, barred=False)
        entry = hlr.lookup(OLD)
        assert entry is not None
        assert entry.live

    def test_unprovisioned_imsi_refused(self, hlr: OsmoHlr) -> None:
        """Barring an IMSI the HLR does not know fails (the caller's state would be a lie)."""
        with pytest.raises(NetworkError, match="not provisioned"):
            hlr.set_barred(OTHER, barred=True)


class TestRemove:
    def test_deletes_and_repeats(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """remove deletes the entry; removing an absent IMSI is fine."""
        hlr.provision(OLD)
        hlr.remove(OLD)
        hlr.remove(OLD)
        assert not exists(hlr_handle, OLD)
        assert hlr.lookup(OLD) is None


class TestSubscribers:
    def test_lists_every_entry(self, hlr: OsmoHlr) -> None:
        """subscribers lists each IMSI with its number and access, as the VTY shows them."""
        hlr.provision(OLD)
        hlr.bind_number(OLD, NUMBER)
        hlr.set_barred(OLD, barred=True)
        hlr.provision(NEW)
        by_imsi = {s.imsi: s for s in hlr.subscribers()}
        assert set(by_imsi) == {OLD, NEW}
        assert (by_imsi[OLD].msisdn, by_imsi[OLD].barred) == (NUMBER, True)
        assert (by_imsi[NEW].msisdn, by_imsi[NEW].live) == (None, True)

    def test_empty_hlr(self, hlr: OsmoHlr) -> None:
        """An empty HLR lists nothing (its "No matching subscriber" message is not an error)."""
        assert list(hlr.subscribers()) == []

    def test_parse_table_modes(self) -> None:
        """The table parser reads CS, PS, CSPS and blank access and skips header and footer."""
        lines = [
            "ID     MSISDN        IMSI              IMEI              NAM",
            "-----  ------------  ----------------  ----------------  -----",
            "1      8613800000001  001010000000001    -------------    CS    ",
            "2      none          001010000000002    -------------          ",
            "3      none          001010000000003    35000000000000     PS  ",
            "4      none          001010000000004    -------------    CSPS  ",
            " Subscribers Shown: 4",
        ]
        modes = [(s.imsi[-1], s.msisdn, s.access_mode) for s in parse_subscriber_table(lines)]
        assert modes == [
            ("1", "+8613800000001", "cs"),
            ("2", None, "none"),
            ("3", None, "ps"),
            ("4", None, "cs+ps"),
        ]


class TestMoveNumber:
    def test_replacement_moves_number_and_bars_old(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """move_number leaves the old IMSI barred without a number and the new one live with it."""
        hlr.provision(OLD)
        hlr.bind_number(OLD, NUMBER)
        move_number(hlr, msisdn=NUMBER, old_imsi=OLD, new_imsi=NEW)
        move_number(hlr, msisdn=NUMBER, old_imsi=OLD, new_imsi=NEW)  # repeatable from the start
        old, new = hlr.lookup(OLD), hlr.lookup(NEW)
        assert old is not None
        assert new is not None
        assert (old.msisdn, old.barred) == (None, True)
        assert (new.msisdn, new.live) == (NUMBER, True)


class TestUnavailable:
    def test_hlr_down_is_unavailable_and_retryable(self, hlr: OsmoHlr, hlr_handle: OsmoHlrHandle) -> None:
        """With the HLR killed every operation raises NetworkUnavailable; after a restart they work again."""
        hlr.provision(OLD)
        hlr_handle.kill()
        with pytest.raises(NetworkUnavailable) as info:
            hlr.set_barred(OLD, barred=True)
        assert info.value.retryable
        assert info.value.code == "NETWORK_UNAVAILABLE"
        with pytest.raises(NetworkUnavailable):
            list(hlr.subscribers())
        hlr_handle.restart()
        hlr.set_barred(OLD, barred=True)
        entry = hlr.lookup(OLD)
        assert entry is not None
        assert entry.barred

    def test_silent_hlr_times_out(self) -> None:
        """A peer that accepts but never answers fails the step as NetworkUnavailable after the timeout."""
        import socket

        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            port = server.getsockname()[1]
            hlr = OsmoHlr("127.0.0.1", ctrl_port=port, vty_port=port, timeout=0.2)
            with pytest.raises(NetworkUnavailable, match="did not answer"):
                hlr.lookup(OLD)
            with pytest.raises(NetworkUnavailable, match="silent"):
                list(hlr.subscribers())
            hlr.close()


class TestNetworkFor:
    def test_settings_select_osmo_hlr(self, hlr_handle: OsmoHlrHandle) -> None:
        """network_for returns an OsmoHlr on the configured address, non-transactional."""
        settings = Settings(
            network_adapter="osmo-hlr",
            hlr_host=hlr_handle.host,
            hlr_ctrl_port=hlr_handle.ctrl_port,
            hlr_vty_port=hlr_handle.vty_port,
            hlr_timeout_s=1.5,
        )
        adapter = network_for(None, settings)  # type: ignore[arg-type]
        assert isinstance(adapter, OsmoHlr)
        assert not adapter.transactional
        assert (adapter.host, adapter.timeout) == (hlr_handle.host, 1.5)
        adapter.provision(OLD)
        assert exists(hlr_handle, OLD)
