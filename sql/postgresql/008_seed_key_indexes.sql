-- abathur-memkit schema for PostgreSQL, migration 008: the seeds' unique
-- indexes on a key become that key's constraint. Until now each of these
-- columns had two identical unique indexes (the constraint's and the seeds'),
-- so every insert, and every update that is not HOT (a session's event moves
-- its indexed last_update_time), wrote the same entry twice:
--   memory_entries(id)       idx_memory_entries_pk    primary key
--   sessions(id)             idx_sessions_pk          primary key
--   document_index(id)       idx_document_index_pk    primary key
--   document_index(file_path) idx_document_file_path  unique
-- The constraint takes the seeds' index and name. Foreign keys that point at
-- the key (audit's, session_events', tasks', ..., and any a user added)
-- depend on the old index, so they are dropped and added back as they were,
-- all in this one transaction. SQLite has no such pairs (its ids are rowids
-- or one index each): this number is PostgreSQL's alone.

CREATE FUNCTION pg_temp.memkit_adopt_index(tab regclass, idx text, kind "char")
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old record;
    fk record;
    fks text[] := '{}';
BEGIN
    -- The constraint of this kind whose index has the seeds' index's columns.
    SELECT c.conname, c.conindid INTO old FROM pg_constraint c
    JOIN pg_index o ON o.indexrelid = c.conindid
    JOIN pg_index s ON s.indexrelid = format('%I', idx)::regclass
    WHERE c.conrelid = tab AND c.contype = kind AND o.indkey = s.indkey;
    IF old.conname IS NOT DISTINCT FROM idx THEN
        RETURN;
    END IF;
    FOR fk IN
        SELECT conrelid::regclass AS ref, conname, pg_get_constraintdef(oid) AS def
        FROM pg_constraint WHERE contype = 'f' AND confrelid = tab AND conindid = old.conindid
        ORDER BY conrelid::regclass::text, conname
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.ref, fk.conname);
        fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.ref, fk.conname, fk.def);
    END LOOP;
    IF old.conname IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tab, old.conname);
    END IF;
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s USING INDEX %I', tab, idx,
                   CASE kind WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, idx);
    FOR i IN 1 .. coalesce(array_length(fks, 1), 0) LOOP
        EXECUTE fks[i];
    END LOOP;
END $$;

SELECT pg_temp.memkit_adopt_index('memory_entries', 'idx_memory_entries_pk', 'p');
SELECT pg_temp.memkit_adopt_index('sessions', 'idx_sessions_pk', 'p');
SELECT pg_temp.memkit_adopt_index('document_index', 'idx_document_index_pk', 'p');
SELECT pg_temp.memkit_adopt_index('document_index', 'idx_document_file_path', 'u');
DROP FUNCTION pg_temp.memkit_adopt_index(regclass, text, "char");

INSERT INTO memkit_schema (version) VALUES (8) ON CONFLICT DO NOTHING;
