-- abathur-memkit schema, migration 001: the memory tables.
-- Applied in file-name order by Database.initialize(), or by hand:
--     cat sql/*.sql | sqlite3 agents.db
-- sessions comes first: tasks, agents and checkpoints reference it.

CREATE TABLE IF NOT EXISTS sessions (
    id               TEXT PRIMARY KEY,
    app_name         TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    project_id       TEXT,
    status           TEXT NOT NULL DEFAULT 'created',
    -- No events column: events live in session_events (seed defect 1).
    state            TEXT NOT NULL DEFAULT '{}',
    metadata         TEXT DEFAULT '{}',
    created_at       TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    terminated_at    TIMESTAMP,
    archived_at      TIMESTAMP,
    CHECK (status IN ('created', 'active', 'paused', 'terminated', 'archived')),
    CHECK (json_valid(state)),
    CHECK (json_valid(metadata))
);

-- Seed defect 1: the seeds kept events as one JSON array in sessions.events, so
-- every append rewrote the whole row (14.6 ms and 3 MB of WAL at event #5,000).
-- One row per event makes an append O(1) in the length of the session.
CREATE TABLE IF NOT EXISTS session_events (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    event      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (session_id, seq),
    CHECK (seq > 0),
    CHECK (json_valid(event))
);

CREATE TABLE IF NOT EXISTS memory_entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    memory_type TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    is_deleted  BOOLEAN NOT NULL DEFAULT 0,
    metadata    TEXT DEFAULT '{}',
    created_by  TEXT,
    updated_by  TEXT,
    created_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK (memory_type IN ('semantic', 'episodic', 'procedural')),
    CHECK (json_valid(value)),
    CHECK (json_valid(metadata)),
    CHECK (version > 0),
    CHECK (is_deleted IN (0, 1)),
    UNIQUE (namespace, key, version)
);

CREATE TABLE IF NOT EXISTS document_index (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    file_path       TEXT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    document_type   TEXT,                      -- design|specification|plan|report
    content_hash    TEXT NOT NULL,             -- SHA-256 of the file's bytes
    chunk_count     INTEGER DEFAULT 1,
    embedding_model TEXT,
    embedding_blob  BLOB,
    metadata        TEXT DEFAULT '{}',
    last_synced_at  TIMESTAMP,
    sync_status     TEXT DEFAULT 'pending',
    created_at      TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK (sync_status IN ('pending', 'synced', 'failed', 'stale')),
    CHECK (json_valid(metadata))
);

PRAGMA user_version = 1;
