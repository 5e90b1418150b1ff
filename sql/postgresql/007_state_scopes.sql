-- abathur-memkit schema for PostgreSQL, migration 007: session state scopes.
-- A state key prefixed 'app:' is shared by every session of its app, one
-- prefixed 'user:' by every session of the same app and user; other keys
-- belong to one session and 'temp:' keys are never stored. The shared keys
-- live here, one JSON object per app and per (app, user).
-- SQLite's 007 also moves such keys out of older sessions' state; no
-- PostgreSQL database predates scopes, so there is nothing to move.

CREATE TABLE IF NOT EXISTS app_states (
    app_name   text COLLATE "C" PRIMARY KEY,
    state      jsonb NOT NULL DEFAULT '{}',
    updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE IF NOT EXISTS user_states (
    app_name   text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL,
    state      jsonb NOT NULL DEFAULT '{}',
    updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY (app_name, user_id)
);

INSERT INTO memkit_schema (version) VALUES (7) ON CONFLICT DO NOTHING;
