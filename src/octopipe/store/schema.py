"""The ledger's schema: named, ordered migrations and the checks made before a file is used.

A ledger file is identified by ``PRAGMA application_id`` (``OCTP``). Applied migrations are
recorded by name in the ``migrations`` table and counted in ``PRAGMA user_version``. Opening a
file then means, in order:

1. the file exists, is not empty, starts with the SQLite header and is as long as its header
   says (a truncated copy is refused before SQLite reads a page of it);
2. it is an octopipe ledger (application id);
3. its migrations are a prefix of ``MIGRATIONS``: unknown names or a higher version mean a
   newer octopipe wrote it, and we refuse rather than guess;
4. missing migrations are applied, each in its own transaction (read-write opens only).

Every failure is a :class:`StoreError` naming the file and what is wrong. Migrations are
append-only: never edit or reorder a released one, add a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from octopipe import __version__
from octopipe.errors import StoreError
from octopipe.store.check_rewrite import checks_without_lists_migration

APPLICATION_ID = 0x4F435450  # "OCTP"
SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100

_INITIAL = """
CREATE TABLE run (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    name          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    pipeline_name TEXT NOT NULL,
    status        TEXT NOT NULL
                  CHECK (status IN ('pending','running','paused','complete','failed','killed')),
    status_reason TEXT,
    mode          TEXT NOT NULL CHECK (mode IN ('batch','realtime')),
    provider      TEXT,
    model         TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    max_units     INTEGER,
    repeat        INTEGER,
    options_json  TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE steps (
    idx   INTEGER PRIMARY KEY CHECK (idx >= 0),
    name  TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('chunk','expression','fan_out'))
);

CREATE TABLE units (
    uid         INTEGER PRIMARY KEY,
    unit_id     TEXT NOT NULL UNIQUE,
    parent_uid  INTEGER REFERENCES units(uid),
    origin_step INTEGER NOT NULL DEFAULT 0 CHECK (origin_step >= 0),
    fields_json TEXT NOT NULL
);
CREATE INDEX units_origin ON units(origin_step, uid);
CREATE INDEX units_parent ON units(parent_uid) WHERE parent_uid IS NOT NULL;

CREATE TABLE blobs (
    id     INTEGER PRIMARY KEY,
    sha256 BLOB NOT NULL UNIQUE,  -- 32-byte digest of the uncompressed UTF-8 text
    size   INTEGER NOT NULL,
    data   BLOB NOT NULL          -- UTF-8 text: TEXT if under 1 KiB, else zlib-compressed BLOB
);

CREATE TABLE batches (
    id                INTEGER PRIMARY KEY,
    local_id          TEXT NOT NULL UNIQUE,
    step_idx          INTEGER NOT NULL REFERENCES steps(idx),
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    provider_batch_id TEXT UNIQUE,
    state             TEXT NOT NULL CHECK (state IN ('intent','submitted','completed',
                          'collected','expired','cancelled','failed','abandoned')),
    n_units           INTEGER NOT NULL,
    content_hash      TEXT NOT NULL,
    estimate_usd      REAL,
    actual_usd        REAL,
    created_at        TEXT NOT NULL,
    submitted_at      TEXT,
    finished_at       TEXT,
    provider_status   TEXT,
    error             TEXT
);
CREATE INDEX batches_state ON batches(state);

CREATE TABLE batch_units (
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    uid      INTEGER NOT NULL REFERENCES units(uid),
    PRIMARY KEY (batch_id, uid)
) WITHOUT ROWID;
CREATE INDEX batch_units_uid ON batch_units(uid);

CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY,
    uid           INTEGER NOT NULL REFERENCES units(uid),
    step_idx      INTEGER NOT NULL REFERENCES steps(idx),
    attempt_no    INTEGER NOT NULL CHECK (attempt_no >= 1),
    mode          TEXT NOT NULL CHECK (mode IN ('batch','realtime','local')),
    provider      TEXT,
    model         TEXT,
    batch_id      INTEGER REFERENCES batches(id),
    started_at    TEXT,
    finished_at   TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('valid','failed','error')),
    stage         TEXT CHECK (stage IN ('render','provider','parse','schema','rules','expression')),
    errors_json   TEXT NOT NULL DEFAULT '[]',
    request_blob  INTEGER REFERENCES blobs(id),
    response_blob INTEGER REFERENCES blobs(id),
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL,
    latency_ms    INTEGER,
    UNIQUE (uid, step_idx, attempt_no)
);
CREATE INDEX attempts_batch ON attempts(batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE unit_steps (
    uid             INTEGER NOT NULL REFERENCES units(uid),
    step_idx        INTEGER NOT NULL REFERENCES steps(idx),
    state           TEXT NOT NULL
                    CHECK (state IN ('pending','in_flight','valid','failed','exhausted')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    attempts_base   INTEGER NOT NULL DEFAULT 0,
    output_json     TEXT,
    last_attempt_id INTEGER REFERENCES attempts(id),
    last_stage      TEXT,
    last_error      TEXT,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (step_idx, uid)
);
CREATE INDEX unit_steps_state ON unit_steps(step_idx, state, uid);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    level     TEXT NOT NULL CHECK (level IN ('debug','info','warning','error')),
    tag       TEXT NOT NULL,
    message   TEXT NOT NULL,
    data_json TEXT
);

CREATE TABLE commands (
    id         INTEGER PRIMARY KEY,
    ts         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    args_json  TEXT NOT NULL DEFAULT '{}',
    state      TEXT NOT NULL CHECK (state IN ('pending','applied','rejected')),
    applied_at TEXT,
    result     TEXT
);
CREATE INDEX commands_pending ON commands(state, id);
"""

_POST_RUNS = """
CREATE TABLE post_runs (
    id              INTEGER PRIMARY KEY,
    position        INTEGER NOT NULL,   -- order of the action in the pipeline's plan
    action          TEXT NOT NULL,      -- the config key: post_process[3], pipeline.steps[5]
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL
                    CHECK (kind IN ('analysis','script','gzip','run_script','extract')),
    command_json    TEXT NOT NULL DEFAULT '[]',  -- what runs (argv) or what it does
    output          TEXT,               -- the file or folder written, relative to the run
    results_version INTEGER NOT NULL,   -- meta.results_version it was computed from
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    outcome         TEXT NOT NULL CHECK (outcome IN ('running','ok','failed','skipped')),
    exit_code       INTEGER,
    detail          TEXT
);
CREATE INDEX post_runs_action ON post_runs(action, id);
"""

# What `octopipe report` aggregates, in the order it groups by: one pass over this covering
# index gives every step's attempts, tokens and cost split by outcome, attempt number, mode and
# model, with no sort and no read of the table; the failed attempts of a step are one range,
# its retries (attempt_no > 1) three, with their units.
_ATTEMPTS_BY_STEP = """
CREATE INDEX attempts_by_step ON attempts(step_idx, outcome, attempt_no, mode, provider, model,
                                          input_tokens, output_tokens, cached_tokens, cost_usd,
                                          uid);
"""

# Claims carry an owner: the runner that made them (one row per runner start: a random token,
# the host, the pid, when it started). With several workers on one run, releasing a dead
# worker's claims must leave the others'. ``claimed_by`` names the runner of a unit-step's
# last claim; it means "owned" only while the unit is in flight.
_CLAIM_OWNERS = """
CREATE TABLE runners (
    id         INTEGER PRIMARY KEY,
    token      TEXT NOT NULL UNIQUE,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started_at TEXT NOT NULL
);
ALTER TABLE unit_steps ADD COLUMN claimed_by INTEGER REFERENCES runners(id);
"""

_ATTEMPT_TIERS = """
-- The tier that served each LLM attempt (standard, batch, flex, priority) and what the same
-- usage costs at the standard realtime price (the saving of batch/flex); NULL on attempts
-- recorded before this migration (their tier is their mode's: realtime standard, batch batch).
ALTER TABLE attempts ADD COLUMN tier TEXT
    CHECK (tier IS NULL OR tier IN ('standard','batch','flex','priority'));
ALTER TABLE attempts ADD COLUMN standard_cost_usd REAL;
"""

_ATTEMPT_TOTALS = """
-- What the LLM attempts add up to (cost, calls with no price, tokens), kept by triggers in the
-- transaction that inserts, changes or deletes an attempt, so `status` and `ps` read one row
-- instead of scanning every attempt. Additions follow the attempts' insertion order, the order
-- in which a scan of the table sums them.
CREATE TABLE attempt_totals (
    kind          TEXT PRIMARY KEY CHECK (kind = 'llm'),
    attempts      INTEGER NOT NULL,
    unpriced      INTEGER NOT NULL,
    cost_usd      REAL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL
);
INSERT INTO attempt_totals
SELECT 'llm', COUNT(*), COUNT(*) - COUNT(cost_usd), SUM(cost_usd), COALESCE(SUM(input_tokens), 0),
       COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cached_tokens), 0)
FROM attempts WHERE mode != 'local';
CREATE TRIGGER attempt_totals_insert AFTER INSERT ON attempts WHEN NEW.mode != 'local' BEGIN
    UPDATE attempt_totals SET
        attempts = attempts + 1,
        unpriced = unpriced + (NEW.cost_usd IS NULL),
        cost_usd = CASE WHEN NEW.cost_usd IS NULL THEN cost_usd
                        ELSE COALESCE(cost_usd, 0) + NEW.cost_usd END,
        input_tokens = input_tokens + COALESCE(NEW.input_tokens, 0),
        output_tokens = output_tokens + COALESCE(NEW.output_tokens, 0),
        cached_tokens = cached_tokens + COALESCE(NEW.cached_tokens, 0)
    WHERE kind = 'llm';
END;
CREATE TRIGGER attempt_totals_delete AFTER DELETE ON attempts WHEN OLD.mode != 'local' BEGIN
    UPDATE attempt_totals SET
        attempts = attempts - 1,
        unpriced = unpriced - (OLD.cost_usd IS NULL),
        cost_usd = CASE WHEN OLD.cost_usd IS NULL THEN cost_usd ELSE cost_usd - OLD.cost_usd END,
        input_tokens = input_tokens - COALESCE(OLD.input_tokens, 0),
        output_tokens = output_tokens - COALESCE(OLD.output_tokens, 0),
        cached_tokens = cached_tokens - COALESCE(OLD.cached_tokens, 0)
    WHERE kind = 'llm';
END;
CREATE TRIGGER attempt_totals_update
AFTER UPDATE OF mode, cost_usd, input_tokens, output_tokens, cached_tokens ON attempts BEGIN
    UPDATE attempt_totals SET
        attempts = attempts - 1,
        unpriced = unpriced - (OLD.cost_usd IS NULL),
        cost_usd = CASE WHEN OLD.cost_usd IS NULL THEN cost_usd ELSE cost_usd - OLD.cost_usd END,
        input_tokens = input_tokens - COALESCE(OLD.input_tokens, 0),
        output_tokens = output_tokens - COALESCE(OLD.output_tokens, 0),
        cached_tokens = cached_tokens - COALESCE(OLD.cached_tokens, 0)
    WHERE kind = 'llm' AND OLD.mode != 'local';
    UPDATE attempt_totals SET
        attempts = attempts + 1,
        unpriced = unpriced + (NEW.cost_usd IS NULL),
        cost_usd = CASE WHEN NEW.cost_usd IS NULL THEN cost_usd
                        ELSE COALESCE(cost_usd, 0) + NEW.cost_usd END,
        input_tokens = input_tokens + COALESCE(NEW.input_tokens, 0),
        output_tokens = output_tokens + COALESCE(NEW.output_tokens, 0),
        cached_tokens = cached_tokens + COALESCE(NEW.cached_tokens, 0)
    WHERE kind = 'llm' AND NEW.mode != 'local';
END;
"""


# The pieces of migration 0007_cost_groups' SQL, each for one attempt row: NEW, OLD or the
# attempts table itself.
def _cg_key(row: str) -> str:
    return (
        f"COALESCE({row}.provider, ''), COALESCE({row}.model, ''), "
        f"COALESCE({row}.tier, CASE {row}.mode WHEN 'batch' THEN 'batch' ELSE 'standard' END)"
    )


def _cg_answered(row: str) -> str:
    return (
        f"{row}.mode != 'local' AND NOT ({row}.outcome = 'error' AND {row}.input_tokens = 0"
        f" AND {row}.output_tokens = 0 AND {row}.cost_usd IS NOT NULL AND {row}.cost_usd = 0)"
    )


def _cg_standard(row: str) -> str:
    return (
        f"CASE WHEN {row}.tier IS NULL AND {row}.mode = 'batch' THEN NULL "
        f"WHEN {row}.tier IS NULL THEN {row}.cost_usd ELSE {row}.standard_cost_usd END"
    )


def _cg_values(row: str) -> str:
    return (
        f"{_cg_key(row)}, 1, COALESCE({row}.input_tokens, 0), COALESCE({row}.output_tokens, 0), "
        f"COALESCE({row}.cached_tokens, 0), COALESCE({row}.cost_usd, 0), "
        f"{row}.cost_usd IS NULL, COALESCE({_cg_standard(row)}, 0), ({_cg_standard(row)}) IS NULL"
    )


def _cg_upsert(calls: str) -> str:
    """The conflict clause that adds a new cost-group row's sums to the existing one."""
    return f"""
ON CONFLICT (provider, model, tier) DO UPDATE SET
    calls = calls + {calls},
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cached_tokens = cached_tokens + excluded.cached_tokens,
    known_usd = known_usd + excluded.known_usd,
    unpriced = unpriced + excluded.unpriced,
    standard_known_usd = standard_known_usd + excluded.standard_known_usd,
    standard_unpriced = standard_unpriced + excluded.standard_unpriced"""


def _cg_add(row: str) -> str:
    return f"INSERT INTO cost_groups SELECT {_cg_values(row)} WHERE {_cg_answered(row)}" + (
        _cg_upsert("1") + ";"
    )


def _cg_remove(row: str) -> str:
    return f"""UPDATE cost_groups SET
    calls = calls - 1,
    input_tokens = input_tokens - COALESCE({row}.input_tokens, 0),
    output_tokens = output_tokens - COALESCE({row}.output_tokens, 0),
    cached_tokens = cached_tokens - COALESCE({row}.cached_tokens, 0),
    known_usd = known_usd - COALESCE({row}.cost_usd, 0),
    unpriced = unpriced - ({row}.cost_usd IS NULL),
    standard_known_usd = standard_known_usd - COALESCE({_cg_standard(row)}, 0),
    standard_unpriced = standard_unpriced - (({_cg_standard(row)}) IS NULL)
WHERE ({_cg_answered(row)}) AND (provider, model, tier) = ({_cg_key(row)});"""


def _cg_fill(where: str) -> str:
    """``INSERT INTO cost_groups`` the answered attempts matching ``where``, one row per
    (provider, model, tier)."""
    return f"""INSERT INTO cost_groups
SELECT {_cg_key("attempts")}, COUNT(*), COALESCE(SUM(input_tokens), 0),
       COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cached_tokens), 0),
       COALESCE(SUM(cost_usd), 0), COUNT(*) - COUNT(cost_usd),
       COALESCE(SUM({_cg_standard("attempts")}), 0), COUNT(*) - COUNT({_cg_standard("attempts")})
FROM attempts WHERE {where} GROUP BY 1, 2, 3"""


def _cost_group_sql() -> tuple[str, str]:
    """Migration ``0007_cost_groups``: what the answered LLM attempts of each (provider,
    model, tier) cost, with their standard-price equivalent, kept by triggers like
    ``attempt_totals``, so ``status`` splits the cost and ``ps`` shows the tiers without
    scanning the attempts. "Answered" and the tier of an attempt with no tier (its mode's)
    are exactly those of ``reads.scanned_cost_groups``."""
    fill = _cg_fill(_cg_answered("attempts"))
    return (
        f"""
CREATE TABLE cost_groups (
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    tier               TEXT NOT NULL,
    calls              INTEGER NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    known_usd          REAL NOT NULL,
    unpriced           INTEGER NOT NULL,
    standard_known_usd REAL NOT NULL,
    standard_unpriced  INTEGER NOT NULL,
    PRIMARY KEY (provider, model, tier)
);
{fill};
CREATE TRIGGER cost_groups_insert AFTER INSERT ON attempts BEGIN
    {_cg_add("NEW")}
END;
CREATE TRIGGER cost_groups_delete AFTER DELETE ON attempts BEGIN
    {_cg_remove("OLD")}
END;
CREATE TRIGGER cost_groups_update AFTER UPDATE OF
    mode, tier, outcome, provider, model, cost_usd, standard_cost_usd,
    input_tokens, output_tokens, cached_tokens ON attempts BEGIN
    {_cg_remove("OLD")}
    {_cg_add("NEW")}
END;
""",
        fill,
    )


_COST_GROUPS, COST_GROUPS_FILL = _cost_group_sql()
"""``COST_GROUPS_FILL``: the statement that fills ``cost_groups`` from the attempts (the
migration's, and ``repair``'s after emptying it)."""

# Migration 0008: the totals of 0006 and 0007 grow by statement, not by row. A trigger per
# inserted attempt doubled the cost of recording a batch's answers; the one writer that inserts
# attempts (``attempt_writes.insert_attempts``) now adds the rows it has just inserted, ids
# ``first..last``, with the two statements below, in the same transaction. Changes and deletes
# of attempts (rare: repairs) keep their triggers.
_TOTALS_BY_STATEMENT = """
DROP TRIGGER IF EXISTS attempt_totals_insert;
DROP TRIGGER IF EXISTS cost_groups_insert;
"""

TOTALS_ADD_RANGE = """
UPDATE attempt_totals SET
    attempts = attempts + s.n,
    unpriced = unpriced + s.n - s.priced,
    cost_usd = CASE WHEN s.priced = 0 THEN attempt_totals.cost_usd
                    ELSE COALESCE(attempt_totals.cost_usd, 0) + s.usd END,
    input_tokens = input_tokens + s.tin,
    output_tokens = output_tokens + s.tout,
    cached_tokens = cached_tokens + s.tcached
FROM (SELECT COUNT(*) AS n, COUNT(cost_usd) AS priced, SUM(cost_usd) AS usd,
             COALESCE(SUM(input_tokens), 0) AS tin, COALESCE(SUM(output_tokens), 0) AS tout,
             COALESCE(SUM(cached_tokens), 0) AS tcached
      FROM attempts WHERE id BETWEEN ?1 AND ?2 AND mode != 'local') AS s
WHERE kind = 'llm' AND s.n > 0"""
"""Add the LLM attempts with ids ``?1..?2`` to the LLM totals row (as 0006's insert trigger
did one row at a time)."""

COST_GROUPS_ADD_RANGE = _cg_fill(
    f"id BETWEEN ?1 AND ?2 AND {_cg_answered('attempts')}"
) + _cg_upsert("excluded.calls")
"""Add the answered attempts with ids ``?1..?2`` to their (provider, model, tier) rows (as
0007's insert trigger did one row at a time)."""

Migration = str | Callable[[sqlite3.Connection], None]
"""A migration: a SQL script, or a function run inside the migration's transaction."""

# Append only. The name is what a store records; never rename or reorder a released entry.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("0001_initial", _INITIAL),
    ("0002_post_runs", _POST_RUNS),
    ("0003_attempts_by_step", _ATTEMPTS_BY_STEP),
    ("0004_claim_owners", _CLAIM_OWNERS),
    ("0005_attempt_tiers", _ATTEMPT_TIERS),
    ("0006_attempt_totals", _ATTEMPT_TOTALS),
    ("0007_cost_groups", _COST_GROUPS),
    ("0008_totals_by_statement", _TOTALS_BY_STATEMENT),
    ("0009_checks_without_lists", checks_without_lists_migration),
]

# Migrations a read-only open may do without, so runs made before them stay readable by
# `status`, `verify`, `report` and the rest until a writer opens them and applies them:
# index-only ones (every query gives the same answer, only slower), writer-only ones (they
# add what only a writer reads or writes, such as the owner of a claim) and ones that only add
# nullable columns readers look for before reading (`has_column`: an old run's attempts have
# no tier).
READERS_MAY_LACK: frozenset[str] = frozenset(
    {
        "0003_attempts_by_step",
        "0004_claim_owners",
        "0005_attempt_tiers",
        "0006_attempt_totals",
        "0007_cost_groups",
        "0008_totals_by_statement",
        "0009_checks_without_lists",
    }
)
"""Also derived-only ones (``0006_attempt_totals``, ``0007_cost_groups``: maintained totals
readers look for with `has_table` and compute themselves when they are missing), and
``0008_totals_by_statement`` and ``0009_checks_without_lists``, which change only how a writer
keeps those totals and checks what it writes."""

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS migrations (
    seq        INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    applied_at TEXT NOT NULL,
    octopipe   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def check_file(path: Path) -> None:
    """Refuse a file that cannot be a whole SQLite database, before SQLite touches it."""
    if not path.exists():
        raise StoreError(f"no run ledger at {path}")
    if not path.is_file():
        raise StoreError(f"run ledger {path} is not a regular file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            header = fh.read(HEADER_SIZE)
    except OSError as exc:
        raise StoreError(f"run ledger {path} cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise StoreError(f"run ledger {path} is empty (0 bytes): the run was never initialised")
    if not header.startswith(SQLITE_MAGIC):
        raise StoreError(f"run ledger {path} is not a SQLite database: the file is corrupt")
    if len(header) < HEADER_SIZE:
        raise StoreError(f"run ledger {path} is truncated ({size} bytes)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise StoreError(f"run ledger {path} is corrupt: bad page size {page_size}")
    change_counter = int.from_bytes(header[24:28], "big")
    n_pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    # The in-header page count is trustworthy only when "version-valid-for" matches the
    # change counter (true for every SQLite since 3.7.0).
    if valid_for == change_counter and n_pages and size < n_pages * page_size:
        raise StoreError(
            f"run ledger {path} is truncated: {size} bytes on disk, the header says "
            f"{n_pages * page_size}; restore it from a backup"
        )
    if size % page_size:
        raise StoreError(
            f"run ledger {path} is truncated: {size} bytes is not a whole number of "
            f"{page_size}-byte pages"
        )


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    have = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'"
    ).fetchone()
    if not have:
        return []
    return [row[0] for row in conn.execute("SELECT name FROM migrations ORDER BY seq")]


def check_version(conn: sqlite3.Connection, where: str, *, fresh: bool = False) -> list[str]:
    """Validate identity and version; return the names of migrations still to apply."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if not fresh and app_id != APPLICATION_ID:
        raise StoreError(f"{where} is a SQLite database but not an octopipe run ledger")
    user_version = conn.execute("PRAGMA user_version").fetchone()[0]
    applied = applied_migrations(conn)
    known = [name for name, _ in MIGRATIONS]
    unknown = [name for name in applied if name not in known]
    if unknown or user_version > len(known):
        writer = _meta(conn, "last_writer") or "a newer octopipe"
        raise StoreError(
            f"{where} was written by {writer} (schema version {user_version}, "
            f"migrations {', '.join(unknown) or 'unknown'}); this is octopipe {__version__} "
            f"(schema version {len(known)}). Upgrade octopipe to open this run."
        )
    if applied != known[: len(applied)]:
        raise StoreError(
            f"{where} has an inconsistent migration history {applied}; expected a prefix of {known}"
        )
    return known[len(applied) :]


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        is not None
    )


def needed_by_readers(todo: list[str]) -> list[str]:
    """The migrations of ``todo`` without which a read-only open cannot proceed."""
    return [name for name in todo if name not in READERS_MAY_LACK]


def migrate(conn: sqlite3.Connection, now: str, *, fresh: bool = False) -> list[str]:
    """Apply every missing migration, each in one transaction. Returns the names applied."""
    todo = check_version(conn, "ledger", fresh=fresh)
    if not todo:
        return []
    conn.executescript(f"BEGIN IMMEDIATE;{_BOOTSTRAP}COMMIT;")
    by_name = dict(MIGRATIONS)
    for name in todo:
        seq = [n for n, _ in MIGRATIONS].index(name) + 1
        step = by_name[name]
        done = [
            "INSERT INTO migrations(seq, name, applied_at, octopipe) VALUES "
            f"({seq}, {_quote(name)}, {_quote(now)}, {_quote(__version__)})",
            "INSERT INTO meta(key, value) VALUES ('last_writer', "
            f"{_quote('octopipe ' + __version__)}) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            f"PRAGMA application_id = {APPLICATION_ID}",
            f"PRAGMA user_version = {seq}",
            "COMMIT",
        ]
        try:
            if isinstance(step, str):
                conn.executescript("BEGIN IMMEDIATE;\n" + step + "\n" + ";\n".join(done) + ";")
            else:
                # one statement at a time: executescript would commit the open transaction first
                conn.execute("BEGIN IMMEDIATE")
                step(conn)
                for statement in done:
                    conn.execute(statement)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return todo


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
