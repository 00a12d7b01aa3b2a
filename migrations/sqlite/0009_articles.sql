-- The service desk's solution pool: articles agents search and cite when they resolve
-- tickets. Full-text search through an FTS5 external-content table kept in step by triggers
-- (title, body and tags are indexed; `uses` changes do not touch the index), ranked by bm25.
-- `topics` and `tags` are JSON arrays of lower-case strings; `article_topics` indexes the
-- topics for filtering. Times are microseconds since the Unix epoch (UTC).

CREATE TABLE articles (
    id              INTEGER PRIMARY KEY,
    title           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    topics          TEXT    NOT NULL DEFAULT '[]',
    tags            TEXT    NOT NULL DEFAULT '[]',
    uses            INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 1,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE article_topics (
    article_id      INTEGER NOT NULL,
    topic           TEXT    NOT NULL,
    PRIMARY KEY (topic, article_id)
);
CREATE INDEX article_topics_article ON article_topics (article_id);

CREATE VIRTUAL TABLE articles_fts USING fts5(
    title, body, tags,
    content = 'articles', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN
    INSERT INTO articles_fts (rowid, title, body, tags) VALUES (new.id, new.title, new.body, new.tags);
END;

CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, title, body, tags)
        VALUES ('delete', old.id, old.title, old.body, old.tags);
END;

CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, body, tags ON articles BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, title, body, tags)
        VALUES ('delete', old.id, old.title, old.body, old.tags);
    INSERT INTO articles_fts (rowid, title, body, tags) VALUES (new.id, new.title, new.body, new.tags);
END;
