-- abathur-memkit schema, migration 002: the core Abathur tables with their
-- session and memory columns. A database made by the pre-memory Abathur schema
-- (these tables without session_id / memory columns) is rebuilt into these
-- definitions by Database.initialize(), every row kept.

CREATE TABLE IF NOT EXISTS tasks (
    id                            TEXT PRIMARY KEY,
    prompt                        TEXT NOT NULL,
    agent_type                    TEXT NOT NULL DEFAULT 'general',
    -- Higher number = more urgent; dequeue sorts priority DESC (seed defect 7).
    priority                      INTEGER NOT NULL DEFAULT 5,
    status                        TEXT NOT NULL,
    input_data                    TEXT NOT NULL,
    result_data                   TEXT,
    error_message                 TEXT,
    retry_count                   INTEGER DEFAULT 0,
    max_retries                   INTEGER DEFAULT 3,
    max_execution_timeout_seconds INTEGER DEFAULT 3600,
    submitted_at                  TIMESTAMP NOT NULL,
    started_at                    TIMESTAMP,
    completed_at                  TIMESTAMP,
    last_updated_at               TIMESTAMP NOT NULL,
    created_by                    TEXT,
    parent_task_id                TEXT,
    dependencies                  TEXT,        -- JSON array of task ids
    session_id                    TEXT,
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    CHECK (dependencies IS NULL OR json_valid(dependencies)),
    FOREIGN KEY (parent_task_id) REFERENCES tasks(id),
    FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE SET NULL
);

CREATE TABLE IF NOT EXISTS agents (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    specialization TEXT NOT NULL,
    task_id        TEXT NOT NULL,
    state          TEXT NOT NULL,
    model          TEXT NOT NULL,
    spawned_at     TIMESTAMP NOT NULL,
    terminated_at  TIMESTAMP,
    resource_usage TEXT,                       -- JSON
    session_id     TEXT,
    CHECK (state IN ('idle', 'working', 'waiting', 'terminated')),
    CHECK (resource_usage IS NULL OR json_valid(resource_usage)),
    FOREIGN KEY (task_id) REFERENCES tasks(id),
    FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE SET NULL
);

CREATE TABLE IF NOT EXISTS audit (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp             TIMESTAMP NOT NULL,
    agent_id              TEXT,
    -- Nullable and not a foreign key (seed defect 3): memory writes name tasks
    -- that live in other systems ('task:xyz'), or none at all.
    task_id               TEXT,
    action_type           TEXT NOT NULL,
    action_data           TEXT,                -- JSON
    result                TEXT,
    memory_operation_type TEXT,
    memory_namespace      TEXT,
    memory_entry_id       INTEGER,
    CHECK (memory_operation_type IS NULL
           OR memory_operation_type IN ('create', 'update', 'delete', 'consolidate', 'publish')),
    CHECK (action_data IS NULL OR json_valid(action_data)),
    FOREIGN KEY (memory_entry_id) REFERENCES memory_entries(id) ON DELETE SET NULL
);

CREATE TABLE IF NOT EXISTS checkpoints (
    task_id    TEXT NOT NULL,
    iteration  INTEGER NOT NULL,
    state      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    session_id TEXT,
    PRIMARY KEY (task_id, iteration),
    FOREIGN KEY (task_id) REFERENCES tasks(id),
    FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE SET NULL
);

-- Deprecated (superseded by sessions.state), kept for compatibility.
CREATE TABLE IF NOT EXISTS state (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (task_id, key),
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);

CREATE TABLE IF NOT EXISTS metrics (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp    TIMESTAMP NOT NULL,
    metric_name  TEXT NOT NULL,
    metric_value REAL NOT NULL,
    labels       TEXT,                         -- JSON
    CHECK (metric_value >= 0),
    CHECK (labels IS NULL OR json_valid(labels))
);

PRAGMA user_version = 2;
