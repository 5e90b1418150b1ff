-- abathur-memkit schema, migration 006: tasks.input_data, tasks.result_data and
-- checkpoints.state must hold valid JSON, like every other JSON column. SQLite
-- cannot add a CHECK to a table, so both tables are rebuilt with it (the
-- procedure of https://sqlite.org/lang_altertable.html): a row whose JSON is
-- not valid stops the migration, and the file stays as it was.
-- memkit: rebuilds tables (run with foreign_keys off, checked before COMMIT)

CREATE TABLE _memkit_new_tasks (
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
    CONSTRAINT "tasks.input_data is JSON" CHECK (json_valid(input_data)),
    CONSTRAINT "tasks.result_data is JSON" CHECK (result_data IS NULL OR json_valid(result_data)),
    FOREIGN KEY (parent_task_id) REFERENCES tasks(id),
    FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE SET NULL
);
INSERT INTO _memkit_new_tasks SELECT * FROM tasks;
DROP TABLE tasks;
ALTER TABLE _memkit_new_tasks RENAME TO tasks;

CREATE INDEX IF NOT EXISTS idx_tasks_status_priority
    ON tasks(status, priority DESC, submitted_at);
CREATE INDEX IF NOT EXISTS idx_tasks_submitted_at ON tasks(submitted_at);
CREATE INDEX IF NOT EXISTS idx_tasks_parent ON tasks(parent_task_id);
CREATE INDEX IF NOT EXISTS idx_tasks_running_timeout
    ON tasks(status, last_updated_at) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS idx_tasks_session
    ON tasks(session_id, submitted_at DESC) WHERE session_id IS NOT NULL;

CREATE TABLE _memkit_new_checkpoints (
    task_id    TEXT NOT NULL,
    iteration  INTEGER NOT NULL,
    state      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    session_id TEXT,
    PRIMARY KEY (task_id, iteration),
    CONSTRAINT "checkpoints.state is JSON" CHECK (json_valid(state)),
    FOREIGN KEY (task_id) REFERENCES tasks(id),
    FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE SET NULL
);
INSERT INTO _memkit_new_checkpoints SELECT * FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE _memkit_new_checkpoints RENAME TO checkpoints;

CREATE INDEX IF NOT EXISTS idx_checkpoints_task ON checkpoints(task_id, iteration DESC);

PRAGMA user_version = 6;
