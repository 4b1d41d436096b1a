"""Benchmark the eSIM channel: from a reviewer's approval to the activation code shown on the portal.

Run from the repository root: ``python bench/esim_replacement.py [--orders N]``. It makes a freshly
migrated SQLite database in a temporary folder, then starts what an operator runs, as separate processes:
``simkeep serve``, ``simkeep worker`` (default settings: it polls the queue every second) and the ES2+ test
double ``simkeep esim test-smdp`` on loopback. It seeds N holders, each with an online eSIM application
waiting in the review queue, and for each order, one after the other: the reviewer approves it over the
API, the holder pays over the API at once, and the holder's portal order page (signed in) is read every
50 ms until it shows the activation code (``LPA:1$...``). The figure is the time from the approval request
to that page; the PNG QR code of each order is also fetched and, when ``zxing-cpp`` is installed, decoded
and compared with the code on the page. The last line is ``RESULT esim_replacement_median_s <s> s``.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db import migrate
from simkeep.db.base import utcnow
from simkeep.db.engine import make_engine, make_session_factory
from simkeep.identity.application import CheckOutcome, OnlineApplication
from simkeep.identity.evidence import store_upload
from simkeep.identity.otp import issue_code
from simkeep.identity.service import Evidence, document_hash
from simkeep.models import (
    Channel,
    DocumentType,
    EmbeddedHlrSubscriber,
    Line,
    LineStatus,
    OrderState,
    Plan,
    Sim,
    SimKind,
    SimLocation,
    SimStatus,
    StaffRole,
    StaffUser,
    Subscriber,
)
from simkeep.replacements import service as orders
from simkeep.security import hash_password
from simkeep.web.security import SESSION_COOKIE

DOCUMENT = "11010519491231002X"
PASSWORD = "bench-pass-123"  # noqa: S105 - the benchmark's throwaway holders and reviewer
CALLBACK_TOKEN = "bench-callback-token-0123456789abcdef"  # noqa: S105 - local test double only


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def iccid(serial: int) -> str:
    """A valid 19-digit ICCID."""
    from simkeep.identifiers import luhn_valid

    body = f"898602{serial:012d}"
    return next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))


def jpeg() -> bytes:
    """A small photo to stand for the document and the selfie (the checks are given as run)."""
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 180, 160)).save(out, format="JPEG")
    return out.getvalue()


def seed(session: Session, settings: Settings, n: int) -> list[tuple[str, str]]:
    """A reviewer, N holders with a live SIM, N eSIMs in stock, and each holder's eSIM application in review.

    Returns (msisdn, order reference) for each holder.
    """
    session.add(
        StaffUser(
            username="reviewer",
            display_name="Reviewer",
            role=StaffRole.REVIEWER,
            password_hash=hash_password(PASSWORD),
        )
    )
    plan = Plan(code="keep", name="Number keeper")
    session.add(plan)
    session.flush()
    password_hash = hash_password(PASSWORD)
    out = []
    for i in range(1, n + 1):
        holder = Subscriber(
            real_name="张伟",
            document_type=DocumentType.CN_RIC,
            document_number_hmac=document_hash(settings, DOCUMENT),
            document_number_last4=DOCUMENT[-4:],
            contact_email=f"holder{i}@example.org",
            contact_phone=f"+8613900{i:06d}",
            service_password_hash=password_hash,
        )
        live = Sim(
            iccid=iccid(i),
            imsi=f"00101{i:010d}",
            kind=SimKind.PHYSICAL,
            status=SimStatus.ACTIVE,
            location=SimLocation.WAREHOUSE,
            batch="bench",
        )
        esim = Sim(
            iccid=iccid(100_000 + i),
            imsi=f"00101{100_000 + i:010d}",
            kind=SimKind.ESIM,
            status=SimStatus.IN_STOCK,
            location=SimLocation.WAREHOUSE,
            batch="bench",
        )
        session.add_all([holder, live, esim])
        session.flush()
        line = Line(
            msisdn=f"+86138{i:08d}",
            subscriber_id=holder.id,
            plan_id=plan.id,
            status=LineStatus.ACTIVE,
            sim_id=live.id,
            activated_at=utcnow(),
            last_activity_at=utcnow(),
        )
        session.add(line)
        session.add(EmbeddedHlrSubscriber(imsi=live.imsi, msisdn=line.msisdn, network_access_mode="cs+ps"))
        session.flush()
        actor = Actor(
            kind="line",
            label=f"line:{line.id}",
            line_id=line.id,
            proof_methods=("service_password", "one_time_code"),
        )
        refs = [
            store_upload(
                session, settings, actor=actor, kind=kind, data=jpeg(), declared_type="image/jpeg"
            ).reference
            for kind in ("document_photo", "selfie")
        ]
        _, code = issue_code(
            session, settings, line=line, subscriber=holder, purpose="replacement.submit", channel="email"
        )
        order = orders.submit(
            session,
            settings,
            actor=actor,
            msisdn=line.msisdn,
            channel=Channel.ESIM,
            evidence=Evidence(),
            application=OnlineApplication(DOCUMENT, refs[0], refs[1], code),
            checks=[
                CheckOutcome("document", "pass"),
                CheckOutcome("ocr", "pass"),
                CheckOutcome("face", "review", reasons=("face_score_band",)),
            ],
        )
        assert order.state == OrderState.IN_REVIEW, order.state
        out.append((line.msisdn, order.reference))
    session.commit()
    return out


def wait_for(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Wait until ``url`` answers (or fail when the process died)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early with code {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"{what} did not start")


def run(n: int, workdir: Path) -> list[float]:
    """Seed, start the processes, and time N approvals; returns the seconds of each."""
    api_port, smdp_port = free_port(), free_port()
    env = {
        **os.environ,
        "SIMKEEP_ENVIRONMENT": "development",
        "SIMKEEP_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "SIMKEEP_OTP_TRANSPORT": "file",
        "SIMKEEP_OTP_OUTBOX_DIR": str(workdir / "outbox"),
        "SIMKEEP_ESIM_SMDP_URL": f"http://127.0.0.1:{smdp_port}",
        "SIMKEEP_ESIM_REQUESTER_ID": "simkeep-bench",
        "SIMKEEP_ESIM_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "SIMKEEP_LOG_LEVEL": "WARNING",
    }
    settings = Settings.model_validate(
        {k.removeprefix("SIMKEEP_").lower(): v for k, v in env.items() if k.startswith("SIMKEEP_")}
    )
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    with make_session_factory(engine)() as session:
        pairs = seed(session, settings, n)
    engine.dispose()
    simkeep = str(Path(sys.executable).with_name("simkeep"))
    procs = [
        subprocess.Popen(
            [
                simkeep,
                "esim",
                "test-smdp",
                "--port",
                str(smdp_port),
                "--callback-url",
                f"http://127.0.0.1:{api_port}",
            ],
            env=env,
        ),
        subprocess.Popen(
            [simkeep, "serve", "--port", str(api_port), "--no-upgrade"], env=env, stdout=subprocess.DEVNULL
        ),
        subprocess.Popen([simkeep, "worker"], env=env, stdout=subprocess.DEVNULL),
    ]
    times: list[float] = []
    try:
        wait_for(f"http://127.0.0.1:{smdp_port}/test-control/calls", procs[0], "the test double")
        wait_for(f"http://127.0.0.1:{api_port}/docs", procs[1], "simkeep serve")
        base = f"http://127.0.0.1:{api_port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            r = http.post("/api/v1/auth/staff/token", json={"username": "reviewer", "password": PASSWORD})
            r.raise_for_status()
            reviewer = {"Authorization": f"Bearer {r.json()['access_token']}"}
            for msisdn, reference in pairs:
                r = http.post(
                    "/api/v1/auth/line/token", json={"msisdn": msisdn, "service_password": PASSWORD}
                )
                r.raise_for_status()
                token = r.json()["access_token"]
                holder = {"Authorization": f"Bearer {token}"}
                times.append(one(http, reviewer, holder, token, reference))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return times


def one(
    http: httpx.Client, reviewer: dict[str, str], holder: dict[str, str], token: str, reference: str
) -> float:
    """Approve, pay, and read the portal page until it shows the activation code; returns the seconds."""
    start = time.perf_counter()
    r = http.post(
        f"/api/v1/replacements/{reference}/decision",
        json={"approve": True, "reason": "checked"},
        headers=reviewer,
    )
    r.raise_for_status()
    r = http.post(
        f"/api/v1/replacements/{reference}/payment",
        json={"method": "online", "payment_reference": f"PAY-{reference}"},
        headers=holder,
    )
    r.raise_for_status()
    cookies = {SESSION_COOKIE: token}
    deadline = start + 60
    while True:
        page = http.get(f"/portal/orders/{reference}", cookies=cookies)
        found = re.search(r"LPA:1\$[^<\s]+", page.text)
        if found:
            elapsed = time.perf_counter() - start
            check_qr(http, reference, cookies, found.group(0))
            return elapsed
        if time.perf_counter() > deadline:
            sys.exit(f"{reference}: no activation code after 60 s")
        time.sleep(0.05)


def check_qr(http: httpx.Client, reference: str, cookies: dict[str, str], code: str) -> None:
    """The order's PNG QR code decodes to the code on the page (when zxing-cpp is installed)."""
    r = http.get(f"/portal/orders/{reference}/esim.png", cookies=cookies)
    r.raise_for_status()
    try:
        import zxingcpp
    except ImportError:
        return
    decoded: Any = [b.text for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(r.content)))]
    if decoded != [code]:
        sys.exit(f"{reference}: the QR code reads {decoded}, the page shows {code}")


def main() -> None:
    """Parse the arguments, run, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20, help="eSIM replacements to time (default 20).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="simkeep-esim-bench-") as tmp:
        times = run(args.orders, Path(tmp))
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"eSIM replacements timed: {len(times)}; approval to activation code shown on the portal")
    median = statistics.median(times)
    print(f"min {times[0]:.3f} s, median {median:.3f} s, p95 {p95:.3f} s, max {times[-1]:.3f} s")
    print(f"RESULT esim_replacement_median_s {statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()
