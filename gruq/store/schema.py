"""The store's tables, in one place so the writer and the readers agree.

Bump VERSION whenever the tables change: a store written by a newer gruq is
refused rather than misread, and an older one can be migrated explicitly.
"""

from __future__ import annotations

VERSION = 3
STATUSES = ("queued", "running", "finished", "failed", "cancelled")

# `gruq_schema` marks a file as ours: gruq writes only to files that have it
# (or to new, empty ones).
DDL = f"""
CREATE TABLE IF NOT EXISTS gruq_schema (version INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    config TEXT NOT NULL,                -- SearchConfig as JSON
    seed INTEGER NOT NULL,
    generations INTEGER NOT NULL,        -- planned
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN {STATUSES!r}),
    error TEXT,
    pid INTEGER,
    created_at TEXT NOT NULL,            -- ISO 8601, UTC
    started_at TEXT,
    finished_at TEXT,
    checkpoint_sha256 TEXT               -- v2: the float checkpoint the run quantized
);

CREATE TABLE IF NOT EXISTS generations (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    gen INTEGER NOT NULL,
    hypervolume REAL NOT NULL,           -- normalised, in [0, 1]
    seconds REAL NOT NULL,               -- wall time of this generation
    evaluations INTEGER NOT NULL,        -- genomes scored so far
    finished_at TEXT NOT NULL,
    PRIMARY KEY (run_id, gen)
);

-- What a resumed run needs to continue after generation `gen`, as JSON.
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (run_id, gen),
    FOREIGN KEY (run_id, gen) REFERENCES generations(run_id, gen)
);

-- Every genome scored, once per run.
CREATE TABLE IF NOT EXISTS individuals (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    genome TEXT NOT NULL,                -- "8,8,...", 17 widths in operator order
    accuracy REAL NOT NULL,              -- validation accuracy the search used
    size_bytes REAL NOT NULL,
    bops INTEGER NOT NULL,
    generation INTEGER NOT NULL,         -- first scored in
    feasible INTEGER NOT NULL,           -- meets every constraint of the run
    on_front INTEGER NOT NULL DEFAULT 0, -- member of the latest front
    finetuned_accuracy REAL,             -- after the optional final-front fine-tuning
    PRIMARY KEY (run_id, genome)
);
CREATE INDEX IF NOT EXISTS individuals_by_generation ON individuals(run_id, generation);

-- v2: the model behind a scheme's reported accuracy (gruq.scheme_model): its recipe
-- (JSON), the sha256 of its weights (checked whenever it is rebuilt), and the
-- fine-tuned weights themselves once computed (numpy .npz bytes), so the app
-- and export need not fine-tune again.
CREATE TABLE IF NOT EXISTS models (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    genome TEXT NOT NULL,
    recipe TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    weights BLOB,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, genome)
);

-- v3: every change of a run's status (queued, running, finished, ...), in order: the time a
-- run spent cancelled or failed before a resume is not time it ran (gruq.views.progress).
CREATE TABLE IF NOT EXISTS run_events (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    status TEXT NOT NULL,
    at TEXT NOT NULL                     -- ISO 8601, UTC
);
CREATE INDEX IF NOT EXISTS run_events_by_run ON run_events(run_id);

-- The feasible Pareto front after each generation.
CREATE TABLE IF NOT EXISTS fronts (
    run_id INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    genome TEXT NOT NULL,
    PRIMARY KEY (run_id, gen, genome)
);
"""

# Explicit migrations: MIGRATIONS[v] turns a version-v store into version v+1.
MIGRATIONS = {
    1: (
        "ALTER TABLE runs ADD COLUMN checkpoint_sha256 TEXT",
        """CREATE TABLE IF NOT EXISTS models (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            genome TEXT NOT NULL,
            recipe TEXT NOT NULL,
            weights_sha256 TEXT NOT NULL,
            weights BLOB,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, genome)
        )""",
    ),
    2: (
        """CREATE TABLE IF NOT EXISTS run_events (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            status TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS run_events_by_run ON run_events(run_id)",
        # what the runs table still knows of their history: the launch, and the last end
        "INSERT INTO run_events (run_id, status, at) SELECT id, 'queued', created_at FROM runs ORDER BY id",
        "INSERT INTO run_events (run_id, status, at) SELECT id, status, finished_at FROM runs "
        "WHERE finished_at IS NOT NULL AND status IN ('finished', 'failed', 'cancelled') ORDER BY id",
    ),
}


def migrate(conn) -> int:
    """Bring an older store up to VERSION in one transaction per step; returns the version
    found. Runs only on read-write connections (readers of old stores cope with the
    missing parts: no recorded models)."""
    version = int(conn.execute("SELECT max(version) FROM gruq_schema").fetchone()[0])
    while version < VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = int(conn.execute("SELECT max(version) FROM gruq_schema").fetchone()[0])
            if now == version:  # another process may have migrated meanwhile
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("UPDATE gruq_schema SET version = ?", (version + 1,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        version = int(conn.execute("SELECT max(version) FROM gruq_schema").fetchone()[0])
    return version
