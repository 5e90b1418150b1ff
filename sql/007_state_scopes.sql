-- abathur-memkit schema, migration 007: session state scopes.
-- A state key prefixed 'app:' is shared by every session of its app, one
-- prefixed 'user:' by every session of the same app and user; other keys
-- belong to one session and 'temp:' keys are never stored. The shared keys
-- live here, one JSON object per app and per (app, user); get_session merges
-- them into the session's own state, prefixes kept.

CREATE TABLE IF NOT EXISTS app_states (
    app_name   TEXT PRIMARY KEY,
    state      TEXT NOT NULL DEFAULT '{}',
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK (json_valid(state))
);

CREATE TABLE IF NOT EXISTS user_states (
    app_name   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT '{}',
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (app_name, user_id),
    CHECK (json_valid(state))
);

-- Earlier versions kept 'app:' and 'user:' keys in each session's state. Move
-- them to their scope; when sessions disagree on a key, the value of the
-- session updated last wins (SQLite's max() picks the bare columns' row).
INSERT INTO app_states (app_name, state, updated_at)
SELECT app_name, json_group_object(key, json(value)), max(updated_at)
FROM (
    SELECT s.app_name, j.key, s.state -> j.fullkey AS value, max(s.last_update_time) AS updated_at
    FROM sessions AS s, json_each(s.state) AS j
    WHERE j.key >= 'app:' AND j.key < 'app;'
    GROUP BY s.app_name, j.key
)
GROUP BY app_name;

INSERT INTO user_states (app_name, user_id, state, updated_at)
SELECT app_name, user_id, json_group_object(key, json(value)), max(updated_at)
FROM (
    SELECT s.app_name, s.user_id, j.key, s.state -> j.fullkey AS value,
           max(s.last_update_time) AS updated_at
    FROM sessions AS s, json_each(s.state) AS j
    WHERE j.key >= 'user:' AND j.key < 'user;'
    GROUP BY s.app_name, s.user_id, j.key
)
GROUP BY app_name, user_id;

UPDATE sessions
SET state = (
    SELECT json_group_object(j.key, json(sessions.state -> j.fullkey))
    FROM json_each(sessions.state) AS j
    WHERE NOT (j.key >= 'app:' AND j.key < 'app;') AND NOT (j.key >= 'user:' AND j.key < 'user;')
)
WHERE EXISTS (
    SELECT 1 FROM json_each(sessions.state) AS j
    WHERE (j.key >= 'app:' AND j.key < 'app;') OR (j.key >= 'user:' AND j.key < 'user;')
);

PRAGMA user_version = 7;
