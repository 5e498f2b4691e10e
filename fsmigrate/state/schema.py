"""The state file's tables (schema 7: the compact layout of `compact`; each run's read
time; runs may be `stopped`, and the live control events of a run are kept in
`controls`; where each Beam apply's journal is, and which of its batch files are
recorded, in `journals` and `journal_batches`). `State` creates them and upgrades older
files to them (`database`)."""

SCHEMA_VERSION = 7

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    invocation TEXT NOT NULL,
    project TEXT NOT NULL,
    database TEXT NOT NULL,
    revision TEXT NOT NULL,
    checksum TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'upgrade'
        CHECK (kind IN ('upgrade', 'rerun', 'plan', 'restore', 'resolve', 'stamp', 'elsewhere',
                        'prune')),
    mode TEXT NOT NULL CHECK (mode IN ('dry-run', 'apply')),
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'stopped')),
    resumes TEXT REFERENCES runs (id),
    started_at TEXT NOT NULL,
    finished_at TEXT,
    operator TEXT NOT NULL,
    host TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    planned INTEGER NOT NULL DEFAULT 0,
    committed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    batches INTEGER NOT NULL DEFAULT 0,
    counts TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    error_kind TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    last_retry_error TEXT,
    source TEXT,
    plan_digest TEXT,
    traffic TEXT,
    estimate TEXT,
    archive_policy TEXT,
    pruned_at TEXT,
    pruned_by TEXT REFERENCES runs (id),
    read_time TEXT
);
CREATE INDEX IF NOT EXISTS runs_target ON runs (project, database, started_at);
CREATE TABLE IF NOT EXISTS applied (
    project TEXT NOT NULL,
    database TEXT NOT NULL,
    revision TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs (id),
    PRIMARY KEY (project, database, revision)
);
CREATE TABLE IF NOT EXISTS ops (
    run INTEGER NOT NULL REFERENCES runs (key),
    seq INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    pre_time,
    pre_exists INTEGER,
    grp INTEGER,
    label TEXT,
    status TEXT NOT NULL
        CHECK (status IN ('planned', 'pending', 'committed', 'skipped', 'failed')),
    reason TEXT,
    commit_time,
    error TEXT,
    blk INTEGER,
    phash INTEGER NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ops_phash ON ops (phash);
CREATE TABLE IF NOT EXISTS blocks (
    run INTEGER NOT NULL REFERENCES runs (key),
    blk INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run, blk)
);
CREATE TABLE IF NOT EXISTS notes (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS controls (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    value TEXT,
    operator TEXT NOT NULL,
    host TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
-- A Beam apply's journal (its workers' batch files), recorded before its pipeline starts:
-- `recorded` until its batches are in `ops`, then `imported`, then `removed` (or `kept`:
-- when the coordinator keeps it). A `recorded` journal of a run whose coordinator died is
-- imported by the next command that takes the target's lease (fsmigrate.beam.journal).
CREATE TABLE IF NOT EXISTS journals (
    run_id TEXT PRIMARY KEY REFERENCES runs (id),
    location TEXT NOT NULL,
    keep INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'recorded'
        CHECK (state IN ('recorded', 'imported', 'removed', 'kept')),
    recorded_at TEXT NOT NULL,
    imported_at TEXT,
    imported_by TEXT,
    batches INTEGER NOT NULL DEFAULT 0,
    operations INTEGER NOT NULL DEFAULT 0
);
-- Each batch file of a journal once its operations are in `ops` (in the same transaction),
-- and once its outcome is: an import that stopped halfway is finished, never repeated.
CREATE TABLE IF NOT EXISTS journal_batches (
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    base INTEGER NOT NULL,
    size INTEGER NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
"""
