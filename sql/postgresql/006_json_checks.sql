-- abathur-memkit schema for PostgreSQL, migration 006: on SQLite, this
-- migration makes tasks.input_data, tasks.result_data and checkpoints.state
-- hold valid JSON. Here they are jsonb since 002, which accepts nothing else;
-- the number is kept so both engines count their schema versions alike.

INSERT INTO memkit_schema (version) VALUES (6) ON CONFLICT DO NOTHING;
