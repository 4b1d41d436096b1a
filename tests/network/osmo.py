"""A real osmo-hlr for tests: started on a free loopback address with a temporary config and database.

osmo-hlr's GSUP port (4222) cannot be moved by its configuration, and another service may hold it on
127.0.0.1, so each instance binds VTY, CTRL and GSUP to its own address in 127.0.0.2-127.0.0.254 where all
three ports are free. Other test packages use it too::

    from tests.network.osmo import OSMO_HLR_MISSING, start_osmo_hlr

    handle = start_osmo_hlr(tmp_path)
    try:
        adapter = handle.adapter()
        ...
    finally:
        handle.stop()
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from simkeep.network.ipa_ctrl import CtrlClient, CtrlError
from simkeep.network.osmo_hlr import OsmoHlr

OSMO_HLR = shutil.which("osmo-hlr")
#: The reason to skip HLR tests on a machine without the binary (Debian package ``osmo-hlr``).
OSMO_HLR_MISSING = "osmo-hlr is not installed (apt-get install osmo-hlr, or scripts/system-deps --test)"
CTRL_PORT, VTY_PORT, GSUP_PORT = 4259, 4258, 4222
START_TIMEOUT_S = 10.0

CONFIG = """\
log stderr
 logging filter all 1
 logging color 0
 logging print category 1
 logging level main notice
 logging level db notice
 logging level linp error
line vty
 bind {host} {vty_port}
ctrl
 bind {host}
hlr
 gsup
  bind ip {host}
"""


def _ports_free(host: str) -> bool:
    for port in (CTRL_PORT, VTY_PORT, GSUP_PORT):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


@dataclass
class OsmoHlrHandle:
    """A running osmo-hlr and how to reach, kill and restart it."""

    host: str
    workdir: Path
    ctrl_port: int = CTRL_PORT
    vty_port: int = VTY_PORT
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config(self) -> Path:
        """The configuration file."""
        return self.workdir / "osmo-hlr.cfg"

    @property
    def database(self) -> Path:
        """The HLR's SQLite database."""
        return self.workdir / "hlr.db"

    @property
    def log(self) -> Path:
        """Where osmo-hlr's stderr goes."""
        return self.workdir / "osmo-hlr.log"

    def adapter(self, *, timeout: float = 2.0) -> OsmoHlr:
        """An adapter for this HLR (the caller closes it)."""
        return OsmoHlr(self.host, ctrl_port=self.ctrl_port, vty_port=self.vty_port, timeout=timeout)

    def start(self) -> None:
        """Start osmo-hlr on the configured address and database; wait until CTRL answers."""
        assert OSMO_HLR is not None, OSMO_HLR_MISSING
        self.config.write_text(CONFIG.format(host=self.host, vty_port=self.vty_port))
        log = self.log.open("ab")
        try:
            self.process = subprocess.Popen(  # noqa: S603 - a fixed binary with our own arguments
                [OSMO_HLR, "-c", str(self.config), "-l", str(self.database)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                msg = f"osmo-hlr exited with {self.process.returncode}: {self.log.read_text()[-2000:]}"
                raise RuntimeError(msg)
            try:
                with CtrlClient(self.host, self.ctrl_port, timeout=0.5) as ctrl:
                    ctrl.get("subscriber.by-imsi-001010000000000.info")
            except CtrlError as exc:
                if "No such subscriber" in str(exc):
                    return
                if time.monotonic() > deadline:
                    self.stop()
                    msg = f"osmo-hlr did not answer on CTRL within {START_TIMEOUT_S}s: {exc}"
                    raise RuntimeError(msg) from exc
                time.sleep(0.05)
            else:
                return

    def kill(self) -> None:
        """SIGKILL the HLR (as a crash would) and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Kill the HLR if running and start it again on the same database and address."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Stop the HLR for good (SIGTERM, then SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def wipe(self) -> None:
        """Delete every subscriber, so a test starts from an empty HLR."""
        with contextlib.closing(self.adapter()) as hlr:
            for entry in list(hlr.subscribers()):
                hlr.remove(entry.imsi)


def start_osmo_hlr(tmp_path: Path, *, attempts: int = 20) -> OsmoHlrHandle:
    """Start an osmo-hlr in ``tmp_path`` on a free loopback address (see the module docstring)."""
    if OSMO_HLR is None:
        raise RuntimeError(OSMO_HLR_MISSING)
    tmp_path.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for _ in range(attempts):
        host = f"127.0.0.{random.randint(2, 254)}"
        if not _ports_free(host):
            continue
        handle = OsmoHlrHandle(host=host, workdir=tmp_path)
        try:
            handle.start()
        except RuntimeError as exc:  # another test session took the address between the probe and the start
            last = exc
            handle.stop()
            continue
        return handle
    msg = f"could not start osmo-hlr on a free loopback address: {last}"
    raise RuntimeError(msg)
