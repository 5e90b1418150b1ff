-- The pre-memory Abathur schema (before sessions and memory): the six core
-- tables without session_id / memory columns, audit.task_id NOT NULL with a
-- foreign key. Used to test the in-place upgrade.
PRAGMA foreign_keys = ON;
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    agent_type TEXT NOT NULL DEFAULT 'general',
    priority INTEGER NOT NULL DEFAULT 5,
    status TEXT NOT NULL,
    input_data TEXT NOT NULL,
    result_data TEXT,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    max_retries INTEGER DEFAULT 3,
    max_execution_timeout_seconds INTEGER DEFAULT 3600,
    submitted_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    last_updated_at TIMESTAMP NOT NULL,
    created_by TEXT,
    parent_task_id TEXT,
    dependencies TEXT,
    FOREIGN KEY (parent_task_id) REFERENCES tasks(id)
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    specialization TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    model TEXT NOT NULL,
    spawned_at TIMESTAMP NOT NULL,
    terminated_at TIMESTAMP,
    resource_usage TEXT,
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE TABLE state (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (task_id) REFERENCES tasks(id),
    UNIQUE(task_id, key)
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP NOT NULL,
    agent_id TEXT,
    task_id TEXT NOT NULL,
    action_type TEXT NOT NULL,
    action_data TEXT,
    result TEXT,
    FOREIGN KEY (agent_id) REFERENCES agents(id),
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP NOT NULL,
    metric_name TEXT NOT NULL,
    metric_value REAL NOT NULL,
    labels TEXT
);
CREATE TABLE checkpoints (
    task_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (task_id, iteration),
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE INDEX idx_tasks_status_priority ON tasks(status, priority DESC, submitted_at ASC);
CREATE INDEX idx_tasks_submitted_at ON tasks(submitted_at);
CREATE INDEX idx_tasks_parent ON tasks(parent_task_id);
CREATE INDEX idx_agents_task ON agents(task_id);
CREATE INDEX idx_audit_task ON audit(task_id, timestamp DESC);
CREATE INDEX idx_audit_timestamp ON audit(timestamp DESC);
CREATE INDEX idx_state_task_key ON state(task_id, key);
CREATE INDEX idx_metrics_name_timestamp ON metrics(metric_name, timestamp DESC);
CREATE INDEX idx_checkpoints_task ON checkpoints(task_id, iteration DESC);

INSERT INTO tasks (id, prompt, priority, status, input_data, submitted_at, last_updated_at)
VALUES ('t1', 'parent task', 7, 'completed', '{}', '2025-10-01 10:00:00', '2025-10-01 11:00:00'),
       ('t2', 'child task', 3, 'pending', '{"x": 1}', '2025-10-02 10:00:00', '2025-10-02 10:00:00');
UPDATE tasks SET parent_task_id = 't1' WHERE id = 't2';
INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at)
VALUES ('a1', 'coder', 'python', 't1', 'terminated', 'claude', '2025-10-01 10:01:00');
INSERT INTO state (task_id, key, value) VALUES ('t1', 'progress', '"done"');
INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result)
VALUES ('2025-10-01 10:02:00', 'a1', 't1', 'tool_call', '{"tool": "edit"}', 'ok'),
       ('2025-10-01 10:03:00', NULL, 't2', 'submit', NULL, NULL);
INSERT INTO metrics (timestamp, metric_name, metric_value, labels)
VALUES ('2025-10-01 10:04:00', 'tokens', 1234.5, '{"model": "claude"}');
INSERT INTO checkpoints (task_id, iteration, state, created_at)
VALUES ('t1', 1, '{"step": 1}', '2025-10-01 10:05:00'),
       ('t1', 2, '{"step": 2}', '2025-10-01 10:06:00');
