-- abathur-memkit schema for PostgreSQL, migration 010: add_memory, update_memory
-- and append_event as functions, so the client sends each as one statement,
-- which is its own transaction: no BEGIN and COMMIT around it, one message
-- each way, and the function's plans cached by the server connection. A
-- function's statements each read a fresh snapshot (read committed), so the one
-- after a lock sees everything committed before the lock was granted.
--
-- Each declines to write (no id, no version, no seq back) where the services
-- raise: a live key for add, no live key for update, a missing or read-only
-- session for append. Every write has its audit row in the same statement.

-- The key's lock, as the services' PG_LOCK_KEY takes it: the memory writers'
-- lock shared (a batch or TTL expiry takes it exclusively), then the key's.
CREATE OR REPLACE FUNCTION memkit_lock_memory_key(p_ns text, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('memkit memory writers', 0)),
            pg_advisory_xact_lock(hashtextextended(p_key, hashtextextended(p_ns, 0)));
END $$;

CREATE OR REPLACE FUNCTION memkit_add_memory(
    p_ns text, p_key text, p_value jsonb, p_type text, p_metadata jsonb, p_by text,
    p_task text, p_at timestamp, OUT new_id bigint, OUT live_version integer)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM memkit_lock_memory_key(p_ns, p_key);
    WITH newest AS (
        SELECT version, is_deleted FROM memory_entries
        WHERE namespace = p_ns AND key = p_key ORDER BY version DESC LIMIT 1
    ), new AS (
        INSERT INTO memory_entries (namespace, key, value, memory_type, version, metadata,
                                    created_by, updated_by, created_at, updated_at)
        SELECT p_ns, p_key, p_value, p_type, coalesce((SELECT version FROM newest), 0) + 1,
               p_metadata, p_by, p_by, p_at, p_at
        WHERE NOT EXISTS (SELECT 1 FROM newest WHERE is_deleted = 0)
        RETURNING id, version
    ), logged AS (
        INSERT INTO audit (timestamp, task_id, action_type, action_data,
                           memory_operation_type, memory_namespace, memory_entry_id)
        SELECT p_at, p_task, 'memory_create',
               jsonb_build_object('by', p_by, 'key', p_key, 'version', version),
               'create', p_ns, id FROM new
    )
    SELECT (SELECT id FROM new), (SELECT version FROM newest WHERE is_deleted = 0)
    INTO new_id, live_version;
END $$;

-- The new version keeps the type, metadata and creator it replaces unless given.
CREATE OR REPLACE FUNCTION memkit_update_memory(
    p_ns text, p_key text, p_value jsonb, p_type text, p_metadata jsonb, p_by text,
    p_task text, p_at timestamp, OUT new_version integer)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM memkit_lock_memory_key(p_ns, p_key);
    WITH newest AS (
        SELECT version, is_deleted, memory_type, metadata, created_by FROM memory_entries
        WHERE namespace = p_ns AND key = p_key ORDER BY version DESC LIMIT 1
    ), new AS (
        INSERT INTO memory_entries (namespace, key, value, memory_type, version, metadata,
                                    created_by, updated_by, created_at, updated_at)
        SELECT p_ns, p_key, p_value, coalesce(p_type, memory_type), version + 1,
               coalesce(p_metadata, metadata, '{}'), created_by, p_by, p_at, p_at
        FROM newest WHERE is_deleted = 0
        RETURNING id, version
    ), logged AS (
        INSERT INTO audit (timestamp, task_id, action_type, action_data,
                           memory_operation_type, memory_namespace, memory_entry_id)
        SELECT p_at, p_task, 'memory_update',
               jsonb_build_object('by', p_by, 'key', p_key, 'version', version),
               'update', p_ns, id FROM new
    )
    SELECT (SELECT version FROM new) INTO new_version;
END $$;

-- The session row is updated (and so locked) first, so appends to one session
-- take seqs one after the other; a session that is not writable is left as it
-- was. The state delta comes split by scope: the session's own keys, and the
-- app's and the user's (NULL when none), each merged into the stored object
-- (||), so concurrent sessions of one app lose no key.
CREATE OR REPLACE FUNCTION memkit_append_event(
    p_sid text, p_event jsonb, p_at timestamp, p_own jsonb, p_app jsonb, p_user jsonb,
    p_keys jsonb, OUT session_status text, OUT event_seq integer)
LANGUAGE plpgsql AS $$
DECLARE
    app text;
    usr text;
BEGIN
    UPDATE sessions AS s SET state = s.state || p_own, last_update_time = p_at
    WHERE s.id = p_sid AND s.status IN ('created', 'active', 'paused')
    RETURNING s.status, s.app_name, s.user_id INTO session_status, app, usr;
    IF NOT FOUND THEN  -- no such session (NULL), or its status
        SELECT s.status INTO session_status FROM sessions AS s WHERE s.id = p_sid;
        RETURN;
    END IF;
    event_seq := coalesce(
        (SELECT max(e.seq) FROM session_events AS e WHERE e.session_id = p_sid), 0) + 1;
    INSERT INTO session_events (session_id, seq, event, created_at)
    VALUES (p_sid, event_seq, p_event, p_at);
    IF p_app IS NOT NULL THEN
        INSERT INTO app_states (app_name, state, updated_at) VALUES (app, p_app, p_at)
        ON CONFLICT (app_name) DO UPDATE SET state = app_states.state || excluded.state,
            updated_at = excluded.updated_at;
    END IF;
    IF p_user IS NOT NULL THEN
        INSERT INTO user_states (app_name, user_id, state, updated_at)
        VALUES (app, usr, p_user, p_at)
        ON CONFLICT (app_name, user_id) DO UPDATE SET
            state = user_states.state || excluded.state, updated_at = excluded.updated_at;
    END IF;
    INSERT INTO audit (timestamp, action_type, action_data)
    VALUES (p_at, 'session_event_appended', jsonb_build_object(
        'session_id', p_sid, 'seq', event_seq, 'state_keys', p_keys));
END $$;

INSERT INTO memkit_schema (version) VALUES (10) ON CONFLICT DO NOTHING;
