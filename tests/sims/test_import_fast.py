"""The stock import's fast paths (column-wise checks, batch sealing, direct COPY) give what the full way
gives."""

from __future__ import annotations

import multiprocessing
import os
import random
import sqlite3
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.identifiers import iccid_problem
from simkeep.identity.vault import Vault, get_vault
from simkeep.models import Sim, SimStatus
from simkeep.network.adapter import SimAuth
from simkeep.sims.columns import iccid_ok, stock_columns
from simkeep.sims.importer import (
    READER_NICENESS,
    SIM_COLUMNS,
    STAGE_ROWS_PER_INSERT,
    ImportFileUnreadable,
    Part,
    _stock_batch,
    _stock_row,
    chunk_texts,
    in_turns,
    may_fork_readers,
    one_record,
    staged_database,
)
from simkeep.sims.secrets import open_auth, seal_many
from tests import factories
from tests.sims import ImportCli, import_cli

STORES = {"BJ-XIDAN": 7, "SH-PUDONG": 9}
HEADERS = [
    SIM_COLUMNS,
    (*SIM_COLUMNS, "auth_algorithm", "k", "opc"),
    (*SIM_COLUMNS, "auth_algorithm", "k"),
    (*SIM_COLUMNS, "auth_algorithm", "ki"),
    (*SIM_COLUMNS, "auth_algorithm", "ki", "opc"),
]
HEX = "0123456789abcdef"


def _key(rng: random.Random) -> str:
    return "".join(rng.choice(HEX) for _ in range(32))


def _mutate(rng: random.Random, value: str) -> str:
    """``value`` slightly wrong (or not) in one of the ways files go wrong."""
    i = rng.randrange(len(value)) if value else 0
    damage = [
        lambda: value[:-1],
        lambda: value + rng.choice("0a "),
        value.upper,
        lambda: f" {value}",
        lambda: f'"{value}"',
        lambda: value[:i] + rng.choice('x9"\r') + value[i + 1 :],
        lambda: "",
    ]
    return damage[rng.randrange(len(damage))]() if rng.random() < 0.5 else value


def _line(rng: random.Random, columns: tuple[str, ...]) -> str:
    """A stock line for ``columns``: mostly good, often with one or two fields damaged."""
    n = rng.randrange(10**6)
    iccid = factories.make_iccid(n) if rng.random() < 0.9 else factories.make_iccid(n)[:-1] + "0"
    location = rng.choice(["warehouse", "warehouse", "store"])
    store = rng.choice(list(STORES)) if location == "store" else ""
    values = [iccid, factories.make_imsi(n), rng.choice(["physical", "esim"]), location, store]
    values.append(rng.choice(["B1", "", "lot 7", "x" * 64, "x" * 65, "批次"]))
    if len(columns) > len(SIM_COLUMNS):
        algorithm = rng.choice(["milenage", "comp128v1", "comp128v3", ""])
        k = _key(rng) if algorithm else ""
        opc = _key(rng) if algorithm == "milenage" else ""
        values += [algorithm, k] + ([opc] if "opc" in columns else [])
    for _ in range(rng.choice([0, 0, 1, 2])):
        i = rng.randrange(len(values))
        values[i] = _mutate(rng, values[i])
    return ",".join(values) + rng.choice(["\n", "\n", "\r\n", ""])


def _full_way(text: str, columns: tuple[str, ...]) -> Any:
    """What the ordinary parse and checks make of a line (padding retried as the reader does)."""
    raw = one_record(text, len(columns))
    if not isinstance(raw, list):
        return raw
    key_column = columns[7] if len(columns) > len(SIM_COLUMNS) else ""
    checked = _stock_row(raw, STORES, key_column, with_opc="opc" in columns)
    if isinstance(checked, tuple) and any(value != value.strip() for value in raw):
        checked = _stock_row([v.strip() for v in raw], STORES, key_column, with_opc="opc" in columns)
    return checked


def _chunk(rng: random.Random, columns: tuple[str, ...], size: int) -> list[str]:
    """Lines as a file yields them: each ends in a line break (\n or \r\n), but perhaps the last."""
    texts = [_line(rng, columns).rstrip("\r\n") + rng.choice(["\n", "\n", "\r\n"]) for _ in range(size)]
    if texts and rng.random() < 0.5:
        texts[-1] = texts[-1].rstrip("\r\n")
    return texts


class TestStockColumns:
    """The column-wise check of a chunk accepts only rows the full checks accept, with the same values."""

    @pytest.mark.parametrize("columns", HEADERS, ids=lambda c: ",".join(c[6:]) or "no-secrets")
    def test_same_rows_as_the_full_checks_on_random_lines(self, columns: tuple[str, ...]) -> None:
        """On random chunks of good and damaged lines, every row the check passes gets the full checks' row,
        with its store as the store's id, and the plain lines are passed."""
        rng = random.Random(20261203)
        taken = 0
        for size in [0, 1, 2, 7, *[rng.randrange(50, 400) for _ in range(60)]]:
            texts = _chunk(rng, columns, size)
            ok, values = stock_columns(texts, columns, STORES)
            assert len(ok) == size
            assert all(len(column) == size for column in values)
            for i, passed in enumerate(ok.tolist()):
                if not passed:
                    continue
                taken += 1
                row = [column[i] for column in values]
                full = _full_way(texts[i], columns)
                assert full[:6] == [*row[:4], STORES.get(row[4]), row[5]], texts[i]
                if len(columns) > len(SIM_COLUMNS):
                    keys = None if not row[6] else (row[7], (row[8] or None) if "opc" in columns else None)
                    assert full[6:] == [row[6] or None, keys], texts[i]
        assert taken > 3_000  # the column-wise way does carry the plain lines

    @pytest.mark.parametrize("columns", HEADERS, ids=lambda c: ",".join(c[6:]) or "no-secrets")
    def test_every_plain_good_line_passes(self, columns: tuple[str, ...]) -> None:
        """Lines with nothing unusual all pass, in a chunk alone or in one with damaged lines (where the
        whole-column shortcuts fail and the rows are judged one by one)."""
        rng = random.Random(7)
        plain = []
        for n in range(300):
            location = "store" if n % 3 == 0 else "warehouse"
            store = "SH-PUDONG" if location == "store" else ""
            values = [factories.make_iccid(n), factories.make_imsi(n), "esim", location, store, f"B{n}"]
            if len(columns) > len(SIM_COLUMNS):
                milenage = "opc" in columns and columns[7] == "k"
                values += ["milenage" if milenage else "comp128v2", _key(rng)]
                values += [_key(rng) if milenage else ""] if "opc" in columns else []
            plain.append(",".join(values) + "\n")
        assert stock_columns(plain, columns, STORES)[0].all()
        damaged = [*plain, "x" * 20 + ",1" * (len(columns) - 1) + "\n", '"quoted",' + plain[0]]
        assert stock_columns(damaged, columns, STORES)[0].tolist() == [True] * len(plain) + [False, False]

    @pytest.mark.parametrize("postgres", [True, False], ids=["postgresql", "sqlite"])
    def test_a_chunk_without_a_row_to_check(self, postgres: bool) -> None:
        """A chunk of blank lines and lines that cannot be split (or none at all) gives a batch of its
        errors and no row, on either database's form."""
        for texts, errors in (([], []), (["\n", "a,b\n", '"open\n'], [3, 4])):
            batch = _stock_batch(2, texts, columns=SIM_COLUMNS, stores=STORES, postgres=postgres, seal=None)
            assert [(e.line, e.field) for e in batch.errors] == [(n, "row") for n in errors]
            assert (batch.rows, len(batch.lines)) == (len(errors), 0)

    def test_leaves_upper_case_keys_to_the_full_checks(self) -> None:
        """Keys in upper case are good but stored in lower case: the column-wise check leaves them alone."""
        columns = HEADERS[1]
        sim = f"{factories.make_iccid(1)},{factories.make_imsi(1)},esim,warehouse,,B1"
        text = f"{sim},milenage,{'A' * 32},{'b' * 32}\n"
        assert stock_columns([text], columns, STORES)[0].tolist() == [False]
        full = _full_way(text, columns)
        assert full[6:] == ["milenage", ("a" * 32, "b" * 32)]


class TestIccidOk:
    """The column-wise ICCID check agrees with ``iccid_problem``, in uniform and mixed columns."""

    def test_agrees_with_iccid_problem(self) -> None:
        """Valid ICCIDs of 19 and 20 digits pass; a wrong check digit, another prefix, a letter, a wrong
        length or a non-ASCII digit fail; whether the column is uniform or mixed."""
        good19 = [factories.make_iccid(n) for n in range(200)]
        good20 = [with_check for n in range(200) if (with_check := _iccid20(n))]
        bad = [good19[0][:-1] + str((int(good19[0][-1]) + 1) % 10), "79" + good19[1][2:], good19[2][:5] + "a"
               + good19[2][6:], good19[3] + "12", "8" * 18, "٨٩" + good19[4][2:], ""]  # fmt: skip
        for column in (good19, good20, good19 + good20, good19 + bad, bad):
            expected = [iccid_problem(v) is None for v in column]
            assert iccid_ok(column).tolist() == expected


def _iccid20(n: int) -> str:
    body = f"8986{n:015d}"
    return next(body + d for d in "0123456789" if iccid_problem(body + d) is None)


class TestChunkTexts:
    """A reader's chunks of raw lines (``chunk_texts``): each reader its own, numbered as in the file, and a
    file that grew after it was counted is refused."""

    def test_parts_hold_their_chunks_lines(self, tmp_path: Path) -> None:
        """With two readers and chunks of three lines, each reader gets its own chunks, numbered from line 2
        (the header is line 1), blank lines included."""
        path = tmp_path / "f.csv"
        path.write_text(
            "h1,h2\n" + "".join(f"{n},x\n" if n != 4 else "\n" for n in range(10)), encoding="utf-8"
        )
        chunks = [list(chunk_texts(path, 2, Part(3, 4, index, 2))) for index in (0, 1)]
        assert chunks[0] == [(2, ["0,x\n", "1,x\n", "2,x\n"]), (8, ["6,x\n", "7,x\n", "8,x\n"])]
        assert chunks[1] == [(5, ["3,x\n", "\n", "5,x\n"]), (11, ["9,x\n"])]

    def test_a_record_past_the_counted_lines_is_refused(self, tmp_path: Path) -> None:
        """Blank lines past the counted chunks are ignored; a record there means the file grew."""
        path = tmp_path / "f.csv"
        path.write_text("h1,h2\n1,x\n2,x\n\n\n", encoding="utf-8")
        assert list(chunk_texts(path, 2, Part(2, 1))) == [(2, ["1,x\n", "2,x\n"])]
        path.write_text("h1,h2\n1,x\n2,x\n3,x\n", encoding="utf-8")
        with pytest.raises(ImportFileUnreadable, match="line 4 lies past"):
            list(chunk_texts(path, 2, Part(2, 1)))


class TestSealMany:
    """Batch sealing stores what :func:`seal_auth` stores: each value opens, bound to its own SIM."""

    @pytest.fixture
    def vault(self) -> Vault:
        """A vault with a fixed test key."""
        return Vault({"k1": bytes(range(32))})

    def test_values_open_to_what_was_sealed(self, vault: Vault) -> None:
        """Milenage and COMP128 secrets open, with ``open_auth``, to the keys given."""
        secrets = [
            (factories.make_iccid(n), f"{n:032x}", f"{n + 1:032x}" if n % 2 else None) for n in range(50)
        ]
        for (iccid, k, opc), sealed in zip(secrets, seal_many(vault, secrets), strict=True):
            assert sealed.startswith("k1:")
            algorithm = "milenage" if opc else "comp128v3"
            assert open_auth(vault, iccid=iccid, algorithm=algorithm, sealed=sealed) == SimAuth(
                algorithm=algorithm, k=k, opc=opc
            )

    def test_each_value_has_its_own_nonce_and_sim(self, vault: Vault) -> None:
        """Two SIMs with the same keys get different nonces; a value moved to another SIM does not open."""
        first, second = seal_many(vault, [("8986001", "a" * 32, None), ("8986002", "a" * 32, None)])
        assert first.split(":")[1] != second.split(":")[1]
        with pytest.raises(Exception, match="integrity"):
            open_auth(vault, iccid="8986002", algorithm="comp128v1", sealed=first)

    def test_nothing_to_seal(self, vault: Vault) -> None:
        """An empty batch seals nothing."""
        assert seal_many(vault, []) == []


@pytest.fixture
def cli(fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The command on a private database (SQLite, and PostgreSQL when configured)."""
    yield from import_cli(fresh, monkeypatch, tmp_path)


def _sims(cli: ImportCli) -> list[tuple[Any, ...]]:
    with cli.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT id, iccid, imsi, kind, status, location, store_id, batch, auth_algorithm, "
                    "created_at = updated_at, auth_sealed IS NULL FROM sims ORDER BY id"
                )
            )
        ]


class TestWriters:
    """A batch written at once (COPY straight into ``sims`` on PostgreSQL) and one written row by row after
    a conflict store the same columns, with consecutive ids in file order."""

    def test_each_sim_has_its_batchs_time(self, cli: ImportCli) -> None:
        """Written at once or after a conflict, a SIM is in stock and created and updated at its batch's
        time (on PostgreSQL the table's defaults: the transaction's start), between the runs' start and
        end."""
        header = ",".join(SIM_COLUMNS)
        rows = [
            f"{factories.make_iccid(n)},{factories.make_imsi(n)},physical,warehouse,,B1" for n in range(1, 7)
        ]
        started = utcnow()
        assert cli.report("sims", cli.write(header, rows[:3]))[1]["imported"] == 3
        assert cli.report("sims", cli.write(header, rows))[1]["imported"] == 3  # classified: 3 present
        ended = utcnow()
        with cli.sessions() as session:
            sims = list(session.scalars(select(Sim).order_by(Sim.id)))
        assert [s.status for s in sims] == [SimStatus.IN_STOCK] * 6
        assert all(s.created_at == s.updated_at for s in sims)
        first, second = {s.created_at for s in sims[:3]}, {s.created_at for s in sims[3:]}
        assert len(first) == len(second) == 1
        assert started <= first.pop() < second.pop() <= ended

    def test_direct_and_classified_batches_store_the_same_rows(self, cli: ImportCli) -> None:
        """The second file overlaps the first, so its batch is classified; the rows look alike."""
        header = ",".join((*SIM_COLUMNS, "auth_algorithm", "k", "opc"))

        def stock_line(n: int) -> str:
            sim = f"{factories.make_iccid(n)},{factories.make_imsi(n)},physical,warehouse,,B1"
            return f"{sim},comp128v1,{n:032x},"

        code, report = cli.report("sims", cli.write(header, [stock_line(n) for n in range(1, 4)]))
        assert (code, report["imported"]) == (0, 3)
        code, report = cli.report("sims", cli.write(header, [stock_line(n) for n in range(1, 7)]))
        assert (code, report["imported"], report["already_present"]) == (0, 3, 3)
        rows = _sims(cli)
        assert [r[1] for r in rows] == [factories.make_iccid(n) for n in range(1, 7)]
        assert {r[3:] for r in rows} == {
            ("physical", "in_stock", "warehouse", None, "B1", "comp128v1", True, False)
        }
        ids = [r[0] for r in rows]
        assert ids[:3] == list(range(ids[0], ids[0] + 3))
        assert ids[3:] == list(range(ids[3], ids[3] + 3))
        vault = get_vault(cli.settings)
        with cli.engine.connect() as conn:
            for iccid, sealed in conn.execute(text("SELECT iccid, auth_sealed FROM sims")):
                assert open_auth(vault, iccid=iccid, algorithm="comp128v1", sealed=sealed).k is not None


class TestStagedDatabase:
    """The staging database a reader builds for SQLite's writer (``staged_database``)."""

    def test_tables_start_on_the_same_pages_whatever_their_rows(self) -> None:
        """The writer's cached statements read the tables from the pages they found them on in the first
        batch, so every batch's database must place them alike, however many rows each table holds."""

        def roots(first_rows: int) -> list[tuple[str, int]]:
            payload = staged_database(
                ("CREATE TABLE a (k INTEGER PRIMARY KEY, v)", "INSERT INTO a (v) VALUES (?)",
                 [("x" * 100,)] * first_rows),
                ("CREATE TABLE b (k INTEGER PRIMARY KEY, v)", "INSERT INTO b (v) VALUES (?)", [("y",)] * 3),
            )  # fmt: skip
            db = sqlite3.connect(":memory:")
            try:
                db.deserialize(payload)
                return db.execute("SELECT name, rootpage FROM sqlite_master ORDER BY name").fetchall()
            finally:
                db.close()

        assert roots(1) == roots(5000)


class TestStagedRows:
    """A staging table is filled many rows to a statement (``STAGE_ROWS_PER_INSERT``)."""

    @pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 200])
    def test_every_row_lands_whole_and_in_order(self, count: int) -> None:
        """Whatever the number of rows (none, fewer than a statement holds, a whole number of statements, one
        more), the table holds each row once, its values in their columns, in the order given."""
        assert STAGE_ROWS_PER_INSERT == 64
        rows = [(f"v{n}", n, None if n % 3 else b"\x00\x01", n / 2) for n in range(count)]
        create = "CREATE TABLE t (k INTEGER PRIMARY KEY, a, b, c, d)"
        payload = staged_database((create, "INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, ?)", iter(rows)))
        db = sqlite3.connect(":memory:")
        try:
            db.deserialize(payload)
            assert db.execute("SELECT k, a, b, c, d FROM t ORDER BY k").fetchall() == [
                (n + 1, *row) for n, row in enumerate(rows)
            ]
        finally:
            db.close()

    def test_a_row_of_another_width_is_refused(self) -> None:
        """A row with a value too few would shift every value after it into the wrong column: refused."""
        rows = [("a", 1), ("b",), ("c", 3, "x")]
        with pytest.raises(ValueError, match="2 values each"):
            staged_database(("CREATE TABLE t (a, b)", "INSERT INTO t (a, b) VALUES (?, ?)", rows))


class TestForkingReaders:
    """Reader processes (``in_turns``), forked from the main thread only (``may_fork_readers``)."""

    def test_items_dealt_to_readers_come_back_in_order(self) -> None:
        """Each reader makes every third item; taken in turns they arrive in order, each made by a forked
        reader of its own; the sequence ends wherever the items end."""

        def produce(index: int, of: int, total: int) -> Iterator[tuple[int, int]]:
            return ((item, os.getpid()) for item in range(index, total, of))

        for total in (0, 1, 6, 7, 8):
            items = list(in_turns(partial(produce, total=total), readers=3))
            assert [item for item, _ in items] == list(range(total))
            makers = {item % 3: pid for item, pid in items}
            assert os.getpid() not in makers.values()
            assert len(set(makers.values())) == min(total, 3)
            assert all(makers[item % 3] == pid for item, pid in items)
        assert [item for item, _ in in_turns(partial(produce, total=5), readers=0)] == list(range(5))

    def test_readers_run_at_a_lower_priority_than_the_writer(self) -> None:
        """The forked readers yield the cores to the writer (and the database work it waits for): their
        niceness is the writer's plus READER_NICENESS (at most 19); the writer's own is unchanged."""
        writer = os.nice(0)

        def niceness(_index: int, _of: int) -> Iterator[tuple[int, int]]:
            return iter([(os.getpid(), os.nice(0))])

        made = list(in_turns(niceness, readers=2))
        assert len(made) == 2
        assert all(pid != os.getpid() for pid, _ in made)
        assert {nice for _, nice in made} == {min(writer + READER_NICENESS, 19)}
        assert os.nice(0) == writer
        assert list(in_turns(niceness, readers=0)) == [(os.getpid(), writer)]  # in process: untouched

    def test_the_main_thread_forks_and_other_threads_read_in_process(self) -> None:
        """A reader forked from a thread whose siblings are inside SQLite would inherit SQLite's mutexes held
        and wait forever; an import on such a thread reads in its own process instead."""
        seen: list[bool] = []
        thread = threading.Thread(target=lambda: seen.append(may_fork_readers()))
        thread.start()
        thread.join()
        assert seen == [False]
        assert may_fork_readers() is ("fork" in multiprocessing.get_all_start_methods())

        def pids(_index: int, _of: int) -> Iterator[int]:
            return iter([os.getpid()])

        assert list(in_turns(pids, readers=1)) != [os.getpid()]
        made: list[list[int]] = []
        thread = threading.Thread(target=lambda: made.append(list(in_turns(pids, readers=2))))
        thread.start()
        thread.join()
        assert made == [[os.getpid()]]
