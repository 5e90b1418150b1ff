-- abathur-memkit schema for PostgreSQL, migration 009: a change to memory
-- versions looks the key's head up again once per changed row (005), so a
-- restore of a key with n versions rewrote the same head n - 1 times, each a
-- new row version and its WAL. The upsert now writes a head only when it
-- changes; NOT FOUND then also means "unchanged", so the DELETE checks that
-- the key has no live version left. SQLite's 005 deletes and inserts, and its
-- triggers are not touched here.

CREATE OR REPLACE FUNCTION memkit_refresh_memory_head(ns text, k text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    SELECT namespace, key, id, version, memory_type, updated_at FROM memory_entries
    WHERE namespace = ns AND key = k AND is_deleted = 0
    ORDER BY version DESC LIMIT 1
    ON CONFLICT (namespace, key) DO UPDATE SET
        entry_id = excluded.entry_id, version = excluded.version,
        memory_type = excluded.memory_type, updated_at = excluded.updated_at
    WHERE (memory_heads.entry_id, memory_heads.version, memory_heads.memory_type,
           memory_heads.updated_at)
          IS DISTINCT FROM (excluded.entry_id, excluded.version, excluded.memory_type,
                            excluded.updated_at);
    IF NOT FOUND THEN
        DELETE FROM memory_heads WHERE namespace = ns AND key = k AND NOT EXISTS (
            SELECT 1 FROM memory_entries WHERE namespace = ns AND key = k AND is_deleted = 0);
    END IF;
END $$;

INSERT INTO memkit_schema (version) VALUES (9) ON CONFLICT DO NOTHING;
