"""Migration of lines from an operator's existing system (``simkeep lines import``).

Each good row yields a subscriber (created, or reused by ``subscriber_ref``), an active line, its active SIM,
one SIM-change record (channel ``import``) and the embedded HLR's entry. Document numbers are kept only as a
keyed hash and their last four characters; no message, log or row holds one in clear. The reading,
batching and classification machinery is shared with the SIM stock import (:mod:`simkeep.sims.importer`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache, partial
from itertools import compress, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import phonenumbers
import structlog
from sqlalchemy import Connection, Engine
from stdnum.cn import ric

from simkeep.camara.facts import RELOAD
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.db.engine import set_wal
from simkeep.identifiers import E164, imsi_problem, msisdn_problem
from simkeep.lines.columns import Checked
from simkeep.sims.columns import split_plain
from simkeep.sims.importer import (
    SIM_KINDS,
    SQLITE_STAGE_SCHEMA,
    Batch,
    ImportResult,
    Part,
    RowError,
    RunLedger,
    batches_of,
    bulk_connection,
    check_file,
    chunk_texts,
    copy_text,
    driver,
    fast_iccid_problem,
    gc_paused,
    load_batches,
    one_record,
    pg_reserve_ids,
    readers_for,
    record_run,
    sqlite_next_id,
    sqlite_now,
    sqlite_stage,
    staged_database,
    write_batch,
)

log = structlog.get_logger("simkeep.lines")

LINE_COLUMNS = (
    "subscriber_ref", "real_name", "document_type", "document_number", "contact_email", "contact_phone",
    "language", "msisdn", "plan", "iccid", "imsi", "sim_kind", "activated_at", "last_sim_change_at",
    "last_activity_at",
)  # fmt: skip
DOCUMENT_PURPOSE = "document-number"
#: SQLite: lines per batch (and transaction), twice the SIM import's. Each commit writes every page the
#: batch touched, and a batch of random numbers and document hashes touches most pages of their indexes,
#: so fewer, larger batches write those pages fewer times: 1,000,000 lines, alternating, the writer's CPU
#: 15.4 s against 17.8 s and the run 21.1 s against 23.1 s (five pairs), for 40-66 MB more memory; 200,000
#: gave no more (19.9 s) for 120 MB more.
SQLITE_LINE_BATCH_ROWS = 100_000
#: PostgreSQL: lines per batch, half the SIM import's. Its first load is one transaction anyway; smaller
#: batches start the server sooner (the readers' first batch is ready in half the time) and leave it less
#: to write after the readers have finished, while the readers run below the writer's priority (see
#: :data:`~simkeep.sims.importer.READER_NICENESS`). 1,000,000 lines through the command, alternating with
#: 50,000: shorter in seven of eight pairs, 25.1 s against 26.4 s on average (22-31 s, a drifting hour);
#: 12,500 gave no more (two runs). 100,000 had been slower than 50,000 (23.8 s against 23.2 s, two pairs).
POSTGRES_LINE_BATCH_ROWS = 25_000
NEW_PLAN_INACTIVITY_DAYS = 180
_LANGUAGES = frozenset({"zh-CN", "en"})
_PASSPORT = re.compile(r"^[A-Z0-9]{5,9}\Z")
_RIC_BODY = re.compile(r"^[0-9]{17}[0-9X]\Z")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_CLOCK_SKEW = timedelta(minutes=5)


# --- the checks -------------------------------------------------------------------------------------------


def document_key(secret_key: str) -> bytes:
    """The HMAC key :func:`simkeep.security.keyed_hash` derives for document numbers, computed once."""
    return hmac.new(secret_key.encode(), DOCUMENT_PURPOSE.encode(), hashlib.sha256).digest()


_SHA256_BLOCK = 64


class DocumentHasher:
    """The keyed hash of a document number, as ``hmac.digest(key, number, "sha256").hex()`` gives it.

    HMAC (RFC 2104) hashes the key's inner and outer pads first; here they are hashed once and copied per
    number. ``hmac.digest`` looks the algorithm up again on every call: this costs a third of it.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, number: str) -> str:
        inner = self._inner.copy()
        inner.update(number.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


@lru_cache(maxsize=65536)
def _ric_place_known(region: str, year: int) -> bool:
    try:
        ric.get_birth_place(f"{region}{year:04d}01010000")
    except ric.InvalidComponent:
        return False
    return True


def ric_problem(number: str) -> str | None:
    """Why a compacted CN resident ID is invalid, or None; the same verdicts as ``stdnum.cn.ric.validate``.

    stdnum's region lookup dominates its cost and depends only on the region code and the birth year, so
    it is cached; the other checks are stdnum's own, in stdnum's order.
    """
    if len(number) != 18:
        return "a CN resident ID has 18 characters"
    if not _RIC_BODY.match(number):
        return "a CN resident ID has 17 digits and a check character (0-9 or X)"
    if number[-1] != ric.calc_check_digit(number):
        return "the check character of the CN resident ID is wrong (invalid checksum)"
    year = int(number[6:10])
    try:
        date(year, int(number[10:12]), int(number[12:14]))  # stdnum's get_birth_date, minus its compact()
    except ValueError:
        return "the CN resident ID holds an impossible birth date (invalid component)"
    if not _ric_place_known(number[:6], year):
        return "the CN resident ID holds an unknown region code (invalid component)"
    return None


def compact_ric(value: str) -> str:
    """The resident ID without spaces, as ``stdnum.cn.ric.compact`` writes it."""
    value = value.replace(" ", "")
    return value.upper().strip() if value.isascii() else str(ric.compact(value))


@lru_cache(maxsize=1024)
def _calling_code(digits3: str) -> int | None:
    for size in (1, 2, 3):
        if int(digits3[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(digits3[:size])
    return None


_NumberDesc = tuple[frozenset[int], re.Pattern[str]]
_NUMBER_TYPES = (
    "mobile", "fixed_line", "toll_free", "premium_rate", "shared_cost", "voip", "personal_number", "pager",
    "uan", "voicemail",
)  # fmt: skip


@lru_cache(maxsize=256)
def _number_descs(code: int) -> tuple[_NumberDesc, tuple[_NumberDesc, ...]] | None:
    """phonenumbers' validity test for a calling code that serves one region, compiled once; else None.

    ``phonenumbers.is_valid_number`` accepts a national number that matches the region's general
    description and the description of any number type (each: a possible length, then the full pattern),
    calling several functions per type; this keeps just the lengths and compiled patterns.
    """
    from phonenumbers.phonemetadata import PhoneMetadata

    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if len(regions) != 1 or regions[0] == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        return None
    metadata = PhoneMetadata.metadata_for_region(regions[0], None)
    if metadata is None:
        return None

    def desc(number_desc: Any) -> _NumberDesc | None:
        if number_desc is None or not number_desc.national_number_pattern:
            return None
        return frozenset(number_desc.possible_length), re.compile(number_desc.national_number_pattern)

    general = desc(metadata.general_desc)
    if general is None:
        return None
    types = tuple(d for d in (desc(getattr(metadata, name)) for name in _NUMBER_TYPES) if d is not None)
    return general, types


def _matches(national: str, desc: _NumberDesc) -> bool:
    lengths, pattern = desc
    return (not lengths or len(national) in lengths) and pattern.fullmatch(national) is not None


_MATCHES_NOTHING = re.compile(r"(?!)")


@lru_cache(maxsize=4096)
def _number_pattern(code: int, length: int) -> re.Pattern[str] | None:
    """:func:`_number_descs` for national numbers of ``length`` digits, as one pattern; None as there.

    A number is valid when it matches the general description and one of the number types whose possible
    lengths allow ``length``: a look-ahead for the first, an alternation of the second, one regex call.
    """
    descs = _number_descs(code)
    if descs is None:
        return None
    (lengths, general), types = descs
    alternatives = [f"(?:{p.pattern})" for allowed, p in types if not allowed or length in allowed]
    if (lengths and length not in lengths) or not alternatives:
        return _MATCHES_NOTHING
    try:
        return re.compile(rf"(?=(?:{general.pattern})\Z)(?:{'|'.join(alternatives)})")
    except re.error:  # pragma: no cover - metadata no single regex can hold: test them one by one
        return None


def fast_msisdn_problem(msisdn: str) -> str | None:
    """:func:`simkeep.identifiers.msisdn_problem` without its costly parse on the numbers it accepts.

    An E.164 string is split at its country calling code and checked against that region's compiled
    patterns (:func:`_number_descs`), or else with ``phonenumbers.is_valid_number``; anything that fails is
    judged (and explained) by ``msisdn_problem`` itself.
    """
    if E164.match(msisdn):
        code = _calling_code(msisdn[1:4])
        if code is not None:
            national = msisdn[1 + len(str(code)) :]
            pattern = _number_pattern(code, len(national)) if national[:1] not in {"", "0"} else None
            if pattern is not None:
                return None if pattern.fullmatch(national) else msisdn_problem(msisdn)
            descs = _number_descs(code) if national[:1] not in {"", "0"} else None
            if descs is not None:
                general, types = descs
                if _matches(national, general) and any(_matches(national, d) for d in types):
                    return None
                return msisdn_problem(msisdn)
            number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national or "0"))
            zeros = len(national) - len(national.lstrip("0"))
            if len(national) > 1 and zeros:
                number.italian_leading_zero = True
                zeros = min(zeros, len(national) - 1)
                if zeros != 1:
                    number.number_of_leading_zeros = zeros
            if national and phonenumbers.is_valid_number(number):
                return None
    return msisdn_problem(msisdn)


@lru_cache(maxsize=4096)
def msisdn_prefix_pattern(prefix: str) -> re.Pattern[str] | None:
    """One pattern that fully matches the numbers starting with ``prefix`` (a plus and three digits) that
    :func:`fast_msisdn_problem` accepts through :func:`_number_pattern`, or None where it would need more
    (a calling code that serves several regions, or metadata no single pattern can hold).

    Each national length the E.164 limits allow gets its own alternative, guarded by a look-ahead for that
    length, so one call checks a number as ``_number_pattern(code, len(national))`` would.
    """
    digits = prefix[1:]
    if (
        len(prefix) != 4
        or prefix[0] != "+"
        or not (digits.isascii() and digits.isdigit())
        or digits[0] == "0"
    ):
        return None
    code = _calling_code(digits)
    if code is None or _number_descs(code) is None:
        return None
    size = len(str(code))
    alternatives = []
    for length in range(max(1, 5 - size), 16 - size):  # E.164: 5 to 15 digits in all
        pattern = _number_pattern(code, length)
        if pattern is None:
            return None
        if pattern is not _MATCHES_NOTHING:
            alternatives.append(f"(?=[0-9]{{{length}}}\\Z)(?:{pattern.pattern})")
    if not alternatives:
        return None
    return re.compile(rf"\+{code}(?=[1-9])(?:{'|'.join(alternatives)})")


def parse_timestamp(value: str) -> datetime | str:
    """An aware datetime (in the zone written) from ISO 8601 with a zone, or the reason it is not one."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return "not an ISO 8601 timestamp (like 2024-05-01T08:30:00+08:00)"
    if parsed.tzinfo is None:
        return "needs a time zone (Z or +08:00)"
    return parsed


_UTC_SECONDS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def sqlite_stamp(text: str, parsed: datetime) -> str:
    """``parsed`` (read from ``text``) as SQLAlchemy stores a DateTime on SQLite: naive UTC, microseconds.

    The common ``2024-05-01T00:30:00Z`` is rewritten as text, without datetime arithmetic.
    """
    if _UTC_SECONDS.fullmatch(text):
        return f"{text[:10]} {text[11:19]}.000000"
    return parsed.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def pg_stamp(_text: str, parsed: datetime) -> str:
    """``parsed`` for a PostgreSQL ``timestamptz`` in COPY text: ISO 8601 with its offset."""
    return parsed.isoformat()


def utc_moment(text: str, parsed: datetime) -> str:
    """:func:`sqlite_stamp`, to compare moments: one whose UTC falls off the calendar sorts first or last."""
    try:
        return sqlite_stamp(text, parsed)
    except OverflowError:  # 0001-01-01T00:00:00+08:00 is before every moment the calendar holds in UTC
        return "" if parsed.year == 1 else "~"  # "~" sorts after every digit


_PLAIN_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})T([01][0-9]|2[0-3])(:[0-5][0-9]:[0-5][0-9])(?:Z|([+-])([01][0-9]|2[0-3]):00)"
)


@lru_cache(maxsize=16384)
def _shifted_day(day: str, days: int) -> str | None:
    """The date ``days`` after ``day`` (``YYYY-MM-DD``); None if ``day`` is no date or lies at the ends."""
    try:
        moment = date.fromisoformat(day)
    except ValueError:
        return None
    if not 1 < moment.year < 9999:
        return None
    return (moment + timedelta(days=days)).isoformat()


def utc_text(value: str) -> str | None:
    """:func:`sqlite_stamp` of a plain timestamp (whole seconds, ``Z`` or a whole-hour offset), or None.

    The common forms (``2024-05-01T08:30:00Z``, ``2024-05-01T08:30:00+08:00``) are converted with string
    slicing and a cached date step instead of datetime objects, whose arithmetic, comparison and
    formatting cost several microseconds a value; anything else is left to :func:`parse_timestamp`.
    The text is naive UTC with microseconds, so it also sorts as the moments do.
    """
    found = _PLAIN_TIME.fullmatch(value)
    if found is None:
        return None
    day, hour, rest, sign, offset = found.groups()
    if _shifted_day(day, 0) is None:
        return None
    if sign is None:  # already UTC
        return f"{day} {hour}{rest}.000000"
    h = int(hour) - int(offset) if sign == "+" else int(hour) + int(offset)
    if h < 0:
        day, h = cast(str, _shifted_day(day, -1)), h + 24
    elif h > 23:
        day, h = cast(str, _shifted_day(day, 1)), h - 24
    return f"{day} {h:02d}{rest}.000000"


Stamp = Callable[[str, datetime], str]


class _Line(NamedTuple):
    ref: str
    subscriber: list[Any]  # real_name, document_type, hmac, last4, country, email, phone, language
    msisdn: str
    plan: str
    iccid: str
    imsi: str
    kind: str
    activated_at: str  # each time as the database's writer wants it (see Stamp)
    changed_at: str
    last_activity_at: str | None


def check_line(  # noqa: PLR0911, PLR0912, PLR0915 - one flat check per field reads better than a table
    values: list[str], digest: DocumentHasher, latest: str, stamp: Stamp
) -> _Line | tuple[str, str]:
    """Validate one row's fields; return the normalised line (times written by ``stamp``) or the problem.

    ``latest`` is the latest acceptable moment, written as :func:`sqlite_stamp` writes one (naive UTC).
    """
    (ref, name, doc_type, doc_number, email, phone, language, msisdn, plan, iccid, imsi, kind,
     activated, changed, activity) = values  # fmt: skip
    if not ref or len(ref) > 64 or not ref.isprintable():
        return "subscriber_ref", "required, at most 64 printable characters"
    if not name or len(name) > 200 or not name.isprintable():
        return "real_name", "required, at most 200 printable characters"
    if doc_type == "cn_ric":
        number = compact_ric(doc_number)
        problem = ric_problem(number)
        country = "CHN"
    elif doc_type == "passport":
        number = doc_number.replace(" ", "").upper()
        problem = None if _PASSPORT.match(number) else "a passport number has 5 to 9 letters or digits"
        country = "XXX"  # ICAO 9303: nationality not specified; the source file does not say
    else:
        return "document_type", "must be cn_ric or passport"
    if problem:
        return "document_number", problem
    if email and (len(email) > 254 or not _EMAIL.match(email)):
        return "contact_email", "not an e-mail address"
    problem = fast_msisdn_problem(msisdn)
    if problem:
        return "msisdn", problem
    if phone:
        if phone == msisdn:
            return "contact_phone", "must differ from the line's own number"
        problem = fast_msisdn_problem(phone)
        if problem:
            return "contact_phone", problem
    language = language or "zh-CN"
    if language not in _LANGUAGES:
        return "language", "must be zh-CN or en (empty means zh-CN)"
    if not plan or len(plan) > 32 or not plan.isprintable():
        return "plan", "required, at most 32 printable characters"
    problem = fast_iccid_problem(iccid)
    if problem:
        return "iccid", problem
    problem = imsi_problem(imsi)
    if problem:
        return "imsi", problem
    if kind not in SIM_KINDS:
        return "sim_kind", "must be physical or esim"
    moments: list[str | None] = []  # naive UTC text, which sorts as the moments do
    texts: list[str | None] = []
    for column, value, required in (
        ("activated_at", activated, True),
        ("last_sim_change_at", changed, False),
        ("last_activity_at", activity, False),
    ):
        if not value:
            if required:
                return column, "required"
            moments.append(None)
            texts.append(None)
            continue
        moment = utc_text(value)
        if moment is not None:  # the text each writer wants, as stamp would write it
            text = moment if stamp is sqlite_stamp else value[:19] + "+00:00" if value[19] == "Z" else value
        else:
            parsed = parse_timestamp(value)
            if isinstance(parsed, str):
                return column, parsed
            moment = utc_moment(value, parsed)
            try:
                text = stamp(value, parsed)
            except OverflowError:  # SQLite's naive UTC: before the year 1 (or, in the future, after 9999)
                text = None
        if moment > latest:
            return column, "is in the future"
        if text is None:
            return column, "lies before the year 1 in UTC"
        moments.append(moment)
        texts.append(text)
    activated_at, changed_at, _ = moments
    assert activated_at is not None
    if changed_at is not None and changed_at < activated_at:
        return "last_sim_change_at", "is before activated_at"
    subscriber = [
        name,
        doc_type,
        digest(number),
        number[-4:],
        country,
        email or None,
        phone or None,
        language,
    ]
    activated_text, changed_text, activity_text = texts
    assert activated_text is not None
    return _Line(ref, subscriber, msisdn, plan, iccid, imsi, kind, activated_text,
                 changed_text or activated_text, activity_text)  # fmt: skip


# --- the reader -------------------------------------------------------------------------------------------


class LinesExtra(NamedTuple):
    """What a lines batch carries besides its lines: its subscribers and the plan codes it names."""

    subscribers: str | None  # COPY text (PostgreSQL); None on SQLite, whose payload holds both tables
    plans: frozenset[str]
    #: A first load's: ``hash()`` of each new subscriber's reference, sorted (see LineWriter.holders_new)
    ref_hashes: np.ndarray | None = None


def _serialise(subs: list[Sequence[Any]], lines: list[Sequence[Any]], postgres: bool) -> tuple[Any, Any]:
    """A batch's subscribers and lines, by column, in position order (the subscribers' rows ``k`` first,
    see :func:`_line_batch`): COPY text for PostgreSQL; for SQLite one small database holding both staging
    tables, serialised (see :func:`sqlite_stage`), and None.

    The reader process builds the staging tables, so the writer, whose one core sets the pace on SQLite,
    only attaches them: loading 50,000 rows row by row had been a fifth of its time, and sending them as
    Python lists cost a pickle and an unpickle of every value on top (another fifth, measured).
    """
    if not postgres:
        return staged_database(
            (_SQLITE_STAGE[0], _SQLITE_LOAD_SUBS, zip(*subs, strict=True)),
            (_SQLITE_STAGE[1], _SQLITE_LOAD_LINES, zip(*lines, strict=True)),
        ), None

    # COPY reads these with NULL '' (no value is empty unless absent). No checked value holds a tab, line
    # break or carriage return (names, references and plan codes must be printable; e-mail addresses hold
    # no space), so only a backslash needs COPY's escaping: when the batch has none, as is usual, the
    # free-text values are written as they are.
    def text(columns: list[Sequence[str]], free: tuple[int, ...], *, escape: bool) -> str:
        cells = [map(copy_text, c) if escape and i in free else c for i, c in enumerate(columns)]
        body = "\n".join(map("\t".join, zip(*cells, strict=True)))
        return body + "\n" if body else ""

    line_text, sub_text = text(lines, (2, 4), escape=False), text(subs, (1, 2, 7), escape=False)
    if "\\" in line_text or "\\" in sub_text:
        line_text, sub_text = text(lines, (2, 4), escape=True), text(subs, (1, 2, 7), escape=True)
    return line_text, sub_text


_LINE_FIELDS = len(LINE_COLUMNS)


def check_line_rows(
    path: Path, part: Part, *, key: bytes, postgres: bool, first_load: bool = False
) -> Iterator[Batch]:
    """Parse and validate the migration rows of ``part``; per chunk, a batch of good lines and errors.

    ``first_load``: the batches go to a first load (see :func:`first_load`), which builds the document-hash
    index after the last batch: the subscribers are not put in hash order for it, and each batch carries
    its references' hashes instead (see :meth:`LineWriter.holders_new`).
    """
    moment = utcnow() + _CLOCK_SKEW
    latest = _Latest(sqlite_stamp("", moment), int(moment.timestamp()))
    digest = DocumentHasher(key)
    for first, texts in chunk_texts(path, _LINE_FIELDS, part):
        with gc_paused():
            batch = _line_batch(
                first, texts, digest=digest, latest=latest, postgres=postgres, first_load=first_load
            )
        yield batch


def _split_chunk(first: int, texts: list[str], errors: list[RowError]) -> tuple[list[list[str]], list[int]]:
    """A chunk's rows by column, with their file lines (``first`` is the first text's). Plain lines are
    split at their commas (:func:`~simkeep.sims.columns.split_plain`), the others by the CSV reader
    (:func:`~simkeep.sims.importer.one_record`); blank lines are dropped and a line the reader cannot split
    is reported in ``errors``."""
    plain, columns = split_plain(texts, _LINE_FIELDS)
    numbers = list(range(first, first + len(texts)))
    if plain.all():
        return columns, numbers
    keep = plain.copy()
    for i in np.flatnonzero(~plain).tolist():
        raw = one_record(texts[i], _LINE_FIELDS)
        if isinstance(raw, str):
            errors.append(RowError(first + i, "row", raw))
        elif raw is not None:
            keep[i] = True
            for column, value in zip(columns, raw, strict=True):
                column[i] = value
    if not keep.all():
        kept = keep.tolist()
        columns = [list(compress(column, kept)) for column in columns]
        numbers = list(compress(numbers, kept))
    return columns, numbers


class _Latest(NamedTuple):
    """The latest acceptable moment: as :func:`sqlite_stamp` writes it, and in whole seconds since 1970."""

    text: str
    seconds: int


def _line_batch(
    first: int,
    texts: list[str],
    *,
    digest: DocumentHasher,
    latest: _Latest,
    postgres: bool,
    first_load: bool = False,
) -> Batch:
    """One chunk's good lines with their subscribers, and the errors of its other rows (the chunk's lines
    are ``texts``, the first of them line ``first``).

    The rows are checked column by column (:class:`~simkeep.lines.columns.Checked`), the rest one by one
    (:func:`_good_rows`), and admitted at once unless something repeats (:func:`_admitted`).
    """
    errors: list[RowError] = []
    values, numbers = _split_chunk(first, texts, errors)
    count = len(numbers) + len(errors)
    checked = Checked(
        values, latest=latest.seconds, postgres=postgres, place_known=_ric_place_known,
        phone_pattern=msisdn_prefix_pattern,
    )  # fmt: skip
    columns, numbers = _good_rows(
        checked, values, numbers, errors, digest=digest, latest=latest, postgres=postgres
    )
    admitted = _admitted(columns, numbers)
    if admitted is None:  # a number, SIM or subscriber repeated in the chunk: row by row, as named
        admitted = _admitted_one_by_one(columns, numbers, errors)
    errors.sort(key=lambda error: error.line)
    subs, lines, numbers = admitted
    ref_hashes = None
    if first_load:
        ref_hashes = np.sort(np.fromiter(map(hash, subs[1]), np.int64, len(subs[1])))
    if not first_load:  # index locality for the hash column, which a first load has not yet
        order = sorted(range(len(subs[0])), key=subs[4].__getitem__)
        position = [0] * len(order)
        for new, old in enumerate(order):
            position[old] = new
        lines[1] = list(map(position.__getitem__, lines[1]))
        subs = [list(range(len(order))), *(list(map(column.__getitem__, order)) for column in subs[1:])]
    if postgres:  # COPY text: no value is empty unless absent
        subs[0], subs[7], subs[8] = list(map(str, subs[0])), _or_empty(subs[7]), _or_empty(subs[8])
        lines[0], lines[1] = list(map(str, lines[0])), list(map(str, lines[1]))
        times = [_pg_times(column) for column in lines[8:11]]  # activated, activity, changed
        lines[8:11] = [seconds for seconds, _ in times] + [texts for _, texts in times]
    else:  # SQL values: NULL for an absent one
        subs[7], subs[8] = _or_none(subs[7]), _or_none(subs[8])
    line_payload, sub_payload = _serialise(subs, lines, postgres)
    plans = frozenset(lines[4])
    return Batch(count, errors, array("i", numbers), line_payload, LinesExtra(sub_payload, plans, ref_hashes))


def _good_rows(
    checked: Checked,
    values: list[list[str]],
    numbers: list[int],
    errors: list[RowError],
    *,
    digest: DocumentHasher,
    latest: _Latest,
    postgres: bool,
) -> tuple[list[Sequence[Any]], list[int]]:
    """The good rows of a checked chunk by column (as :data:`_Admitted` lists the subscribers' and lines'
    values) with their file lines; the others' errors are added to ``errors``. ``values`` holds the chunk's
    rows by column, as the file has them.

    A row the column-wise check did not pass is checked by :func:`check_line`, which names the problem or,
    for a row it accepts after all (spaces to strip, a rarer timestamp form), gives its values.
    """
    ok = checked.ok
    slow: dict[int, _Line] = {}
    stamp = pg_stamp if postgres else sqlite_stamp
    for j in np.flatnonzero(~ok).tolist():
        raw = [column[j] for column in values]
        result = check_line(raw, digest, latest.text, stamp)
        if not isinstance(result, _Line) and any(value != value.strip() for value in raw):
            result = check_line([value.strip() for value in raw], digest, latest.text, stamp)
        if isinstance(result, _Line):
            slow[j] = result
        else:
            errors.append(RowError(numbers[j], *result))
    ref, name, doc_type, number, email, phone, _, msisdn, plan, iccid, imsi, kind, *_ = checked.values
    hmacs = {n: digest(n) for n in set(compress(number, ok.tolist()))}
    columns: list[Sequence[Any]] = [
        ref, name, doc_type, list(map(hmacs.get, number)), list(map(_LAST4, number)), checked.country, email,
        phone, checked.language, msisdn, plan, iccid, imsi, kind, checked.activated, checked.changed,
        checked.activity,
    ]  # fmt: skip
    if slow:
        columns = [list(column) for column in columns]
        for j, line in slow.items():
            patched = (line.ref, *line.subscriber, line.msisdn, line.plan, line.iccid, line.imsi, line.kind,
                       line.activated_at, line.changed_at, line.last_activity_at)  # fmt: skip
            for column, value in zip(columns, patched, strict=True):
                column[j] = value  # type: ignore[index]
        ok = ok.copy()
        ok[list(slow)] = True
    if not ok.all():
        good = ok.tolist()
        columns = [list(compress(column, good)) for column in columns]
        numbers = list(compress(numbers, good))
    return columns, numbers


_LAST4 = itemgetter(slice(-4, None))


def _pg_times(values: Sequence[int | str | None]) -> tuple[list[str], list[str]]:
    """A column of times for PostgreSQL's staging table as COPY text: whole seconds since 1970 (a plainly
    good row's) in the first list, timestamp text (a row checked one by one) in the second; empty = NULL."""
    if not any(map(isinstance, values, repeat(str))):
        return list(map(str, values) if None not in values else map(_str, values)), [""] * len(values)
    seconds = ["" if isinstance(v, str) else _str(v) for v in values]
    return seconds, [v if isinstance(v, str) else "" for v in values]


def _str(value: int | str | None) -> str:
    return "" if value is None else str(value)


def _or_empty(values: Sequence[str | None]) -> list[str]:
    return [v or "" for v in values]


def _or_none(values: Sequence[str | None]) -> list[str | None]:
    return [v or None for v in values]


#: A chunk's admitted rows by column: the subscribers (k, ref, real_name, document_type, hmac, last4,
#: country, email, phone, language), the lines (k, sub_k, ref, msisdn, plan, iccid, imsi, kind, activated,
#: activity, changed) and the lines' file lines.
_Admitted = tuple[list[Sequence[Any]], list[Sequence[Any]], list[int]]


def _admitted(columns: list[Sequence[Any]], numbers: list[int]) -> _Admitted | None:
    """Every good row of the chunk, when no number, ICCID or IMSI repeats among them and each subscriber
    reference names one document; else None. The subscribers come in the order they first appear."""
    ref, hmac_, msisdn, plan, iccid, imsi, kind = (columns[k] for k in (0, 3, 9, 10, 11, 12, 13))
    activated, changed, activity = columns[14:]
    n = len(ref)
    if len(set(msisdn)) != n or len(set(iccid)) != n or len(set(imsi)) != n:
        return None
    first = dict(zip(reversed(ref), range(n - 1, -1, -1), strict=True))  # each reference's first row
    if list(map(hmac_.__getitem__, map(first.__getitem__, ref))) != hmac_:
        return None
    firsts = list(map(first.__getitem__, dict.fromkeys(ref)))
    sub_k = dict(zip(map(ref.__getitem__, firsts), range(len(firsts)), strict=True))
    subs = [range(len(firsts)), *(list(map(column.__getitem__, firsts)) for column in columns[:9])]
    lines = [range(n), list(map(sub_k.__getitem__, ref)), ref, msisdn, plan, iccid, imsi, kind, activated,
             activity, changed]  # fmt: skip
    return subs, lines, numbers


def _admitted_one_by_one(
    columns: list[Sequence[Any]], numbers: list[int], errors: list[RowError]
) -> _Admitted:
    """:func:`_admitted` for a chunk with repeats: each row in turn, as :func:`_admit` admits it."""
    subs: list[list[Any]] = []
    lines: list[list[Any]] = []
    admitted: list[int] = []
    refs: dict[str, int] = {}
    seen: dict[str, int] = {}
    for line_no, *values in zip(numbers, *columns, strict=True):
        row = _Line(values[0], values[1:9], *values[9:17])
        problem = _admit(row, line_no, subs, lines, refs, seen)
        if problem is None:
            admitted.append(line_no)
        else:
            errors.append(RowError(line_no, *problem))
    sub_columns: list[Sequence[Any]] = [range(len(subs)), *zip(*subs, strict=True)] if subs else [()] * 10
    line_columns: list[Sequence[Any]] = list(zip(*lines, strict=True)) if lines else [()] * 11
    return sub_columns, line_columns, admitted


def _admit(  # noqa: PLR0917 - a hot-path helper called once per row; keywords would cost measurable time
    row: _Line,
    line_no: int,
    subs: list[list[Any]],
    lines: list[list[Any]],
    refs: dict[str, int],
    seen: dict[str, int],
) -> tuple[str, str] | None:
    """Add a checked row to the batch unless it repeats a number, SIM or subscriber of an earlier line."""
    msisdn, iccid, imsi = "m" + row.msisdn, "c" + row.iccid, "i" + row.imsi
    if msisdn in seen or iccid in seen or imsi in seen:
        for column, value in (("msisdn", msisdn), ("iccid", iccid), ("imsi", imsi)):
            first = seen.get(value)
            if first is not None:
                return column, f"the {column.upper()} is also on line {first}"
    sub_k = refs.get(row.ref)
    if sub_k is None:
        sub_k = refs[row.ref] = len(subs)
        subs.append([row.ref, *row.subscriber])
    elif subs[sub_k][3] != row.subscriber[2]:
        return "document_number", "the subscriber_ref is used by an earlier line with another document"
    seen[msisdn] = seen[iccid] = seen[imsi] = line_no
    lines.append(
        [len(lines), sub_k, row.ref, row.msisdn, row.plan, row.iccid, row.imsi, row.kind, row.activated_at,
         row.last_activity_at, row.changed_at]
    )  # fmt: skip
    return None


# --- the writer -------------------------------------------------------------------------------------------


_NOW = ":now, :now"
#: SQLite: a batch's rows are staged once, in a small database the reader builds (see :func:`_serialise`)
#: and the writer attaches as ``sk_stage`` (see :func:`sqlite_stage`), and every insert reads them from
#: there: the lines feed four inserts, and reading rows out of JSON costs each of them about as much as the
#: insert itself. The statements name the staging tables unqualified, which SQLite resolves to ``sk_stage``.
_SQLITE_STAGE = (
    "CREATE TABLE sk_import_subs (k INTEGER PRIMARY KEY, ref, real_name, document_type, hmac, last4, "
    "country, email, phone, language)",
    "CREATE TABLE sk_import_lines (k INTEGER PRIMARY KEY, sub_k INTEGER, ref, msisdn, plan, iccid, imsi, "
    "kind, activated_at, last_activity_at, changed_at)",
)
_SQLITE_LOAD_SUBS = f"INSERT INTO sk_import_subs VALUES ({', '.join('?' * 10)})"
_SQLITE_LOAD_LINES = f"INSERT INTO sk_import_lines VALUES ({', '.join('?' * 11)})"
_SQLITE_INSERTS = (
    "INSERT INTO subscribers (id, external_ref, real_name, document_type, document_number_hmac, "
    "document_number_last4, document_country, contact_email, contact_phone, language, created_at, "
    "updated_at) SELECT :sb + k, ref, real_name, document_type, hmac, last4, country, email, phone, "
    f"language, {_NOW} FROM sk_import_subs",
    "INSERT INTO sims (id, iccid, imsi, kind, status, location, store_id, batch, created_at, updated_at) "
    f"SELECT :mb + k, iccid, imsi, kind, 'active', 'warehouse', NULL, 'import', {_NOW} FROM sk_import_lines",
    "INSERT INTO lines (id, msisdn, subscriber_id, plan_id, status, sim_id, sim_change_lock, activated_at, "
    "last_activity_at, created_at, updated_at) SELECT :lb + sl.k, sl.msisdn, {sub}, "
    "(SELECT p.id FROM plans AS p WHERE p.code = sl.plan), 'active', :mb + sl.k, 0, sl.activated_at, "
    f"sl.last_activity_at, {_NOW} FROM sk_import_lines AS sl",
    "INSERT INTO sim_changes (id, line_id, new_sim_id, changed_at, channel) "
    "SELECT :cb + k, :lb + k, :mb + k, changed_at, 'import' FROM sk_import_lines",
    "INSERT INTO embedded_hlr_subscribers (imsi, msisdn, network_access_mode, updated_at) "
    "SELECT imsi, msisdn, 'cs+ps', :now FROM sk_import_lines",
)
_SQLITE_SUB_ARITH = ":sb + sl.sub_k"
_SQLITE_SUB_LOOKUP = "(SELECT s.id FROM subscribers AS s WHERE s.external_ref = sl.ref)"
_JSON_SET = "(SELECT value FROM json_each(?))"
_EXISTING_SUBS = (
    "SELECT st.k, s.document_number_hmac = st.hmac FROM sk_import_subs AS st "
    "JOIN subscribers AS s ON s.external_ref = st.ref"
)

_PG_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS sk_import_subs (k integer, ref text, real_name text, document_type "
    "text, hmac text, last4 text, country text, email text, phone text, language text) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS sk_import_lines (k integer, sub_k integer, ref text, msisdn text, "
    "plan text, iccid text, imsi text, kind text, activated_s bigint, activity_s bigint, changed_s bigint, "
    "activated_at timestamptz, last_activity_at timestamptz, changed_at timestamptz) ON COMMIT DELETE ROWS",
)
#: A staged time: whole seconds since 1970 for a plainly good row (COPY reads an integer in a quarter of the
#: time it takes to read timestamp text: 0.36 s against 1.47 s for three columns of a million rows), or
#: the text for a row checked one by one (fractions, rarer offsets; see :func:`_pg_times`).
_PG_ACTIVATED = "COALESCE(sl.activated_at, to_timestamp(sl.activated_s))"
_PG_ACTIVITY = "COALESCE(sl.last_activity_at, to_timestamp(sl.activity_s))"
_PG_CHANGED = "COALESCE(changed_at, to_timestamp(changed_s))"
_PG_LOCK = (
    "LOCK TABLE plans, subscribers, sims, lines, sim_changes, embedded_hlr_subscribers "
    "IN SHARE ROW EXCLUSIVE MODE"
)
_PG_NOW = "%(now)s, %(now)s"
_PG_INSERTS = (
    "INSERT INTO subscribers (id, external_ref, real_name, document_type, document_number_hmac, "
    "document_number_last4, document_country, contact_email, contact_phone, language, created_at, "
    f"updated_at) SELECT %(sb)s + k, ref, real_name, document_type, hmac, last4, country, email, phone, "
    f"language, {_PG_NOW} FROM sk_import_subs",
    "INSERT INTO sims (id, iccid, imsi, kind, status, location, store_id, batch, created_at, updated_at) "
    f"SELECT %(mb)s + k, iccid, imsi, kind, 'active', 'warehouse', NULL, 'import', {_PG_NOW} "
    "FROM sk_import_lines",
    "INSERT INTO lines (id, msisdn, subscriber_id, plan_id, status, sim_id, sim_change_lock, activated_at, "
    "last_activity_at, created_at, updated_at) SELECT %(lb)s + sl.k, sl.msisdn, {sub}, p.id, 'active', "
    f"%(mb)s + sl.k, false, {_PG_ACTIVATED}, {_PG_ACTIVITY}, {_PG_NOW} FROM sk_import_lines AS sl "
    "JOIN plans AS p ON p.code = sl.plan",
    "INSERT INTO sim_changes (id, line_id, new_sim_id, changed_at, channel) "
    f"SELECT %(cb)s + k, %(lb)s + k, %(mb)s + k, {_PG_CHANGED}, 'import' FROM sk_import_lines",
    "INSERT INTO embedded_hlr_subscribers (imsi, msisdn, network_access_mode, updated_at) "
    "SELECT imsi, msisdn, 'cs+ps', %(now)s FROM sk_import_lines",
)
#: The CAMARA change feed's rows for the new lines (migration 0008 writes them by trigger; one per number).
_PG_FEED = (
    "INSERT INTO camara_changes (msisdn, xid) SELECT msisdn, pg_current_xact_id()::text::bigint "
    "FROM sk_import_lines"
)
#: A first load's feed: one row telling the workers to load every line anew (see simkeep.camara.facts).
_PG_FEED_RELOAD = (
    "INSERT INTO camara_changes (msisdn, xid) VALUES (%(reload)s, pg_current_xact_id()::text::bigint)"
)
_PG_SUB_ARITH = "%(sb)s + sl.sub_k"
_PG_SUB_LOOKUP = "(SELECT s.id FROM subscribers AS s WHERE s.external_ref = sl.ref)"
_PROBES = (  # positions of staged lines that existing rows refuse (both databases)
    "SELECT sl.k, l.id, COALESCE(s.iccid = sl.iccid, false) FROM sk_import_lines AS sl "
    "JOIN lines AS l ON l.msisdn = sl.msisdn LEFT JOIN sims AS s ON s.id = l.sim_id",
    "SELECT sl.k, s.id FROM sk_import_lines AS sl JOIN sims AS s ON s.iccid = sl.iccid",
    "SELECT sl.k, s.id FROM sk_import_lines AS sl JOIN sims AS s ON s.imsi = sl.imsi AND s.iccid <> sl.iccid",
    "SELECT sl.k FROM sk_import_lines AS sl JOIN embedded_hlr_subscribers AS h ON h.imsi = sl.imsi "
    "UNION SELECT sl.k FROM sk_import_lines AS sl JOIN embedded_hlr_subscribers AS h ON h.msisdn = sl.msisdn",
)
_OTHER_DOCUMENT = "the subscriber_ref already belongs to a subscriber with another document"


def _any_in(values: np.ndarray, sorted_values: np.ndarray) -> bool:
    """Whether any of ``values`` is in ``sorted_values`` (sorted)."""
    if not len(values) or not len(sorted_values):
        return False
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return bool((sorted_values[at] == values).any())


class _Found(NamedTuple):
    """Existing rows that collide with a batch's lines, by position in the batch."""

    msisdn: dict[int, tuple[int, bool]]  # line id, and whether that line's SIM has the same ICCID
    iccid: dict[int, int]  # SIM id
    imsi: dict[int, int]  # SIM id (another ICCID)
    hlr: set[int]


class LineWriter:
    """Writes batches of migrated lines, one transaction each, classifying rows a unique key refuses."""

    def __init__(self, conn: Connection, *, replica: bool = False) -> None:
        from sqlalchemy import select

        from simkeep.models import Plan

        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.replica = replica and self.postgres  # PostgreSQL: skip the foreign-key triggers of the inserts
        self.first_load = False  # set inside first_load(): one transaction, the indexes built after
        self.line_ledger = RunLedger()
        self.sim_ledger = RunLedger()
        self.created_plans: list[str] = []
        self._load_refs: list[np.ndarray] = []  # a first load's references, by hash, batch by batch
        self._holders_before: bool | None = None  # whether a first load began with subscribers
        with conn.begin():
            self.plans = dict(conn.execute(select(Plan.code, Plan.id)).all())

    def write(self, batch: Batch) -> tuple[int, int, list[RowError]]:
        """Insert one batch; return (imported, already present, errors)."""
        if not batch.lines:
            return 0, 0, []
        if not self.postgres:  # the staging tables the reader built, in place of the batch before
            driver(self.conn).deserialize(batch.payload, name=SQLITE_STAGE_SCHEMA)
        if self.first_load:  # inside the load's one transaction (see first_load)
            return self._write(driver(self.conn).cursor(), batch)
        return write_batch(
            self.conn, lambda cur: self._write(cur, batch), save=self._save, restore=self._restore
        )

    def _write(self, cur: Any, batch: Batch) -> tuple[int, int, list[RowError]]:
        known = len(self.created_plans)
        outcome = self._write_pg(cur, batch) if self.postgres else self._write_sqlite(cur, batch)
        if len(self.created_plans) > known and (outcome[1] or outcome[2]):
            self._drop_unused_plans(cur, self.created_plans[known:])
        return outcome

    def _save(self) -> tuple[int, int, dict[str, int], list[str]]:
        return self.line_ledger.mark(), self.sim_ledger.mark(), dict(self.plans), list(self.created_plans)

    def _restore(self, saved: tuple[int, int, dict[str, int], list[str]]) -> None:
        lines, sims, self.plans, self.created_plans = saved
        self.line_ledger.rewind(lines)
        self.sim_ledger.rewind(sims)

    def _drop_unused_plans(self, cur: Any, codes: list[str]) -> None:
        """Remove plans this batch created for rows that were then refused: a refused row leaves no trace."""
        mark = "%s" if self.postgres else "?"
        for code in codes:
            cur.execute(f"SELECT 1 FROM lines WHERE plan_id = {mark} LIMIT 1", (self.plans[code],))
            if cur.fetchone() is None:
                cur.execute(f"DELETE FROM plans WHERE id = {mark}", (self.plans.pop(code),))
                self.created_plans.remove(code)

    def _ensure_plans(self, cur: Any, codes: frozenset[str], now: Any) -> None:
        """The batch's plan codes, created where no plan has them. Called with the tables locked (the write
        transaction on SQLite): a plan another import or a user created since this run started is found
        here and used, not created a second time."""
        mark = "%s" if self.postgres else "?"
        for code in sorted(codes - self.plans.keys()):
            cur.execute(f"SELECT id FROM plans WHERE code = {mark}", (code,))
            found = cur.fetchone()
            if found is not None:
                self.plans[code] = int(found[0])
                continue
            if self.postgres:
                cur.execute(
                    "INSERT INTO plans (code, name, inactivity_days, created_at) "
                    "VALUES (%s, %s, %s, %s) RETURNING id",
                    (code, code, NEW_PLAN_INACTIVITY_DAYS, now),
                )
                self.plans[code] = int(cur.fetchone()[0])
            else:
                self.plans[code] = sqlite_next_id(cur, "plans")
                cur.execute(
                    "INSERT INTO plans (id, code, name, inactivity_days, created_at) VALUES (?, ?, ?, ?, ?)",
                    (self.plans[code], code, code, NEW_PLAN_INACTIVITY_DAYS, now),
                )
            self.created_plans.append(code)

    def _write_sqlite(self, cur: Any, batch: Batch) -> tuple[int, int, list[RowError]]:
        import sqlite3

        extra: LinesExtra = batch.extra
        now = sqlite_now()
        self._ensure_plans(cur, extra.plans, now)
        existing: dict[int, bool] = {}
        if not self.holders_new(cur, extra.ref_hashes):
            cur.execute(_EXISTING_SUBS)
            existing = {int(k): bool(same) for k, same in cur}
        errors: list[RowError] = []
        refused: list[int] = []
        if not all(existing.values()):
            bad = json.dumps([k for k, same in existing.items() if not same])
            cur.execute(f"SELECT k FROM sk_import_lines WHERE sub_k IN {_JSON_SET}", (bad,))
            refused = [k for (k,) in cur.fetchall()]
            errors = [RowError(batch.lines[k], "document_number", _OTHER_DOCUMENT) for k in refused]
            cur.execute(f"DELETE FROM sk_import_lines WHERE sub_k IN {_JSON_SET}", (bad,))
        if existing:
            cur.execute(f"DELETE FROM sk_import_subs WHERE k IN {_JSON_SET}", (json.dumps(list(existing)),))
        p: dict[str, Any] = {"now": now}
        for name, table in (("sb", "subscribers"), ("mb", "sims"), ("lb", "lines"), ("cb", "sim_changes")):
            p[name] = sqlite_next_id(cur, table)
        n = len(batch.lines)
        drop: set[int] = set()
        present, more = 0, list[RowError]()
        if self.first_load:  # a key a kept index refuses ends the load: see first_load
            self._insert_sqlite(cur, p, lookup=bool(existing))
            self.line_ledger.add(p["lb"], batch.lines, set(refused))
            self.sim_ledger.add(p["mb"], batch.lines, set(refused))
            return n - len(errors), 0, errors
        cur.execute("SAVEPOINT sk_batch")
        try:
            self._insert_sqlite(cur, p, lookup=bool(existing))
        except sqlite3.IntegrityError:
            cur.execute("ROLLBACK TO sk_batch")
            drop, present, more = self._classify(batch.lines, self._probe(cur))
            cur.execute(f"DELETE FROM sk_import_lines WHERE k IN {_JSON_SET}", (json.dumps(sorted(drop)),))
            cur.execute("DELETE FROM sk_import_subs WHERE k NOT IN (SELECT sub_k FROM sk_import_lines)")
            self._insert_sqlite(cur, p, lookup=True)
        cur.execute("RELEASE sk_batch")
        # ids are base + position: a refused row leaves a gap, which another run may fill
        self.line_ledger.add(p["lb"], batch.lines, drop.union(refused))
        self.sim_ledger.add(p["mb"], batch.lines, drop.union(refused))
        return n - len(errors) - len(drop), present, errors + more

    @staticmethod
    def _insert_sqlite(cur: Any, p: dict[str, Any], *, lookup: bool) -> None:
        for sql in _SQLITE_INSERTS:
            cur.execute(sql.replace("{sub}", _SQLITE_SUB_LOOKUP if lookup else _SQLITE_SUB_ARITH), p)

    @staticmethod
    def _probe(cur: Any) -> _Found:
        """The existing rows that refuse staged lines (both databases: the same SQL)."""
        found = []
        for sql in _PROBES:
            cur.execute(sql)
            found.append(cur.fetchall())
        return _Found(
            {k: (lid, bool(same)) for k, lid, same in found[0]},
            dict(found[1]),
            dict(found[2]),
            {k for (k,) in found[3]},
        )

    def _write_pg(self, cur: Any, batch: Batch) -> tuple[int, int, list[RowError]]:
        import psycopg

        extra: LinesExtra = batch.extra
        assert extra.subscribers is not None  # COPY text on PostgreSQL
        now = utcnow()
        cur.execute("SET LOCAL client_min_messages = warning")
        for ddl in _PG_STAGE:
            cur.execute(ddl)
        if self.first_load:  # one transaction for every batch: the rows staged before are still there
            cur.execute("TRUNCATE sk_import_subs, sk_import_lines")
        cur.execute(_PG_LOCK)
        self._ensure_plans(cur, extra.plans, now)
        with cur.copy("COPY sk_import_subs FROM STDIN (NULL '')") as copy:
            copy.write(extra.subscribers)
        with cur.copy("COPY sk_import_lines FROM STDIN (NULL '')") as copy:
            copy.write(batch.payload)
        _index_joins(cur, on=True)
        existing: dict[int, bool] = {}
        if not self.holders_new(cur, extra.ref_hashes):
            cur.execute(_EXISTING_SUBS)
            existing = dict(cur.fetchall())
        errors: list[RowError] = []
        if not all(existing.values()):
            bad = [k for k, same in existing.items() if not same]
            cur.execute("DELETE FROM sk_import_lines WHERE sub_k = ANY(%s) RETURNING k", (bad,))
            errors = [RowError(batch.lines[k], "document_number", _OTHER_DOCUMENT) for (k,) in cur]
        if existing:
            cur.execute("DELETE FROM sk_import_subs WHERE k = ANY(%s)", (list(existing),))
        n = len(batch.lines)
        p: dict[str, Any] = {
            "now": now,
            "sb": pg_reserve_ids(cur, "subscribers", extra.subscribers.count("\n")),
        }
        for name, table in (("mb", "sims"), ("lb", "lines"), ("cb", "sim_changes")):
            # a first load began with no line, so with no SIM change (each names its line): every row of
            # sim_changes is the load's own, whose primary key is dropped until the end
            p[name] = pg_reserve_ids(
                cur, table, n, past_rows=not (self.first_load and table == "sim_changes")
            )
        self.line_ledger.add(p["lb"], batch.lines)
        self.sim_ledger.add(p["mb"], batch.lines)
        _index_joins(cur, on=False)
        if self.first_load:  # keys are checked when the indexes are built again: see first_load
            self._insert_pg(cur, p, lookup=bool(existing))
            return n - len(errors), 0, errors
        cur.execute("SAVEPOINT sk_batch")
        try:
            self._insert_pg(cur, p, lookup=bool(existing))
            return n - len(errors), 0, errors
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT sk_batch")
        _index_joins(cur, on=True)
        found = self._probe(cur)
        _index_joins(cur, on=False)
        drop, present, more = self._classify(batch.lines, found)
        cur.execute("DELETE FROM sk_import_lines WHERE k = ANY(%s)", (sorted(drop),))
        cur.execute(
            "DELETE FROM sk_import_subs AS ss WHERE NOT EXISTS "
            "(SELECT 1 FROM sk_import_lines AS sl WHERE sl.sub_k = ss.k)"
        )
        self._insert_pg(cur, p, lookup=True)
        return n - len(errors) - len(drop), present, errors + more

    def holders_new(self, cur: Any, hashes: np.ndarray | None) -> bool:
        """Whether no subscriber reference of a first load's batch can be held yet, so that the batch need
        not look its references up (0.8 s of the server's time a million lines).

        In a first load that began with no subscriber, only an earlier batch of the load can hold one: each
        batch brings its references' ``hash()`` values (the readers are forked from this process, or run in
        it, so equal references hash alike), and the batch is looked up when one of them is among the
        earlier batches' (a collision only costs the lookup). Elsewhere, False: look up.
        """
        if not self.first_load or hashes is None:
            return False
        if self._holders_before is None:
            cur.execute("SELECT EXISTS (SELECT 1 FROM subscribers)")
            self._holders_before = bool(cur.fetchone()[0])
        new = not self._holders_before and not any(_any_in(hashes, seen) for seen in self._load_refs)
        self._load_refs.append(hashes)
        return new

    def _insert_pg(self, cur: Any, p: dict[str, Any], *, lookup: bool) -> None:
        if self.replica:
            cur.execute("SET LOCAL session_replication_role = replica")
        for sql in _PG_INSERTS:
            cur.execute(sql.replace("{sub}", _PG_SUB_LOOKUP if lookup else _PG_SUB_ARITH), p)
        if self.replica and self.first_load:  # a million rows in the feed would cost more than a reload
            cur.execute(_PG_FEED_RELOAD, {"reload": RELOAD})
        elif self.replica:
            cur.execute(_PG_FEED)  # what the triggers the replica role skipped would have written
            cur.execute("SET LOCAL session_replication_role = origin")

    def _classify(self, lines: array[int], found: _Found) -> tuple[set[int], int, list[RowError]]:
        """Which rows (by position) not to insert, how many are already present, and the errors."""
        drop: set[int] = set()
        present = 0
        errors: list[RowError] = []

        def reject(k: int, column: str, ledger: RunLedger, row_id: int | None, reason: str) -> None:
            drop.add(k)
            earlier = None if row_id is None else ledger.line_of(row_id)
            if earlier is not None:
                reason = f"the {column.upper()} is also on line {earlier}"
            errors.append(RowError(lines[k], column, reason))

        for k, (line_id, same_sim) in found.msisdn.items():
            if same_sim and self.line_ledger.line_of(line_id) is None:
                drop.add(k)
                present += 1
            else:
                reject(
                    k, "msisdn", self.line_ledger, line_id, "the number is already a line with another SIM"
                )
        for k, sim_id in found.iccid.items():
            if k not in drop:
                reject(k, "iccid", self.sim_ledger, sim_id, "the ICCID is already in the SIM table")
        for k, sim_id in found.imsi.items():
            if k not in drop:
                reject(k, "imsi", self.sim_ledger, sim_id, "the IMSI already belongs to another SIM")
        for k in found.hlr:
            if k not in drop:
                reject(k, "imsi", self.sim_ledger, None, "the embedded HLR already has this IMSI or number")
        return drop, present, errors


#: The smallest file (in lines) that a PostgreSQL import into an empty ``lines`` table loads as a first load.
FIRST_LOAD_MIN_ROWS = 100_000
#: The tables a first load locks against every other session, and whose secondary indexes it builds after.
#: Not ``camara_changes``, whose feed the API workers poll all the time: their polls go on (they do not see
#: the load's rows before it commits), and its one secondary index costs little to keep.
_FIRST_LOAD_TABLES = ("subscribers", "sims", "lines", "sim_changes", "embedded_hlr_subscribers")
#: Indexes a first load keeps: the import looks subscribers up by their reference.
_FIRST_LOAD_KEEPS = ("uq_subscribers_external_ref",)
#: Each droppable index of the tables (not one a foreign key refers to; primary keys included, as those of
#: ``sim_changes`` and the embedded HLR, whose IMSIs come in random order): its table, its name, whether a
#: constraint owns it, and the definition that builds it again.
_PG_SECONDARY_INDEXES = (
    "SELECT t.oid::regclass::text, c.relname, k.oid IS NOT NULL, "
    "COALESCE(pg_get_constraintdef(k.oid), pg_get_indexdef(i.indexrelid)) "
    "FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_class AS t ON t.oid = i.indrelid "
    "LEFT JOIN pg_constraint AS k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid "
    "AND k.contype IN ('p', 'u', 'x') "
    "WHERE i.indrelid = ANY(%s::regclass[]) AND c.relname <> ALL(%s) "
    "AND NOT EXISTS (SELECT 1 FROM pg_constraint AS f WHERE f.contype = 'f' AND f.conindid = i.indexrelid) "
    "ORDER BY 1, 2"
)
_FIRST_LOAD_SORT_MEMORY_KB = 256 * 1024


class FirstLoadConflict(Exception):
    """A first load met a row that a unique key refuses; it was rolled back whole (see :func:`first_load`)."""


@contextmanager
def first_load(conn: Connection, *, wanted: bool) -> Iterator[bool]:
    """Whether this import is a first load: when ``wanted`` (a file of at least :data:`FIRST_LOAD_MIN_ROWS`
    lines), while no line exists yet. That is an operator's first migration.

    On SQLite see :func:`_sqlite_first_load`: one write transaction that drops the numbers' keys, the
    document-hash index and the change feed's trigger on new lines. On PostgreSQL a first load runs in one
    transaction that locks the tables it writes against every other session (readers too; ``plans``
    against writers only), drops their indexes (unique keys and the primary keys of ``sim_changes`` and the
    embedded HLR included, but not the keys a foreign key refers to or the subscriber reference the import
    looks up), loads every batch, and builds the indexes again before it commits: building an index sorts
    its rows once, where inserting a million rows one by one into a dozen indexes cost the server a third
    of the import's time.

    Where the import may skip the tables' triggers (the replica role), the CAMARA change feed gets one
    :data:`~simkeep.camara.facts.RELOAD` row a batch instead of a row per line: the API workers load every
    line anew (a few seconds a million lines), where a row per number cost the load 3.4 s a million lines
    and the workers a re-read of each number.

    It is optimistic and all or nothing. Rows repeated within a batch are refused before the database sees
    them, as always; a key that an existing row or an earlier batch already holds is only found when a key
    left in place refuses an insert or a dropped one cannot be built again. Then the whole load is rolled
    back, indexes included, and :class:`FirstLoadConflict` is raised, for the import to run again batch by
    batch, which names every refused row. So is a failure or an interruption anywhere: the database is left
    as it was. Elsewhere, and for a role that may not drop the indexes, this yields False and changes
    nothing.
    """
    if wanted and conn.dialect.name == "sqlite":
        with _sqlite_first_load(conn) as first:
            yield first
        return
    if not wanted or conn.dialect.name != "postgresql":
        yield False
        return
    import psycopg

    transaction = conn.begin()
    cur = driver(conn).cursor()
    rebuild: list[str] = []
    try:
        cur.execute(_PG_LOCK)  # plans stay readable
        cur.execute(f"LOCK TABLE {', '.join(_FIRST_LOAD_TABLES)} IN ACCESS EXCLUSIVE MODE")
        cur.execute("SELECT EXISTS (SELECT 1 FROM lines)")
        if not cur.fetchone()[0]:
            cur.execute(_PG_SECONDARY_INDEXES, (list(_FIRST_LOAD_TABLES), list(_FIRST_LOAD_KEEPS)))
            for table, name, constraint, definition in cur.fetchall():
                if constraint:
                    cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                    rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                else:
                    cur.execute(f'DROP INDEX "{name}"')
                    rebuild.append(definition)
    except psycopg.Error:  # pragma: no cover - a role that may not lock or drop them
        rebuild = []
    if not rebuild:
        transaction.rollback()
        yield False
        return
    try:
        yield True
        cur.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'maintenance_work_mem'")
        if int(cur.fetchone()[0]) < _FIRST_LOAD_SORT_MEMORY_KB:
            cur.execute(f"SET LOCAL maintenance_work_mem = '{_FIRST_LOAD_SORT_MEMORY_KB}kB'")
        for ddl in rebuild:
            cur.execute(ddl)
    except psycopg.errors.UniqueViolation as exc:
        transaction.rollback()
        raise FirstLoadConflict(str(exc).splitlines()[0]) from exc
    except BaseException:
        transaction.rollback()
        raise
    transaction.commit()


#: SQLite: the indexes a first load drops and builds again, those whose keys come in no order the load can
#: know: the numbers' keys (migration 0022 made them indexes of their own; they had been keys of ``CREATE
#: TABLE``, which no statement but a copy of the table drops) and the document hashes. The other indexes
#: are kept up as the rows come: their keys grow with the rows' ids, so each batch adds to their ends,
#: while the writer would otherwise wait for the readers' next batch; building them after the load would be
#: a sort of a million keys each with a core idle.
_SQLITE_FIRST_LOAD_DROPS = (
    "uq_lines_msisdn",
    "uq_embedded_hlr_subscribers_msisdn",
    "ix_subscribers_document_number_hmac",
)
_SQLITE_SECONDARY_INDEXES = (
    "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL "
    f"AND name IN ({', '.join(repr(n) for n in _SQLITE_FIRST_LOAD_DROPS)}) ORDER BY tbl_name, name"
)
#: SQLite: the change feed's trigger on new lines, which a first load leaves out (one reload row instead).
_SQLITE_FEED_TRIGGER = "camara_changes_line_insert"
_SQLITE_RELOAD_ROW = "INSERT INTO camara_changes (msisdn) SELECT ? WHERE EXISTS (SELECT 1 FROM lines)"


@contextmanager
def _sqlite_first_load(conn: Connection) -> Iterator[bool]:
    """:func:`first_load` on SQLite: one write transaction while ``lines`` is empty. It drops the indexes of
    :data:`_SQLITE_FIRST_LOAD_DROPS` and the change feed's trigger on new lines, and makes them
    again before it commits, with one :data:`~simkeep.camara.facts.RELOAD` row in the feed. A key the kept
    indexes refuse during the load, or a dropped unique index that cannot be built again, rolls the load
    back whole and raises :class:`FirstLoadConflict`.

    Where no other connection has the database open, the load writes through a rollback journal
    (:func:`_sqlite_alone`); other connections then wait for it. Otherwise it writes through the WAL, as
    every transaction does: other connections read the database as it was until the commit, and a writer
    waits for the write lock (its busy timeout) as it waits for any transaction; the WAL file, grown to the
    size of the load, is truncated after the commit.
    """
    import sqlite3

    cur = driver(conn).cursor()
    if cur.execute("SELECT EXISTS (SELECT 1 FROM lines)").fetchone()[0]:
        yield False
        return
    with _sqlite_alone(cur):
        transaction = conn.begin()
        try:
            cur.execute("SELECT EXISTS (SELECT 1 FROM lines)")
            if cur.fetchone()[0]:  # lines came between the two looks
                transaction.rollback()
                yield False
                return
            rebuild = cur.execute(_SQLITE_SECONDARY_INDEXES).fetchall()
            trigger = cur.execute(
                "SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?", (_SQLITE_FEED_TRIGGER,)
            ).fetchone()
            for name, _ in rebuild:
                cur.execute(f'DROP INDEX "{name}"')
            if trigger is not None:
                cur.execute(f'DROP TRIGGER "{_SQLITE_FEED_TRIGGER}"')
        except BaseException:
            transaction.rollback()
            raise
        try:
            yield True
            for _, ddl in rebuild:
                cur.execute(ddl)
            if trigger is not None:
                cur.execute(trigger[0])
                cur.execute(_SQLITE_RELOAD_ROW, (RELOAD,))
        except sqlite3.IntegrityError as exc:
            transaction.rollback()
            raise FirstLoadConflict(str(exc)) from exc
        except BaseException:
            transaction.rollback()
            raise
        try:
            transaction.commit()
        except BaseException:  # through a rollback journal the commit may wait for a read, and give up
            if cur.connection.in_transaction:  # SQLAlchemy counts the transaction as ended; SQLite does not
                cur.execute("ROLLBACK")
            raise
    # Through the WAL, the commit's checkpoint copied the load into the database file, but the WAL file keeps
    # its size (the whole load) until every connection closes; a server's connections may stay open for days.
    # (Through a rollback journal the WAL file is new and empty: the checkpoint costs nothing.)
    cur.execute("PRAGMA main.wal_checkpoint(TRUNCATE)")  # not all schemas: the staging one refuses it


#: SQLite: how long a first load written through a rollback journal waits for another connection's read to
#: end before it writes to the database file (a spill of its page cache, its commit), and for the switch
#: back to WAL (milliseconds).
SQLITE_ALONE_WAIT_MS = 30_000


@contextmanager
def _sqlite_alone(cur: Any) -> Iterator[bool]:
    """SQLite: while no other connection has the database open, switch it from WAL to a rollback journal
    (``DELETE``) for what runs inside, with ``synchronous = FULL``, and back to WAL after; yields whether it
    did.

    In WAL mode a first load writes the whole load twice: into the WAL file, then, at the commit's
    checkpoint, into the database file, with one core idle (the commit took 7-8 s of a million lines' 35-40
    s). Through a rollback journal the pages it adds at the end of the file go straight there, unjournaled;
    only the pages it changes in place are journaled (their old content), which a rollback or the next
    connection after a crash (a hot journal) writes back. Measured through the command, a million lines:
    19.6-21.3 s against 24.7-26.2 s, the kernel's share of the CPU 3.9-4.5 s against 9.2-10.5 s.

    SQLite leaves WAL only with no other connection open (a server's connections keep the database in WAL
    mode; the load then writes through the WAL). Meanwhile other connections wait: a connection of simkeep
    cannot even open (it sets WAL mode, which takes the whole database), and another program's read waits
    from the load's first write to the database file, which comes once its page cache is full. The load in
    turn waits up to :data:`SQLITE_ALONE_WAIT_MS` for such a read to end before it writes. If the database
    cannot be switched back (a read that long), the next connection of simkeep switches it.
    """
    import sqlite3

    if cur.execute("PRAGMA main.journal_mode").fetchone()[0] != "wal":
        yield False
        return
    try:
        cur.execute("PRAGMA main.journal_mode = DELETE")
    except sqlite3.OperationalError:  # another connection has the database open: it reads on, from the WAL
        yield False
        return
    synchronous = cur.execute("PRAGMA main.synchronous").fetchone()[0]
    busy_timeout = cur.execute("PRAGMA busy_timeout").fetchone()[0]
    cur.execute("PRAGMA main.synchronous = FULL")  # NORMAL is safe for WAL only
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_ALONE_WAIT_MS}")
    try:
        yield True
    finally:
        try:
            set_wal(cur, SQLITE_ALONE_WAIT_MS / 1000)
        except sqlite3.OperationalError as exc:
            log.warning(
                "sqlite_wal_not_restored", reason=str(exc), note="simkeep sets WAL mode as it next opens it"
            )
        cur.execute(f"PRAGMA main.synchronous = {int(synchronous)}")
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")


def _index_joins(cur: Any, *, on: bool) -> None:
    """Make the planner probe indexes for the small staging tables instead of scanning whole tables."""
    setting = "off" if on else "on"
    cur.execute(f"SET LOCAL enable_hashjoin = {setting}")
    cur.execute(f"SET LOCAL enable_mergejoin = {setting}")


def import_lines(
    engine: Engine,
    settings: Settings,
    path: Path,
    *,
    actor: str = "cli",
    batch_rows: int | None = None,
    parallel: bool | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import lines from ``path``; raises :class:`ImportFileUnreadable` before writing anything.

    ``batch_rows``: lines per batch; by default :data:`SQLITE_LINE_BATCH_ROWS` on SQLite, else
    :data:`POSTGRES_LINE_BATCH_ROWS`.
    """
    started = time.perf_counter()
    if batch_rows is None:
        batch_rows = SQLITE_LINE_BATCH_ROWS if engine.dialect.name == "sqlite" else POSTGRES_LINE_BATCH_ROWS
    total = check_file(path, LINE_COLUMNS)
    load = partial(
        _load_lines, engine, path, total, document_key(settings.secret_key), batch_rows, parallel, on_progress
    )
    try:
        result = load(first=True)
    except FirstLoadConflict:  # a key repeated across batches or already held: batch by batch, as named
        result = load(first=False)
    result.seconds = time.perf_counter() - started
    record_run(engine, actor=actor, action="lines.imported", result=result)
    return result


def _load_lines(  # noqa: PLR0917 - the arguments of import_lines, bound once for both attempts
    engine: Engine,
    path: Path,
    total: int,
    key: bytes,
    batch_rows: int,
    parallel: bool | None,
    on_progress: Callable[[int, int], None] | None,
    *,
    first: bool,
) -> ImportResult:
    """One pass over the file: a first load if ``first`` and :func:`first_load` agree, else batch by batch."""
    result = ImportResult(file=str(path))
    with (
        engine.connect() as conn,
        bulk_connection(conn, own_references=True) as replica,
        sqlite_stage(conn),
    ):
        writer = LineWriter(conn, replica=replica)
        postgres = writer.postgres

        def read(part: Part) -> Iterator[Batch]:  # called once the load knows whether it is a first load
            return check_line_rows(path, part, key=key, postgres=postgres, first_load=writer.first_load)

        batches = batches_of(
            read, total_lines=total, batch_rows=batch_rows, readers=readers_for(path, parallel)
        )
        wanted = first and total >= FIRST_LOAD_MIN_ROWS
        with closing(batches), first_load(conn, wanted=wanted) as writer.first_load:
            load_batches(result, batches, writer, on_progress, total)
        result.created_plans = writer.created_plans
    return result
