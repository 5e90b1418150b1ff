-- abathur-memkit schema, migration 005: the head of each live memory key.
--
-- A scope-wide read ("the latest live version of each key under user, most
-- recent first") used to find each key's latest live version among all its
-- versions, then sort: 220 ms at 100k memories. memory_heads holds one row per
-- key that has a live version: that version's id, number, type and updated_at.
-- Walking idx_memory_heads_recent newest first finds the top k in k steps; the
-- primary key gives the keys and namespaces under a prefix.
--
-- Triggers on memory_entries keep it exact in the writer's own transaction, so
-- every write path (the services, batch inserts, raw SQL) is covered.

CREATE TABLE IF NOT EXISTS memory_heads (
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    entry_id    INTEGER NOT NULL,       -- memory_entries.id of the latest live version
    version     INTEGER NOT NULL,
    memory_type TEXT NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS idx_memory_heads_recent
    ON memory_heads(updated_at DESC, entry_id DESC, memory_type);

-- A new live version becomes the head unless the key has a newer live one.
CREATE TRIGGER IF NOT EXISTS memory_heads_insert AFTER INSERT ON memory_entries
WHEN new.is_deleted = 0 BEGIN
    INSERT INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    VALUES (new.namespace, new.key, new.id, new.version, new.memory_type, new.updated_at)
    ON CONFLICT (namespace, key) DO UPDATE SET
        entry_id = excluded.entry_id, version = excluded.version,
        memory_type = excluded.memory_type, updated_at = excluded.updated_at
    WHERE excluded.version > memory_heads.version;
END;

-- A delete, restore or any other change to a version: look the key's head up again.
CREATE TRIGGER IF NOT EXISTS memory_heads_update
AFTER UPDATE OF namespace, key, version, is_deleted, memory_type, updated_at ON memory_entries
BEGIN
    DELETE FROM memory_heads WHERE namespace = old.namespace AND key = old.key;
    INSERT INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    SELECT namespace, key, id, version, memory_type, updated_at FROM memory_entries
    WHERE namespace = old.namespace AND key = old.key AND is_deleted = 0
    ORDER BY version DESC LIMIT 1;
END;

CREATE TRIGGER IF NOT EXISTS memory_heads_move
AFTER UPDATE OF namespace, key ON memory_entries
WHEN new.namespace IS NOT old.namespace OR new.key IS NOT old.key BEGIN
    DELETE FROM memory_heads WHERE namespace = new.namespace AND key = new.key;
    INSERT INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    SELECT namespace, key, id, version, memory_type, updated_at FROM memory_entries
    WHERE namespace = new.namespace AND key = new.key AND is_deleted = 0
    ORDER BY version DESC LIMIT 1;
END;

CREATE TRIGGER IF NOT EXISTS memory_heads_delete AFTER DELETE ON memory_entries BEGIN
    DELETE FROM memory_heads WHERE namespace = old.namespace AND key = old.key;
    INSERT INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    SELECT namespace, key, id, version, memory_type, updated_at FROM memory_entries
    WHERE namespace = old.namespace AND key = old.key AND is_deleted = 0
    ORDER BY version DESC LIMIT 1;
END;

-- The namespaces that hold at least one head, for list_namespaces: a range of
-- this small table instead of a seek per namespace. A write to a namespace
-- that is listed already only reads it (INSERT OR IGNORE), so it costs no page.
CREATE TABLE IF NOT EXISTS memory_namespaces (
    namespace TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS memory_namespaces_insert AFTER INSERT ON memory_heads BEGIN
    INSERT OR IGNORE INTO memory_namespaces (namespace) VALUES (new.namespace);
END;

CREATE TRIGGER IF NOT EXISTS memory_namespaces_delete AFTER DELETE ON memory_heads
WHEN NOT EXISTS (SELECT 1 FROM memory_heads WHERE namespace = old.namespace) BEGIN
    DELETE FROM memory_namespaces WHERE namespace = old.namespace;
END;

-- Memories written before this migration: max() picks the other columns from
-- the row that holds the maximum.
INSERT OR IGNORE INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    SELECT namespace, key, id, max(version), memory_type, updated_at FROM memory_entries
    WHERE is_deleted = 0 GROUP BY namespace, key;

PRAGMA user_version = 5;
