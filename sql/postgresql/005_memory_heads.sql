-- abathur-memkit schema for PostgreSQL, migration 005: the head of each live
-- memory key (see sql/005_memory_heads.sql for why). The triggers keep it
-- exact in the writer's own transaction, so every write path (the services,
-- batch inserts, raw SQL) is covered, as on SQLite.

CREATE TABLE IF NOT EXISTS memory_heads (
    namespace   text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    entry_id    bigint NOT NULL,        -- memory_entries.id of the latest live version
    version     integer NOT NULL,
    memory_type text COLLATE "C" NOT NULL,
    updated_at  timestamp NOT NULL,
    PRIMARY KEY (namespace, key)
);

CREATE INDEX IF NOT EXISTS idx_memory_heads_recent
    ON memory_heads(updated_at DESC, entry_id DESC, memory_type);

-- A new live version becomes the head unless the key has a newer live one.
-- ON CONFLICT takes the head's row lock, so concurrent writers of one key
-- leave the highest version, whichever commits first.
CREATE OR REPLACE FUNCTION memkit_memory_heads_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    VALUES (NEW.namespace, NEW.key, NEW.id, NEW.version, NEW.memory_type, NEW.updated_at)
    ON CONFLICT (namespace, key) DO UPDATE SET
        entry_id = excluded.entry_id, version = excluded.version,
        memory_type = excluded.memory_type, updated_at = excluded.updated_at
    WHERE excluded.version > memory_heads.version;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER memory_heads_insert AFTER INSERT ON memory_entries
FOR EACH ROW WHEN (NEW.is_deleted = 0) EXECUTE FUNCTION memkit_memory_heads_insert();

-- Look a key's head up again: its newest live version, or no head. An upsert
-- rather than SQLite's delete-and-insert, so memory_namespaces does not churn.
CREATE OR REPLACE FUNCTION memkit_refresh_memory_head(ns text, k text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    SELECT namespace, key, id, version, memory_type, updated_at FROM memory_entries
    WHERE namespace = ns AND key = k AND is_deleted = 0
    ORDER BY version DESC LIMIT 1
    ON CONFLICT (namespace, key) DO UPDATE SET
        entry_id = excluded.entry_id, version = excluded.version,
        memory_type = excluded.memory_type, updated_at = excluded.updated_at;
    IF NOT FOUND THEN
        DELETE FROM memory_heads WHERE namespace = ns AND key = k;
    END IF;
END $$;

-- A delete, restore or any other change to a version: look the key's head up
-- again, and the head of the key it moved to (SQLite's memory_heads_move).
CREATE OR REPLACE FUNCTION memkit_memory_heads_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM memkit_refresh_memory_head(OLD.namespace, OLD.key);
    IF TG_OP = 'UPDATE'
       AND (NEW.namespace IS DISTINCT FROM OLD.namespace OR NEW.key IS DISTINCT FROM OLD.key) THEN
        PERFORM memkit_refresh_memory_head(NEW.namespace, NEW.key);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER memory_heads_update
AFTER UPDATE OF namespace, key, version, is_deleted, memory_type, updated_at ON memory_entries
FOR EACH ROW EXECUTE FUNCTION memkit_memory_heads_change();

CREATE OR REPLACE TRIGGER memory_heads_delete AFTER DELETE ON memory_entries
FOR EACH ROW EXECUTE FUNCTION memkit_memory_heads_change();

-- The namespaces that hold at least one head, for list_namespaces.
CREATE TABLE IF NOT EXISTS memory_namespaces (
    namespace text COLLATE "C" PRIMARY KEY
);

-- Under concurrent writers, the transaction that removes a namespace's last
-- head must not miss a head another transaction adds: adders hold a shared
-- lock on the namespace until they commit, the remover takes it exclusively
-- and looks again (each statement of a PL/pgSQL function sees what committed
-- before it began).
CREATE OR REPLACE FUNCTION memkit_memory_namespaces_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('memkit namespace ' || NEW.namespace, 0));
    INSERT INTO memory_namespaces (namespace) VALUES (NEW.namespace) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER memory_namespaces_insert AFTER INSERT ON memory_heads
FOR EACH ROW EXECUTE FUNCTION memkit_memory_namespaces_insert();

CREATE OR REPLACE FUNCTION memkit_memory_namespaces_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM memory_heads WHERE namespace = OLD.namespace) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('memkit namespace ' || OLD.namespace, 0));
    IF NOT EXISTS (SELECT 1 FROM memory_heads WHERE namespace = OLD.namespace) THEN
        DELETE FROM memory_namespaces WHERE namespace = OLD.namespace;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER memory_namespaces_delete AFTER DELETE ON memory_heads
FOR EACH ROW EXECUTE FUNCTION memkit_memory_namespaces_delete();

-- Memories written before this migration.
INSERT INTO memory_heads (namespace, key, entry_id, version, memory_type, updated_at)
    SELECT DISTINCT ON (namespace, key) namespace, key, id, version, memory_type, updated_at
    FROM memory_entries WHERE is_deleted = 0
    ORDER BY namespace, key, version DESC
ON CONFLICT DO NOTHING;

INSERT INTO memkit_schema (version) VALUES (5) ON CONFLICT DO NOTHING;
