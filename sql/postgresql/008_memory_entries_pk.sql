-- abathur-memkit schema for PostgreSQL, migration 008: memory_entries' primary
-- key becomes the seeds' idx_memory_entries_pk. Until now the table had two
-- unique indexes on id (memory_entries_pkey and idx_memory_entries_pk), so
-- every new version wrote the same entry twice. The constraint keeps the
-- seeds' index and name; the foreign keys that point at memory_entries(id)
-- (audit.memory_entry_id, and any a user added) depend on the old index, so
-- they are dropped and added back as they were, in this one transaction.
-- SQLite has no such pair (its id is the rowid): this number is PostgreSQL's
-- alone, and validate checks each engine against its own newest migration.

DO $$
DECLARE
    pk text;
    fk record;
    fks text[] := '{}';
BEGIN
    SELECT conname INTO pk FROM pg_constraint
    WHERE conrelid = 'memory_entries'::regclass AND contype = 'p';
    IF pk IS NOT DISTINCT FROM 'idx_memory_entries_pk' THEN
        RETURN;
    END IF;
    FOR fk IN
        SELECT conrelid::regclass AS tab, conname, pg_get_constraintdef(oid) AS def
        FROM pg_constraint WHERE confrelid = 'memory_entries'::regclass AND contype = 'f'
        ORDER BY conrelid::regclass::text, conname
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tab, fk.conname);
        fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.tab, fk.conname, fk.def);
    END LOOP;
    IF pk IS NOT NULL THEN
        EXECUTE format('ALTER TABLE memory_entries DROP CONSTRAINT %I', pk);
    END IF;
    ALTER TABLE memory_entries
        ADD CONSTRAINT idx_memory_entries_pk PRIMARY KEY USING INDEX idx_memory_entries_pk;
    FOR i IN 1 .. coalesce(array_length(fks, 1), 0) LOOP
        EXECUTE fks[i];
    END LOOP;
END $$;

INSERT INTO memkit_schema (version) VALUES (8) ON CONFLICT DO NOTHING;
