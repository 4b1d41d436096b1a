"""``simkeep sims import``: SIM stock from CSV, on both databases, run as an operator runs it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from psycopg.errors import ForeignKeyViolation
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from simkeep.config import Settings
from simkeep.db.engine import make_session_factory
from simkeep.identifiers import iccid_problem
from simkeep.identity.vault import get_vault
from simkeep.models import Sim, SimKind, SimLocation, SimStatus, Store
from simkeep.network.adapter import SimAuth
from simkeep.sims.importer import Batch, SimWriter, fast_iccid_problem, import_sims
from simkeep.sims.secrets import open_auth
from tests import factories
from tests.helpers import side_by_side
from tests.sims import Deadlock, ImportCli, errors_of, import_cli

HEADER = "iccid,imsi,kind,location,store,batch"


STORE = "BJ-XIDAN"


@pytest.fixture
def cli(
    fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ImportCli]:
    """The command on a private database that has one store, ``BJ-XIDAN``."""
    with make_session_factory(fresh[0])() as session:
        factories.store(session, STORE)
        session.commit()
    yield from import_cli(fresh, monkeypatch, tmp_path)


def iccid(n: int) -> str:
    """A valid ICCID (Luhn) for serial ``n``."""
    return factories.make_iccid(600_000 + n)


def imsi(n: int) -> str:
    """An IMSI for serial ``n``."""
    return factories.make_imsi(600_000 + n)


def bad_luhn(value: str) -> str:
    """``value`` with a wrong check digit."""
    return value[:-1] + str((int(value[-1]) + 1) % 10)


def row(
    n: int, kind: str = "physical", location: str = "warehouse", store: str = "", batch: str = "B1"
) -> str:
    """A good stock row for serial ``n``."""
    return f"{iccid(n)},{imsi(n)},{kind},{location},{store},{batch}"


def stock(cli: ImportCli) -> dict[str, tuple[str, SimKind, SimStatus, SimLocation, str | None, str]]:
    """The SIMs in the database by ICCID: IMSI, kind, status, location, store code, batch."""
    with cli.sessions() as session:
        stores = {s.id: s.code for s in session.scalars(select(Store))}
        return {
            s.iccid: (s.imsi, s.kind, s.status, s.location, stores.get(s.store_id or 0), s.batch)
            for s in session.scalars(select(Sim))
        }


class TestCleanFile:
    """A file of good rows is imported whole, and importing it again changes nothing."""

    def test_imports_every_row(self, cli: ImportCli) -> None:
        """Each row becomes a SIM in stock with its kind, location, store and batch; the command exits 0."""
        path = cli.write(
            HEADER,
            [
                row(1),
                row(2, kind="esim", batch="2026-11 eSIM"),
                row(3, location="store", store=STORE, batch=""),
            ],
        )
        code, report = cli.report("sims", path)
        assert code == 0
        assert (report["rows"], report["imported"], report["already_present"], report["rejected"]) == (
            3,
            3,
            0,
            0,
        )
        assert stock(cli) == {
            iccid(1): (imsi(1), SimKind.PHYSICAL, SimStatus.IN_STOCK, SimLocation.WAREHOUSE, None, "B1"),
            iccid(2): (
                imsi(2),
                SimKind.ESIM,
                SimStatus.IN_STOCK,
                SimLocation.WAREHOUSE,
                None,
                "2026-11 eSIM",
            ),
            iccid(3): (imsi(3), SimKind.PHYSICAL, SimStatus.IN_STOCK, SimLocation.STORE, STORE, ""),
        }

    def test_run_is_audited(self, cli: ImportCli) -> None:
        """One audit entry records who imported which file and the counts, never a row's values."""
        cli.report("sims", cli.write(HEADER, [row(1), row(2)], name="stock-2026-11.csv"))
        entry = cli.audit()[-1]
        assert (entry.actor, entry.action, entry.subject_type, entry.subject_id) == (
            "cli",
            "sims.imported",
            "import",
            "stock-2026-11.csv",
        )
        assert entry.data == {
            "file": "stock-2026-11.csv",
            "rows": 2,
            "imported": 2,
            "already_present": 0,
            "rejected": 0,
        }

    def test_rerun_changes_nothing(self, cli: ImportCli) -> None:
        """Importing the same file again imports nothing, counts every row as already present, exits 0."""
        path = cli.write(HEADER, [row(1), row(2), row(3, location="store", store=STORE)])
        assert cli.report("sims", path)[0] == 0
        before = cli.state()
        code, report = cli.report("sims", path)
        assert code == 0
        assert (report["imported"], report["already_present"], report["rejected"]) == (0, 3, 0)
        assert cli.state() == before

    def test_overlapping_file_adds_only_new_rows(self, cli: ImportCli) -> None:
        """A later file that repeats some SIMs imports the new ones and leaves the known ones as they were."""
        cli.report("sims", cli.write(HEADER, [row(1), row(2)], name="first.csv"))
        before = stock(cli)
        code, report = cli.report("sims", cli.write(HEADER, [row(2, batch="B2"), row(3)], name="second.csv"))
        assert code == 0
        assert (report["imported"], report["already_present"]) == (1, 1)
        after = stock(cli)
        assert after[iccid(2)] == before[iccid(2)]
        assert set(after) == {iccid(1), iccid(2), iccid(3)}

    def test_tolerates_bom_crlf_and_padding(self, cli: ImportCli) -> None:
        """A spreadsheet's export (BOM, upper-case header, CRLF, blank lines, padded values) imports as is."""
        path = cli.write(
            "\ufeffICCID, IMSI ,Kind,Location,Store,Batch",
            [f" {iccid(1)} , {imsi(1)},esim ,store, {STORE} ,B1", "", row(2)],
            newline="\r\n",
        )
        code, report = cli.report("sims", path)
        assert (code, report["imported"], report["rejected"]) == (0, 2, 0)
        assert stock(cli)[iccid(1)] == (
            imsi(1),
            SimKind.ESIM,
            SimStatus.IN_STOCK,
            SimLocation.STORE,
            STORE,
            "B1",
        )


BAD_ROWS = [
    pytest.param(
        f"{bad_luhn(iccid(9))},{imsi(9)},physical,warehouse,,B1",
        "iccid",
        "the ICCID's check digit is wrong (Luhn)",
        id="iccid-luhn",
    ),
    pytest.param(
        f"8986-01,{imsi(9)},physical,warehouse,,B1", "iccid", "an ICCID has digits only", id="iccid-chars"
    ),
    pytest.param(
        f"{factories.make_iccid(9)[:-3]},{imsi(9)},physical,warehouse,,B1",
        "iccid",
        "an ICCID has 19 or 20 digits",
        id="iccid-short",
    ),
    pytest.param(
        f"{iccid(9)},4600A1234,physical,warehouse,,B1", "imsi", "an IMSI has digits only", id="imsi-chars"
    ),
    pytest.param(
        f"{iccid(9)},4600112345678901,physical,warehouse,,B1",
        "imsi",
        "an IMSI has 6 to 15 digits",
        id="imsi-long",
    ),
    pytest.param(f"{iccid(9)},,physical,warehouse,,B1", "imsi", "an IMSI has digits only", id="imsi-empty"),
    pytest.param(
        f"{iccid(9)},{imsi(9)},usim,warehouse,,B1", "kind", "must be physical or esim", id="kind-unknown"
    ),
    pytest.param(
        f"{iccid(9)},{imsi(9)},physical,depot,,B1",
        "location",
        "must be warehouse or store",
        id="location-unknown",
    ),
    pytest.param(
        f"{iccid(9)},{imsi(9)},physical,store,SH-NOPE,B1",
        "store",
        "no store has this code",
        id="store-unknown",
    ),
    pytest.param(
        f"{iccid(9)},{imsi(9)},physical,store,,B1",
        "store",
        "a SIM kept in a store needs the store's code",
        id="store-missing",
    ),
    pytest.param(
        f"{iccid(9)},{imsi(9)},physical,warehouse,{STORE},B1",
        "store",
        "must be empty for a SIM kept in the warehouse",
        id="store-in-warehouse",
    ),
    pytest.param(
        f"{iccid(9)},{imsi(9)},physical,warehouse,,{'B' * 65}",
        "batch",
        "at most 64 characters",
        id="batch-long",
    ),
    pytest.param(
        f"{iccid(9)},{imsi(9)},physical,warehouse", "row", "expected 6 fields, found 4", id="too-few-fields"
    ),
    pytest.param(
        f"{iccid(9)},{imsi(9)},physical,warehouse,,B1,extra",
        "row",
        "expected 6 fields, found 7",
        id="too-many-fields",
    ),
    pytest.param(
        f'{iccid(9)},{imsi(9)},physical,warehouse,,"B1',
        "row",
        "a quoted field is not closed on its line (no field may hold a line break)",
        id="unclosed-quote",
    ),
    pytest.param(
        f'{iccid(9)},"{imsi(9)}"7,physical,warehouse,,B1',
        "imsi",
        "an IMSI has 6 to 15 digits",
        id="quote-junk",
    ),
]


class TestConcurrentRuns:
    """Stock imports run side by side (two operators, or a retried job) store each SIM once."""

    def test_overlapping_files_at_once(self, cli: ImportCli) -> None:
        """Two files sharing ten SIMs, imported at the same time in small batches: every SIM is stored
        once, the shared ones counted as already present by whichever run came second, none refused."""
        first = cli.write(HEADER, [row(n) for n in range(1, 31)], name="first.csv")
        second = cli.write(HEADER, [row(n) for n in range(21, 51)], name="second.csv")
        results = side_by_side(
            *(
                partial(import_sims, cli.engine, cli.settings, path, batch_rows=4, parallel=False)
                for path in (first, second)
            )
        )
        assert len(results) == 2
        assert (sum(r.imported for r in results), sum(r.already_present for r in results)) == (50, 10)
        assert [r.rejected for r in results] == [0, 0]
        assert set(stock(cli)) == {iccid(n) for n in range(1, 51)}

    def test_other_run_taking_a_refused_rows_id(self, cli: ImportCli) -> None:
        """On SQLite a batch's ids follow the highest id taken, one per row, so a row refused at the end of
        a batch leaves an id that a run beside it takes next. That run's SIM, met in this run's next batch,
        is already present, not a repeat of the refused row's line."""
        import_sims(cli.engine, cli.settings, cli.write(HEADER, [row(2)], name="before.csv"), parallel=False)
        other = cli.write(HEADER, [row(3)], name="other.csv")

        def meanwhile(done: int, _total: int) -> None:
            if done == 2:  # the first batch: row 1 imported, row 2 already present
                import_sims(cli.engine, cli.settings, other, parallel=False)

        path = cli.write(HEADER, [row(1), row(2), row(3), row(4)])
        result = import_sims(
            cli.engine, cli.settings, path, batch_rows=2, parallel=False, on_progress=meanwhile
        )
        assert result.errors == []
        assert (result.imported, result.already_present, result.rejected) == (2, 2, 0)
        assert set(stock(cli)) == {iccid(n) for n in range(1, 5)}


class TestBadRows:
    """Each bad row is reported with its line and reason; the good rows around it are imported regardless."""

    @pytest.mark.parametrize(("bad", "field", "reason"), BAD_ROWS)
    def test_bad_row_is_reported_and_skipped(self, cli: ImportCli, bad: str, field: str, reason: str) -> None:
        """The bad row on line 3 is named with its field and reason and leaves no SIM; the command exits 1."""
        code, report = cli.report("sims", cli.write(HEADER, [row(1), bad, row(2)]))
        assert code == 1
        assert errors_of(report) == [(3, field, reason)]
        assert (report["rows"], report["imported"], report["rejected"]) == (3, 2, 1)
        assert set(stock(cli)) == {iccid(1), iccid(2)}

    def test_unclosed_quote_does_not_swallow_the_next_lines(self, cli: ImportCli) -> None:
        """A quote left open costs its own row only: the lines after it are read and imported as rows."""
        rows = [row(1), f'"{iccid(2)},{imsi(2)},physical,warehouse,,B1', row(3), row(4)]
        code, report = cli.report("sims", cli.write(HEADER, rows))
        assert code == 1
        assert [e[:2] for e in errors_of(report)] == [(3, "row")]
        assert set(stock(cli)) == {iccid(1), iccid(3), iccid(4)}

    def test_several_bad_rows_are_all_reported_in_line_order(self, cli: ImportCli) -> None:
        """Every bad row of a file is reported, by line, and only the good rows are imported."""
        rows = [
            f"{bad_luhn(iccid(1))},{imsi(1)},physical,warehouse,,B1",
            row(2),
            f"{iccid(3)},{imsi(3)},sim,warehouse,,B1",
            row(4),
            f"{iccid(5)},{imsi(5)},esim,store,SH-NOPE,B1",
        ]
        code, report = cli.report("sims", cli.write(HEADER, rows))
        assert code == 1
        assert [e[:2] for e in errors_of(report)] == [(2, "iccid"), (4, "kind"), (6, "store")]
        assert set(stock(cli)) == {iccid(2), iccid(4)}

    def test_file_of_bad_rows_only_changes_nothing(self, cli: ImportCli) -> None:
        """When every row is bad nothing is written but the audit entry of the run."""
        before = cli.state()
        code, report = cli.report("sims", cli.write(HEADER, [f"{iccid(1)},x,physical,warehouse,,B1"]))
        assert (code, report["imported"], report["rejected"]) == (1, 0, 1)
        assert cli.state() == before
        assert cli.audit()[-1].data["rejected"] == 1


class TestDuplicates:
    """A SIM named twice, in the file or already in the database, is reported rather than imported twice."""

    def test_same_iccid_twice_in_file(self, cli: ImportCli) -> None:
        """The second row with an ICCID is reported as a duplicate of the first; the first is imported."""
        rows = [row(1), row(2), f"{iccid(1)},{imsi(3)},physical,warehouse,,B1"]
        code, report = cli.report("sims", cli.write(HEADER, rows))
        assert code == 1
        assert errors_of(report) == [(4, "iccid", "the ICCID is also on line 2")]
        assert stock(cli)[iccid(1)][0] == imsi(1)
        assert len(stock(cli)) == 2

    def test_same_row_twice_in_file(self, cli: ImportCli) -> None:
        """An exact repeat of a row inside one file is reported too, not silently merged."""
        code, report = cli.report("sims", cli.write(HEADER, [row(1), row(1)]))
        assert code == 1
        assert errors_of(report) == [(3, "iccid", "the ICCID is also on line 2")]
        assert set(stock(cli)) == {iccid(1)}

    def test_same_imsi_twice_in_file(self, cli: ImportCli) -> None:
        """A second SIM with an IMSI already on an earlier line is reported; neither ICCID is confused."""
        rows = [
            row(1),
            f"{iccid(2)},{imsi(1)},physical,warehouse,,B1",
            f"{iccid(2)},{imsi(2)},physical,warehouse,,B1",
        ]
        code, report = cli.report("sims", cli.write(HEADER, rows))
        assert code == 1
        assert errors_of(report) == [(3, "imsi", "the IMSI is also on line 2")]
        assert stock(cli)[iccid(2)][0] == imsi(2)

    def test_iccid_in_database_with_another_imsi(self, cli: ImportCli) -> None:
        """A known ICCID arriving with another IMSI is an error; the stored SIM keeps its IMSI."""
        cli.report("sims", cli.write(HEADER, [row(1)], name="first.csv"))
        rows = [f"{iccid(1)},{imsi(5)},physical,warehouse,,B1", row(2)]
        code, report = cli.report("sims", cli.write(HEADER, rows, name="second.csv"))
        assert code == 1
        assert errors_of(report) == [(2, "imsi", "the ICCID is already registered with another IMSI")]
        assert (report["imported"], report["already_present"]) == (1, 0)
        assert stock(cli)[iccid(1)][0] == imsi(1)
        assert imsi(5) not in {s[0] for s in stock(cli).values()}

    def test_imsi_in_database_on_another_sim(self, cli: ImportCli) -> None:
        """A new ICCID with the IMSI of a known SIM is an error and is not imported."""
        with cli.sessions() as session:
            known = factories.sim(session, status=SimStatus.ACTIVE)
            session.commit()
        rows = [row(1), f"{iccid(2)},{known.imsi},esim,warehouse,,B1"]
        code, report = cli.report("sims", cli.write(HEADER, rows))
        assert code == 1
        assert errors_of(report) == [(3, "imsi", "the IMSI already belongs to another SIM")]
        assert set(stock(cli)) == {known.iccid, iccid(1)}
        assert stock(cli)[known.iccid][2] == SimStatus.ACTIVE

    def test_duplicates_across_batches_name_the_earlier_line(self, cli: ImportCli) -> None:
        """With the file split into batches, a repeat in a later batch still names the line of the first."""
        rows = [row(1), row(2), row(3), f"{iccid(1)},{imsi(4)},physical,warehouse,,B1", row(5)]
        path = cli.write(HEADER, rows)
        result = import_sims(cli.engine, cli.settings, path, batch_rows=2, parallel=False)
        assert [(e.line, e.field, e.reason) for e in result.errors] == [
            (5, "iccid", "the ICCID is also on line 2")
        ]
        assert (result.imported, result.already_present, result.rejected) == (4, 0, 1)
        assert set(stock(cli)) == {iccid(1), iccid(2), iccid(3), iccid(5)}


class TestUnreadableFile:
    """A file that cannot be read as a whole exits 2 and changes nothing, not even the audit log."""

    def test_missing_file(self, cli: ImportCli) -> None:
        """A path that does not exist is refused with IMPORT_FILE_UNREADABLE."""
        before, audit = cli.state(), cli.audit()
        code, report = cli.report("sims", cli.folder / "nope.csv")
        assert code == 2
        assert report["error"] == "IMPORT_FILE_UNREADABLE"
        assert "cannot open" in report["message"]
        assert (cli.state(), cli.audit()) == (before, audit)

    @pytest.mark.parametrize(
        "header",
        [
            "iccid,imsi,kind,location,batch",
            "imsi,iccid,kind,location,store,batch",
            "iccid;imsi;kind;location;store;batch",
            "",
        ],
        ids=["column-missing", "columns-swapped", "semicolons", "empty"],
    )
    def test_wrong_header(self, cli: ImportCli, header: str) -> None:
        """A file whose first line is not the expected header is refused whole, naming the header wanted."""
        before = cli.state()
        code, report = cli.report("sims", cli.write(header, [row(1)]))
        assert code == 2
        assert report == {
            "error": "IMPORT_FILE_UNREADABLE",
            "message": f"line 1: the header must be exactly: {HEADER}, optionally followed by "
            "auth_algorithm,k,opc",
        }
        assert cli.state() == before

    def test_not_utf8(self, cli: ImportCli) -> None:
        """A byte that is not UTF-8 refuses the whole file, naming its line; the good rows before it too."""
        path = cli.folder / "gbk.csv"
        path.write_bytes(f"{HEADER}\n{row(1)}\n{row(2)}\n".encode() + "批次".encode("gbk") + b"\n")
        before = cli.state()
        code, report = cli.report("sims", path)
        assert code == 2
        assert report["message"] == "line 4: the file is not UTF-8 text; save it as UTF-8 and import again"
        assert cli.state() == before

    def test_nul_byte(self, cli: ImportCli) -> None:
        """A NUL byte (a binary file) refuses the whole file, naming its line."""
        path = cli.folder / "binary.csv"
        path.write_bytes(f"{HEADER}\n{row(1)}\n".encode() + b"\x00\x01\n")
        code, report = cli.report("sims", path)
        assert (code, report["message"]) == (2, "line 3: the file contains a NUL byte")
        assert stock(cli) == {}

    def test_text_output_goes_to_stderr(self, cli: ImportCli) -> None:
        """Without --json the error is printed for a person, on standard error, with its code."""
        result = cli.run("sims", cli.folder / "nope.csv", as_json=False)
        assert result.exit_code == 2
        assert result.stdout == ""
        assert result.stderr.startswith("error [IMPORT_FILE_UNREADABLE]: cannot open")


class TestOutput:
    """What the command prints: the counts and line-numbered errors, as JSON or for a person."""

    def test_json_shape(self, cli: ImportCli) -> None:
        """--json prints the counts, the errors sorted by line, the time taken and the rate."""
        rows = [row(1), f"{iccid(2)},{imsi(2)},usim,warehouse,,B1", "1,2,3"]
        code, report = cli.report("sims", cli.write(HEADER, rows, name="stock.csv"))
        assert code == 1
        assert set(report) == {
            "file",
            "rows",
            "imported",
            "already_present",
            "rejected",
            "created_plans",
            "errors",
            "errors_omitted",
            "seconds",
            "rows_per_second",
        }
        assert {k: report[k] for k in ("file", "rows", "imported", "already_present", "rejected")} == {
            "file": "stock.csv",
            "rows": 3,
            "imported": 1,
            "already_present": 0,
            "rejected": 2,
        }
        assert report["errors"] == [
            {"line": 3, "field": "kind", "reason": "must be physical or esim"},
            {"line": 4, "field": "row", "reason": "expected 6 fields, found 3"},
        ]
        assert (report["errors_omitted"], report["created_plans"]) == (0, [])
        assert report["seconds"] >= 0
        assert report["rows_per_second"] is None or report["rows_per_second"] > 0

    def test_reasons_never_repeat_the_value(self, cli: ImportCli) -> None:
        """An error names the line and field, never the rejected value itself."""
        bad = bad_luhn(iccid(1))
        result = cli.run("sims", cli.write(HEADER, [f"{bad},{imsi(1)},physical,warehouse,,B1"]))
        assert result.exit_code == 1
        assert bad not in result.stdout

    def test_text_summary(self, cli: ImportCli) -> None:
        """Without --json a person reads the counts, then each error as ``line N: field: reason``."""
        rows = [row(1), f"{iccid(2)},{imsi(2)},esim,warehouse,,B1,x"]
        result = cli.run("sims", cli.write(HEADER, rows), as_json=False)
        assert result.exit_code == 1
        first, second = result.stdout.splitlines()
        assert first.startswith("2 rows in ")
        assert first.endswith(": 1 SIMs imported, 0 already present, 1 rejected")
        assert second == "  line 3: row: expected 6 fields, found 7"

    def test_errors_beyond_a_thousand_are_counted_not_listed(self, cli: ImportCli) -> None:
        """At most 1000 errors are listed; the rest are counted in errors_omitted, and all in rejected."""
        rows = [f"{iccid(n)},x,physical,warehouse,,B1" for n in range(1003)]
        code, report = cli.report("sims", cli.write(HEADER, rows))
        assert code == 1
        assert (report["rejected"], len(report["errors"]), report["errors_omitted"]) == (1003, 1000, 3)
        assert report["errors"][0]["line"] == 2


class TestImportSims:
    """``import_sims`` itself: the reader process and the progress callback behind the command."""

    def test_reader_process_gives_the_same_result(self, cli: ImportCli) -> None:
        """Parsing in a forked reader process imports and reports exactly what the single process does."""
        rows = [row(1), f"{iccid(2)},{imsi(2)},usim,warehouse,,B1", row(3), row(1), row(4)]
        path = cli.write(HEADER, rows)
        result = import_sims(cli.engine, cli.settings, path, batch_rows=2, parallel=True)
        assert [(e.line, e.field) for e in sorted(result.errors, key=lambda e: e.line)] == [
            (3, "kind"),
            (5, "iccid"),
        ]
        assert (result.rows, result.imported, result.rejected) == (5, 3, 2)
        assert set(stock(cli)) == {iccid(1), iccid(3), iccid(4)}

    def test_progress_reaches_the_total(self, cli: ImportCli) -> None:
        """The progress callback (behind the progress bar) is told the rows done out of the file's total."""
        seen: list[tuple[int, int]] = []
        path = cli.write(HEADER, [row(n) for n in range(5)])
        import_sims(
            cli.engine, cli.settings, path, batch_rows=2, on_progress=lambda d, t: seen.append((d, t))
        )
        assert seen == [(2, 5), (4, 5), (5, 5)]

    def test_batch_failed_by_a_deadlock_runs_again(
        self, cli: ImportCli, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch rolled back as a deadlock's victim is written again: each row once, repeats still named."""
        method = "_write_pg" if cli.engine.dialect.name == "postgresql" else "_write_sqlite"
        real = getattr(SimWriter, method)
        failed: list[int] = []

        def lose_first_deadlock(writer: SimWriter, cur: Any, batch: Batch) -> Any:
            outcome = real(writer, cur, batch)
            if not failed:
                failed.append(batch.lines[0])
                raise Deadlock
            return outcome

        monkeypatch.setattr(SimWriter, method, lose_first_deadlock)
        rows = [row(1), row(2), row(3), f"{iccid(1)},{imsi(4)},physical,warehouse,,B1"]
        result = import_sims(cli.engine, cli.settings, cli.write(HEADER, rows), batch_rows=2, parallel=False)
        assert failed == [2]
        assert [(e.line, e.reason) for e in result.errors] == [(5, "the ICCID is also on line 2")]
        assert (result.imported, result.rejected) == (3, 1)
        assert set(stock(cli)) == {iccid(1), iccid(2), iccid(3)}


class TestPostgresStoreCheck:
    """On PostgreSQL a batch skips its rows' foreign key trigger (the replica role) only while every store the
    reader checked the rows against exists, held so by a lock; otherwise the trigger runs."""

    @pytest.fixture(autouse=True)
    def _postgres_only(self, cli: ImportCli) -> None:
        if cli.engine.dialect.name != "postgresql":
            pytest.skip("SQLite checks its foreign keys as it always does")

    def test_rows_skip_the_trigger_and_the_key_still_holds(
        self, cli: ImportCli, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The stock goes in as replica; afterwards the foreign key still refuses a SIM in a missing store."""
        roles: list[str] = []
        real = SimWriter._write_pg

        def write(writer: SimWriter, cur: Any, batch: Batch) -> Any:
            outcome = real(writer, cur, batch)
            cur.execute("SHOW session_replication_role")
            roles.append(cur.fetchone()[0])
            return outcome

        monkeypatch.setattr(SimWriter, "_write_pg", write)
        path = cli.write(HEADER, [row(1, location="store", store=STORE), row(2)])
        assert import_sims(cli.engine, cli.settings, path, parallel=False).imported == 2
        assert roles == ["replica"]
        assert stock(cli)[iccid(1)][4] == STORE
        with cli.engine.connect() as conn, pytest.raises(IntegrityError, match="fk_sims_store_id_stores"):
            conn.execute(
                text(
                    "INSERT INTO sims (iccid, imsi, kind, status, location, store_id, batch, created_at, "
                    "updated_at) VALUES (:iccid, :imsi, 'physical', 'in_stock', 'store', -1, 'B1', now(), "
                    "now())"
                ),
                {"iccid": iccid(3), "imsi": imsi(3)},
            )

    def test_store_deleted_meanwhile_is_caught_by_the_key(self, cli: ImportCli) -> None:
        """A store deleted (with SQL: simkeep never deletes one) after the run read the stores: the next batch
        runs with the foreign key trigger, which refuses its SIM for that store; nothing refers to it."""
        with cli.sessions() as session:
            factories.store(session, "SH-GONE")
            session.commit()

        def meanwhile(done: int, _total: int) -> None:
            if done == 2:
                with cli.engine.begin() as conn:
                    conn.execute(text("DELETE FROM stores WHERE code = 'SH-GONE'"))

        rows = [row(1), row(2), row(3, location="store", store="SH-GONE"), row(4)]
        path = cli.write(HEADER, rows)
        with pytest.raises(ForeignKeyViolation, match="fk_sims_store_id_stores"):
            import_sims(cli.engine, cli.settings, path, batch_rows=2, parallel=False, on_progress=meanwhile)
        assert set(stock(cli)) == {iccid(1), iccid(2)}


AUTH_HEADER = f"{HEADER},auth_algorithm,k,opc"
K = "000102030405060708090A0B0C0D0E0F"
OPC = "F0E0D0C0B0A090807060504030201000"
KI = "11223344556677889900aabbccddeeff"


def sealed_rows(cli: ImportCli) -> dict[str, tuple[str | None, str | None]]:
    """The raw ``auth_algorithm`` and ``auth_sealed`` columns of every SIM, by ICCID, read with plain SQL."""
    with cli.engine.connect() as conn:
        rows = conn.execute(text("SELECT iccid, auth_algorithm, auth_sealed FROM sims"))
        return {iccid: (algorithm, sealed) for iccid, algorithm, sealed in rows}


def opened(cli: ImportCli, serial: int) -> SimAuth:
    """The secrets stored for the SIM of ``serial``, opened with the vault."""
    algorithm, sealed = sealed_rows(cli)[iccid(serial)]
    assert algorithm is not None
    assert sealed is not None
    return open_auth(get_vault(cli.settings), iccid=iccid(serial), algorithm=algorithm, sealed=sealed)


BAD_SECRETS = [
    pytest.param(f"milenage,{K[:-1]}G,{OPC}", "k", "must be hexadecimal: only 0-9 and a-f", id="k-not-hex"),
    pytest.param(
        f"milenage,{K[:-2]},{OPC}",
        "k",
        "must be 32 hexadecimal characters (128 bits), not 30",
        id="k-short",
    ),
    pytest.param(
        f"comp128v1,{K}00,", "k", "must be 32 hexadecimal characters (128 bits), not 34", id="k-long"
    ),
    pytest.param(f"milenage,{K},", "opc", "required for milenage", id="opc-missing"),
    pytest.param(
        f"milenage,{K},{OPC[:-1]}",
        "opc",
        "must be 32 hexadecimal characters (128 bits), not 31",
        id="opc-short",
    ),
    pytest.param(
        f"milenage,{K},{OPC[:-1]}x", "opc", "must be hexadecimal: only 0-9 and a-f", id="opc-not-hex"
    ),
    pytest.param(
        f"comp128v2,{K},{OPC}",
        "opc",
        "only milenage takes an OPc; leave it empty for COMP128",
        id="opc-for-comp128",
    ),
    pytest.param(f"milenage,,{OPC}", "k", "required for milenage", id="k-missing"),
    pytest.param(
        f"xor,{K},", "auth_algorithm", "must be milenage, comp128v1, comp128v2 or comp128v3", id="algorithm"
    ),
    pytest.param(
        f",{K},{OPC}",
        "auth_algorithm",
        "required with a key; must be milenage, comp128v1, comp128v2 or comp128v3",
        id="algorithm-missing",
    ),
]


class TestSecrets:
    """SIM secrets in the stock file: checked, sealed at rest, never shown; SIMs without them still import."""

    def test_secrets_are_sealed_and_open_to_what_the_file_held(self, cli: ImportCli) -> None:
        """Milenage and COMP128 rows keep the algorithm in clear, the keys sealed; they open as filed."""
        path = cli.write(AUTH_HEADER, [f"{row(1)},milenage,{K},{OPC}", f"{row(2)},COMP128v3,{KI},"])
        code, report = cli.report("sims", path)
        assert (code, report["imported"], report["rejected"]) == (0, 2, 0)
        assert opened(cli, 1) == SimAuth(algorithm="milenage", k=K.lower(), opc=OPC.lower())
        assert opened(cli, 2) == SimAuth(algorithm="comp128v3", k=KI, opc=None)

    def test_secrets_never_appear_in_clear_in_the_database(self, cli: ImportCli) -> None:
        """No column of any table holds a key, in either case; the sealed value is bound to its own SIM."""
        cli.report("sims", cli.write(AUTH_HEADER, [f"{row(1)},milenage,{K},{OPC}"]))
        dump = repr(cli.state()).lower()
        for secret in (K, OPC):
            assert secret.lower() not in dump
        sealed = sealed_rows(cli)[iccid(1)][1]
        assert sealed is not None
        with pytest.raises(Exception, match="integrity"):
            open_auth(get_vault(cli.settings), iccid=iccid(2), algorithm="milenage", sealed=sealed)

    def test_secrets_are_never_printed_or_audited(self, cli: ImportCli) -> None:
        """Neither the JSON report, the text summary nor the audit entry carries a key, good or bad."""
        bad_k = K[:-1] + "Z"
        rows = [f"{row(1)},milenage,{K},{OPC}", f"{row(2)},milenage,{bad_k},{OPC}"]
        path = cli.write(AUTH_HEADER, rows)
        outputs = [cli.run("sims", path).stdout, cli.run("sims", path, as_json=False).stdout]
        outputs += [repr(entry.data) for entry in cli.audit()]
        for secret in (K, OPC, bad_k):
            assert all(secret.lower() not in out.lower() for out in outputs)

    def test_rows_without_secrets_still_import(self, cli: ImportCli) -> None:
        """In a file with the secret columns, a row that leaves them empty becomes a SIM with no secrets."""
        path = cli.write(AUTH_HEADER, [f"{row(1)},,,", f"{row(2)},milenage,{K},{OPC}"])
        code, report = cli.report("sims", path)
        assert (code, report["imported"]) == (0, 2)
        assert sealed_rows(cli)[iccid(1)] == (None, None)
        assert sealed_rows(cli)[iccid(2)][0] == "milenage"

    def test_file_without_secret_columns_stores_none(self, cli: ImportCli) -> None:
        """The plain six-column file still imports, with no algorithm and nothing sealed."""
        cli.report("sims", cli.write(HEADER, [row(1)]))
        assert sealed_rows(cli) == {iccid(1): (None, None)}

    def test_ki_column_for_comp128(self, cli: ImportCli) -> None:
        """A COMP128 file may name its key column ``ki``; the Ki is sealed like a K."""
        path = cli.write(f"{HEADER},auth_algorithm,ki", [f"{row(1)},comp128v1,{KI}"])
        code, report = cli.report("sims", path)
        assert (code, report["imported"]) == (0, 1)
        assert opened(cli, 1) == SimAuth(algorithm="comp128v1", k=KI, opc=None)

    def test_ki_column_refuses_milenage(self, cli: ImportCli) -> None:
        """A Ki is a COMP128 key: a milenage row in a ``ki`` file is a bad row, and its neighbours import."""
        path = cli.write(f"{HEADER},auth_algorithm,ki,opc", [f"{row(1)},milenage,{KI},{OPC}", f"{row(2)},,,"])
        code, report = cli.report("sims", path)
        assert code == 1
        assert errors_of(report) == [(2, "ki", "a Ki is a COMP128 key; a milenage SIM takes k and opc")]
        assert set(stock(cli)) == {iccid(2)}

    def test_milenage_without_an_opc_column(self, cli: ImportCli) -> None:
        """A file with no opc column cannot carry a milenage SIM: the row is refused, naming the column."""
        path = cli.write(f"{HEADER},auth_algorithm,k", [f"{row(1)},milenage,{K}"])
        code, report = cli.report("sims", path)
        assert code == 1
        assert errors_of(report) == [(2, "opc", "required for milenage: add the opc column")]
        assert stock(cli) == {}

    @pytest.mark.parametrize(("secrets", "field", "reason"), BAD_SECRETS)
    def test_bad_secrets_are_bad_rows(self, cli: ImportCli, secrets: str, field: str, reason: str) -> None:
        """A bad secret makes a bad row: named by line, field and reason, no SIM, the value hidden."""
        path = cli.write(AUTH_HEADER, [f"{row(1)},,,", f"{row(2)},{secrets}", f"{row(3)},comp128v2,{KI},"])
        code, report = cli.report("sims", path)
        assert code == 1
        assert errors_of(report) == [(3, field, reason)]
        assert set(stock(cli)) == {iccid(1), iccid(3)}
        assert all(value not in repr(report) for value in secrets.split(",")[1:] if value)

    def test_rerun_with_secrets_changes_nothing(self, cli: ImportCli) -> None:
        """Importing the file again counts its SIMs as present and leaves their sealed secrets as they are."""
        path = cli.write(AUTH_HEADER, [f"{row(1)},milenage,{K},{OPC}", f"{row(2)},comp128v1,{KI},"])
        cli.report("sims", path)
        before = cli.state()
        code, report = cli.report("sims", path)
        assert (code, report["imported"], report["already_present"]) == (0, 0, 2)
        assert cli.state() == before

    def test_reader_process_seals_too(self, cli: ImportCli) -> None:
        """The forked reader seals exactly as the single process does, across batches."""
        rows = [f"{row(n)},milenage,{K},{OPC}" for n in range(1, 6)]
        result = import_sims(
            cli.engine, cli.settings, cli.write(AUTH_HEADER, rows), batch_rows=2, parallel=True
        )
        assert (result.imported, result.rejected) == (5, 0)
        assert all(opened(cli, n).opc == OPC.lower() for n in range(1, 6))


class TestFastIccidProblem:
    """The bulk imports' ICCID check gives the verdicts of ``simkeep.identifiers.iccid_problem``."""

    def test_same_verdict_on_random_input(self) -> None:
        """On random near-ICCIDs (lengths 18 to 21, stray letters, wrong prefixes) both say the same."""
        rng = random.Random(20261130)
        for _ in range(20_000):
            value = "89" + "".join(rng.choice("0123456789") for _ in range(rng.choice([16, 17, 18, 19])))
            if rng.random() < 0.05:
                value = value.replace("1", "a")
            if rng.random() < 0.05:
                value = "98" + value[2:]
            assert fast_iccid_problem(value) == iccid_problem(value), value

    def test_valid_iccids_pass(self) -> None:
        """The ICCIDs the test factories make (valid Luhn, 19 digits) pass, and one wrong digit fails."""
        assert {fast_iccid_problem(iccid(n)) for n in range(500)} == {None}
        assert fast_iccid_problem(bad_luhn(iccid(1))) == "the ICCID's check digit is wrong (Luhn)"
