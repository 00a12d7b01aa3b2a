//! The service desk's solution pool: articles (a title, a body, topics and tags) that agents
//! search, suggest for a ticket and cite when they resolve one (`uses` counts the citations).
//!
//! Search is full-text, ranked by relevance: SQLite's FTS5 (`articles_fts`, bm25) and
//! PostgreSQL's `tsvector` (`articles.search`, ts_rank), each behind its own SQL since the
//! two dialects share none here. A caller's query never reaches either syntax: it is cut into
//! words (letters and digits), and each word of three characters or more is matched as a prefix (shorter ones whole),
//! any word matching (OR);
//! more matching words, words in the title and rarer words rank higher. Both databases match
//! the same words, so they return the same articles; their scores differ in scale.

use bakkal_domain::time::Micros;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::args::{bind, Arg, SqlBuilder};
use crate::lock::{lock_key, lock_row};
use crate::page::Cursor;
#[allow(unused_imports)] // named in the docs
use crate::WriteTx;
use crate::{Backend, Result, Store, StoreError};

/// Words of a query used at most.
pub const MAX_SEARCH_TERMS: usize = 32;
/// Query words at least this long match as prefixes.
const MIN_PREFIX_CHARS: usize = 3;
/// Characters of one query word used at most.
const MAX_TERM_CHARS: usize = 64;

/// `articles/{id}`.
pub fn article_name(id: i64) -> String {
    format!("articles/{id}")
}

/// A stored article.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    pub id: i64,
    pub title: String,
    pub body: String,
    /// Lower-case, in the order given.
    pub topics: Vec<String>,
    /// Lower-case, in the order given.
    pub tags: Vec<String>,
    /// How many resolved tickets cited it.
    pub uses: i64,
    /// Incremented on every edit (the etag); a use does not change it.
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl Article {
    pub fn name(&self) -> String {
        article_name(self.id)
    }

    pub fn etag(&self) -> String {
        bakkal_domain::etag(self.version)
    }
}

/// An article to create, already validated and normalised by the transport.
#[derive(Debug, Clone, Default)]
pub struct ArticleFields {
    pub title: String,
    pub body: String,
    pub topics: Vec<String>,
    pub tags: Vec<String>,
}

/// The changes of an update; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ArticleChanges {
    pub title: Option<String>,
    pub body: Option<String>,
    pub topics: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// One search result: the article and its relevance (higher is better; comparable only
/// within one search).
#[derive(Debug, Clone, PartialEq)]
pub struct ArticleHit {
    pub article: Article,
    pub score: f64,
}

/// The words of a search query: runs of letters and digits, lower-cased, each once, at most
/// [`MAX_SEARCH_TERMS`] of at most 64 characters. Quotes, operators and punctuation are
/// separators, so no query can reach the full-text syntax of either database.
pub fn search_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        // Turkish İ lower-cases to i + a combining dot; the databases index it as i (PostgreSQL)
        // or keep it (SQLite: see `fts5_query`), never with the dot.
        let term: String = word
            .chars()
            .take(MAX_TERM_CHARS)
            .collect::<String>()
            .to_lowercase()
            .replace("i\u{307}", "i");
        if !terms.contains(&term) {
            terms.push(term);
            if terms.len() == MAX_SEARCH_TERMS {
                break;
            }
        }
    }
    terms
}

/// An FTS5 query: every term a quoted prefix, any of them matching. SQLite's unicode61
/// tokenizer folds every capital but the Turkish İ, so a word starting with `i` is also looked
/// for starting with `İ` (`İade`, `İstanbul`); an İ inside an upper-case word is not found.
fn fts5_query(terms: &[String]) -> String {
    let mut parts = Vec::with_capacity(terms.len());
    for t in terms {
        let star = if is_prefix(t) { "*" } else { "" };
        parts.push(format!("\"{t}\"{star}"));
        if let Some(rest) = t.strip_prefix('i') {
            parts.push(format!("\"İ{rest}\"{star}"));
        }
    }
    parts.join(" OR ")
}

/// Words of three characters or more match as prefixes; shorter ones (`a`, `is`, `my`) only
/// as whole words, or they would match nearly everything.
fn is_prefix(term: &str) -> bool {
    term.chars().count() >= MIN_PREFIX_CHARS
}

/// A tsquery: every term a prefix, any of them matching.
fn tsquery(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| {
            if is_prefix(t) {
                format!("{t}:*")
            } else {
                t.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A short excerpt of `body` around the first word matching a term (as a prefix), the
/// matching words marked `**like this**`; the start of the body when nothing matches.
pub fn snippet(body: &str, terms: &[String], max_words: usize) -> String {
    let words: Vec<&str> = body.split_whitespace().collect();
    let matches = |w: &str| {
        let lw = w.to_lowercase();
        lw.split(|c: char| !c.is_alphanumeric()).any(|part| {
            !part.is_empty()
                && terms
                    .iter()
                    .any(|t| part == t.as_str() || (is_prefix(t) && part.starts_with(t.as_str())))
        })
    };
    let first = words.iter().position(|w| matches(w)).unwrap_or(0);
    let max_words = max_words.max(1);
    let start = first.saturating_sub(max_words / 4);
    let end = (start + max_words).min(words.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    for (i, w) in words[start..end].iter().enumerate() {
        if i > 0 || start > 0 {
            out.push(' ');
        }
        if matches(w) {
            out.push_str("**");
            out.push_str(w);
            out.push_str("**");
        } else {
            out.push_str(w);
        }
    }
    if end < words.len() {
        out.push_str(" …");
    }
    out
}

const COLUMNS: &str =
    "a.id, a.title, a.body, a.topics, a.tags, a.uses, a.version, a.create_time, a.update_time";

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn article_from_row(r: &AnyRow) -> std::result::Result<Article, sqlx::Error> {
    let topics: String = r.try_get(3)?;
    let tags: String = r.try_get(4)?;
    Ok(Article {
        id: r.try_get(0)?,
        title: r.try_get(1)?,
        body: r.try_get(2)?,
        topics: json_list(&topics),
        tags: json_list(&tags),
        uses: r.try_get(5)?,
        version: r.try_get(6)?,
        create_time: r.try_get(7)?,
        update_time: r.try_get(8)?,
    })
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

async fn load(conn: &mut AnyConnection, id: i64) -> Result<Article> {
    let sql = format!("SELECT {COLUMNS} FROM articles a WHERE a.id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(article_from_row(&r)?),
        None => Err(StoreError::NotFound(article_name(id))),
    }
}

async fn write_topics(conn: &mut AnyConnection, id: i64, topics: &[String]) -> Result<()> {
    sqlx::query("DELETE FROM article_topics WHERE article_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for topic in topics {
        sqlx::query(
            "INSERT INTO article_topics (article_id, topic) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(topic.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn replayed(conn: &mut AnyConnection, key: Option<&str>) -> Result<Option<i64>> {
    let Some(key) = key else { return Ok(None) };
    let resource: Option<String> =
        sqlx::query_scalar("SELECT resource FROM idempotency_keys WHERE key = $1")
            .bind(key.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(resource.and_then(|r| bakkal_domain::name::parse_id(&r, "articles")))
}

/// Count one use of article `id` (a ticket resolved with it), inside the caller's write
/// transaction (`use_article(&mut tx, id)` with a [`WriteTx`]). NOT_FOUND when there is no
/// such article.
pub async fn use_article(tx: &mut AnyConnection, id: i64) -> Result<()> {
    let done = sqlx::query("UPDATE articles SET uses = uses + 1 WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(article_name(id)));
    }
    Ok(())
}

impl Store {
    /// Create an article. With a `request_id` seen before, return the article that first
    /// request created.
    pub async fn create_article(
        &self,
        fields: ArticleFields,
        request_id: Option<&str>,
        now: Micros,
    ) -> Result<Article> {
        let key = request_id.map(|r| format!("CreateArticle/{r}"));
        match self.try_create_article(&fields, key.as_deref(), now).await {
            Err(e) if e.is_unique_violation() => {
                let mut conn = self.acquire().await?;
                match replayed(&mut conn, key.as_deref()).await? {
                    Some(id) => load(&mut conn, id).await,
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn try_create_article(
        &self,
        f: &ArticleFields,
        key: Option<&str>,
        now: Micros,
    ) -> Result<Article> {
        let mut tx = self.write_tx().await?;
        if let Some(key) = key {
            lock_key(&mut tx, key).await?;
        }
        if let Some(id) = replayed(&mut tx, key).await? {
            let a = load(&mut tx, id).await?;
            tx.commit().await?;
            return Ok(a);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO articles (title, body, topics, tags, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(f.title.clone())
        .bind(f.body.clone())
        .bind(to_json(&f.topics))
        .bind(to_json(&f.tags))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        write_topics(&mut tx, id, &f.topics).await?;
        if let Some(key) = key {
            sqlx::query(
                "INSERT INTO idempotency_keys (key, resource, create_time) VALUES ($1, $2, $3)",
            )
            .bind(key.to_string())
            .bind(article_name(id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let a = load(&mut tx, id).await?;
        tx.audit_call(a.name());
        tx.commit().await?;
        Ok(a)
    }

    pub async fn get_article(&self, id: i64) -> Result<Article> {
        let mut conn = self.acquire().await?;
        load(&mut conn, id).await
    }

    /// Articles in creation order, optionally of one topic.
    pub async fn list_articles(
        &self,
        topic: Option<&str>,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Article>, Option<Cursor>)> {
        let mut b = SqlBuilder::new(format!("SELECT {COLUMNS} FROM articles a WHERE 1 = 1"));
        if let Some(t) = topic {
            b.push(" AND EXISTS (SELECT 1 FROM article_topics t WHERE t.article_id = a.id AND t.topic = ")
                .arg(Arg::Text(t.to_string()))
                .push(")");
        }
        match after {
            Some(Cursor::Int(_, id)) => {
                b.push(" AND a.id > ").arg(Arg::Int(*id));
            }
            Some(_) => return Err(crate::customers::bad_token()),
            None => {}
        }
        b.push(" ORDER BY a.id LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(article_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(crate::page::split_page(out, page_size, |a| {
            Cursor::Int(a.id, a.id)
        }))
    }

    /// Change the fields given. A stale `etag` is ABORTED; no change leaves the version alone.
    pub async fn update_article(
        &self,
        id: i64,
        changes: ArticleChanges,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Article> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "articles", id).await?;
        let current = load(&mut tx, id).await?;
        if let Some(e) = etag.map(str::trim).filter(|e| !e.is_empty()) {
            if e != current.etag() {
                return Err(StoreError::Aborted(format!(
                    "{} was changed since it was read (etag {e}, now {}); read it again",
                    current.name(),
                    current.etag()
                )));
            }
        }
        let next = Article {
            title: changes.title.unwrap_or_else(|| current.title.clone()),
            body: changes.body.unwrap_or_else(|| current.body.clone()),
            topics: changes.topics.unwrap_or_else(|| current.topics.clone()),
            tags: changes.tags.unwrap_or_else(|| current.tags.clone()),
            ..current.clone()
        };
        if next == current {
            tx.commit().await?;
            return Ok(current);
        }
        sqlx::query(
            "UPDATE articles SET title = $1, body = $2, topics = $3, tags = $4, \
             version = version + 1, update_time = $5 WHERE id = $6",
        )
        .bind(next.title.clone())
        .bind(next.body.clone())
        .bind(to_json(&next.topics))
        .bind(to_json(&next.tags))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if next.topics != current.topics {
            write_topics(&mut tx, id, &next.topics).await?;
        }
        let a = load(&mut tx, id).await?;
        tx.audit_call(a.name());
        tx.commit().await?;
        Ok(a)
    }

    /// The articles matching any word of `query` (see [`search_terms`]), most relevant first
    /// (ties: most used, then oldest), optionally of one topic; at most `limit`. A query
    /// without a word finds nothing.
    pub async fn search_articles(
        &self,
        query: &str,
        topic: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ArticleHit>> {
        let terms = search_terms(query);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut b = match self.backend {
            Backend::Sqlite => {
                // bm25 is lower for better matches; title counts 5×, tags 2×, body 1×.
                let mut b = SqlBuilder::new(format!(
                    "SELECT {COLUMNS}, -bm25(articles_fts, 5.0, 1.0, 2.0) AS score \
                     FROM articles_fts JOIN articles a ON a.id = articles_fts.rowid \
                     WHERE articles_fts MATCH "
                ));
                b.arg(Arg::Text(fts5_query(&terms)));
                b
            }
            Backend::Postgres => {
                // Title is weight A, tags B, body C (ts_rank's defaults 1.0, 0.4, 0.2).
                let mut b = SqlBuilder::new(format!(
                    "SELECT {COLUMNS}, ts_rank(a.search, q)::float8 AS score \
                     FROM articles a, to_tsquery('simple'::regconfig, "
                ));
                b.arg(Arg::Text(tsquery(&terms)))
                    .push(") q WHERE a.search @@ q");
                b
            }
        };
        if let Some(t) = topic {
            b.push(" AND EXISTS (SELECT 1 FROM article_topics t WHERE t.article_id = a.id AND t.topic = ")
                .arg(Arg::Text(t.to_string()))
                .push(")");
        }
        b.push(" ORDER BY score DESC, a.uses DESC, a.id LIMIT ")
            .arg(Arg::Int(limit as i64));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ArticleHit {
                    article: article_from_row(r)?,
                    score: r.try_get::<f64, _>(9)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// [`use_article`] in a transaction of its own (for tests and tools).
    pub async fn use_article(&self, id: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        use_article(&mut tx, id).await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_reduced_to_words() {
        assert_eq!(
            search_terms(r#"  "Refund" OR card* NEAR(x y) -- ; DROP TABLE'"#),
            ["refund", "or", "card", "near", "x", "y", "drop", "table"]
        );
        assert_eq!(search_terms("İade kargo KARGO İADE"), ["iade", "kargo"]);
        assert_eq!(fts5_query(&search_terms("İade")), "\"iade\"* OR \"İade\"*");
        assert!(search_terms("\"*^:()!&|").is_empty());
        assert_eq!(search_terms(&"a ".repeat(100)).len(), 1);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(search_terms(&many).len(), MAX_SEARCH_TERMS);
        assert_eq!(fts5_query(&search_terms("a card")), "\"a\" OR \"card\"*");
        assert_eq!(tsquery(&search_terms("a card")), "a | card:*");
    }

    #[test]
    fn snippets_mark_the_matching_words() {
        let body = "First open the app. Then go to Orders, pick the order and press Refund. \
                    The money is back within five days.";
        let terms = search_terms("refund");
        assert_eq!(
            snippet(body, &terms, 8),
            "… and press **Refund.** The money is back within …"
        );
        assert_eq!(snippet("short text", &terms, 8), "short text");
    }
}
