-- abathur-memkit schema, migration 004: what search needs that no extension does.
-- Document chunks with their full-text index, the memory full-text index, the
-- registry of vector indexes, and the queue that keeps memory search in step
-- with memory writes. The vector tables themselves (sqlite-vec vec0 or
-- sqlite-vss vss0) need the extension and the embedding dimension, so
-- abathur_memkit.search creates them from Python when an embedder is first used.
-- No named indexes here: UNIQUE constraints give every lookup its index.

-- One row per chunk of an indexed markdown file (headed section, split at a
-- token bound with overlap). Offsets are character offsets into the file's text.
CREATE TABLE IF NOT EXISTS document_chunks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id  INTEGER NOT NULL REFERENCES document_index(id) ON DELETE CASCADE,
    chunk_index  INTEGER NOT NULL,
    heading_path TEXT NOT NULL DEFAULT '',   -- "Title > Section > Subsection"
    start_offset INTEGER NOT NULL,
    end_offset   INTEGER NOT NULL,
    token_count  INTEGER NOT NULL,
    text         TEXT NOT NULL,
    embedding_model      TEXT,               -- NULL until embedded
    embedding_dimensions INTEGER,
    CHECK (chunk_index >= 0),
    CHECK (start_offset >= 0 AND end_offset >= start_offset),
    UNIQUE (document_id, chunk_index)
);

-- Vectors whose row is gone (a changed file's old chunks, a memory's old
-- version). Triggers record them here; they are deleted from the vector index
-- by the next write that has the vector extension loaded, so rows can be
-- deleted by any connection, with or without the extension.
CREATE TABLE IF NOT EXISTS vector_garbage (
    index_name TEXT NOT NULL,
    id         INTEGER NOT NULL,
    PRIMARY KEY (index_name, id)
) WITHOUT ROWID;

-- BM25 keyword search over chunks (external content: the text is stored once).
CREATE VIRTUAL TABLE IF NOT EXISTS document_chunks_fts USING fts5(
    text, heading_path,
    content = 'document_chunks', content_rowid = 'id',
    tokenize = 'porter unicode61'
);

CREATE TRIGGER IF NOT EXISTS document_chunks_fts_insert AFTER INSERT ON document_chunks BEGIN
    INSERT INTO document_chunks_fts (rowid, text, heading_path)
    VALUES (new.id, new.text, new.heading_path);
END;

CREATE TRIGGER IF NOT EXISTS document_chunks_fts_delete AFTER DELETE ON document_chunks BEGIN
    INSERT INTO document_chunks_fts (document_chunks_fts, rowid, text, heading_path)
    VALUES ('delete', old.id, old.text, old.heading_path);
    INSERT OR IGNORE INTO vector_garbage (index_name, id)
    SELECT 'chunks', old.id WHERE old.embedding_model IS NOT NULL;
END;

CREATE TRIGGER IF NOT EXISTS document_chunks_fts_update
AFTER UPDATE OF text, heading_path ON document_chunks BEGIN
    INSERT INTO document_chunks_fts (document_chunks_fts, rowid, text, heading_path)
    VALUES ('delete', old.id, old.text, old.heading_path);
    INSERT INTO document_chunks_fts (rowid, text, heading_path)
    VALUES (new.id, new.text, new.heading_path);
END;

-- The latest live version of each memory key, as search sees it. entry_id is
-- that version's memory_entries.id; the vector and the full-text row use it.
CREATE TABLE IF NOT EXISTS memory_search_items (
    entry_id             INTEGER PRIMARY KEY,
    namespace            TEXT NOT NULL,
    key                  TEXT NOT NULL,
    memory_type          TEXT NOT NULL,
    embedding_model      TEXT,               -- NULL until embedded
    embedding_dimensions INTEGER,
    UNIQUE (namespace, key)
);

CREATE TRIGGER IF NOT EXISTS memory_search_items_delete AFTER DELETE ON memory_search_items BEGIN
    INSERT OR IGNORE INTO vector_garbage (index_name, id)
    SELECT 'memories', old.entry_id WHERE old.embedding_model IS NOT NULL;
END;

CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(
    key, text,
    tokenize = 'porter unicode61'
);

-- Keys whose latest live version may have changed since search last looked.
-- Filled by triggers (so every writer, batch and raw SQL included, is seen);
-- drained by the search service before it searches memories.
CREATE TABLE IF NOT EXISTS memory_search_queue (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS memory_search_queue_insert AFTER INSERT ON memory_entries BEGIN
    INSERT OR IGNORE INTO memory_search_queue (namespace, key) VALUES (new.namespace, new.key);
END;

CREATE TRIGGER IF NOT EXISTS memory_search_queue_update
AFTER UPDATE OF is_deleted, value, memory_type ON memory_entries BEGIN
    INSERT OR IGNORE INTO memory_search_queue (namespace, key) VALUES (new.namespace, new.key);
END;

CREATE TRIGGER IF NOT EXISTS memory_search_queue_delete AFTER DELETE ON memory_entries BEGIN
    INSERT OR IGNORE INTO memory_search_queue (namespace, key) VALUES (old.namespace, old.key);
END;

-- Memories written before this migration are searchable too.
INSERT OR IGNORE INTO memory_search_queue (namespace, key)
    SELECT DISTINCT namespace, key FROM memory_entries;

-- One row per vector index ('chunks', 'memories'): which backend holds it and
-- which model made its vectors. A different model or dimension makes the
-- index stale until reembed().
CREATE TABLE IF NOT EXISTS vector_indexes (
    name       TEXT PRIMARY KEY,
    backend    TEXT NOT NULL,
    model      TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    settings   TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK (backend IN ('vec', 'vss')),
    CHECK (dimensions > 0),
    CHECK (json_valid(settings))
);

PRAGMA user_version = 4;
