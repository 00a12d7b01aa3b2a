//! The solution pool over gRPC: CreateArticle, GetArticle, ListArticles, UpdateArticle,
//! SearchArticles and SuggestArticles. Each handler takes the store, the request and the
//! desk's `now`; `ServiceDeskApi` delegates to them.

use bakkal_domain::time::Micros;
use bakkal_domain::ValidationError;
use bakkal_store::{
    search_terms, snippet, Article, ArticleChanges, ArticleFields, ArticleHit, Store,
};
use tonic::{Response, Status};

use super::convert::{mask_paths, reference, text};
use crate::convert::timestamp;
use crate::page_token;
use crate::proto;
use crate::status::{from_store, invalid, invalid_field};

const MAX_TITLE: usize = 200;
const MAX_ARTICLE_BODY: usize = 100_000;
const MAX_TOPICS: usize = 20;
const MAX_TAGS: usize = 50;
const MAX_LABEL: usize = 100;
const MAX_QUERY: usize = 1000;
const UPDATABLE: &[&str] = &["title", "body", "topics", "tags"];
/// Words of a body shown in a snippet.
const SNIPPET_WORDS: usize = 24;

pub fn article_to_proto(a: &Article) -> proto::Article {
    proto::Article {
        name: a.name(),
        title: a.title.clone(),
        body: a.body.clone(),
        topics: a.topics.clone(),
        tags: a.tags.clone(),
        uses: a.uses,
        create_time: Some(timestamp(a.create_time)),
        update_time: Some(timestamp(a.update_time)),
        etag: a.etag(),
    }
}

/// Topics or tags: trimmed, lower-cased, each once, none empty.
fn labels(errs: &mut ValidationError, field: &str, raw: &[String], max: usize) -> Vec<String> {
    if raw.len() > max {
        errs.add(field, format!("at most {max} values"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let v = v.trim().to_lowercase();
        if v.is_empty() {
            errs.add(format!("{field}[{i}]"), "must not be empty");
        } else if v.chars().count() > MAX_LABEL {
            errs.add(
                format!("{field}[{i}]"),
                format!("must be at most {MAX_LABEL} characters"),
            );
        } else if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn results(hits: Vec<ArticleHit>, query: &str) -> Vec<proto::ArticleSearchResult> {
    let terms = search_terms(query);
    hits.into_iter()
        .map(|h| proto::ArticleSearchResult {
            snippet: snippet(&h.article.body, &terms, SNIPPET_WORDS),
            article: Some(article_to_proto(&h.article)),
            score: h.score,
        })
        .collect()
}

fn result_size(size: i32, default: usize) -> Result<usize, Status> {
    match size {
        0 => Ok(default),
        1..=100 => Ok(size as usize),
        _ => Err(invalid_field(
            "page_size",
            format!("must be between 1 and 100, got {size}"),
        )),
    }
}

pub async fn create_article(
    store: &Store,
    req: proto::CreateArticleRequest,
    now: Micros,
) -> Result<Response<proto::Article>, Status> {
    let Some(a) = req.article else {
        return Err(invalid_field("article", "is required"));
    };
    let mut errs = ValidationError::new();
    let fields = ArticleFields {
        title: text(&mut errs, "article.title", &a.title, true, MAX_TITLE),
        body: text(&mut errs, "article.body", &a.body, true, MAX_ARTICLE_BODY),
        topics: labels(&mut errs, "article.topics", &a.topics, MAX_TOPICS),
        tags: labels(&mut errs, "article.tags", &a.tags, MAX_TAGS),
    };
    if req.request_id.len() > 200 {
        errs.add("request_id", "must be at most 200 characters");
    }
    errs.into_result().map_err(invalid)?;
    let request_id = Some(req.request_id.as_str()).filter(|r| !r.is_empty());
    let a = store
        .create_article(fields, request_id, now)
        .await
        .map_err(from_store)?;
    tracing::info!(article = %a.name(), "article created");
    Ok(Response::new(article_to_proto(&a)))
}

pub async fn get_article(
    store: &Store,
    req: proto::GetArticleRequest,
) -> Result<Response<proto::Article>, Status> {
    let id = reference(&req.name, "articles", "name")?;
    let a = store.get_article(id).await.map_err(from_store)?;
    Ok(Response::new(article_to_proto(&a)))
}

pub async fn list_articles(
    store: &Store,
    req: proto::ListArticlesRequest,
) -> Result<Response<proto::ListArticlesResponse>, Status> {
    let size = page_token::page_size(req.page_size)?;
    let topic = req.topic.trim().to_lowercase();
    let query = ["articles", topic.as_str()];
    let after = page_token::decode(&req.page_token, &query)?;
    let (list, next) = store
        .list_articles(
            Some(topic.as_str()).filter(|t| !t.is_empty()),
            size,
            after.as_ref(),
        )
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::ListArticlesResponse {
        articles: list.iter().map(article_to_proto).collect(),
        next_page_token: page_token::encode(next, &query),
    }))
}

pub async fn update_article(
    store: &Store,
    req: proto::UpdateArticleRequest,
    now: Micros,
) -> Result<Response<proto::Article>, Status> {
    let Some(a) = req.article else {
        return Err(invalid_field("article", "is required"));
    };
    let id = reference(&a.name, "articles", "article.name")?;
    let paths = mask_paths(&req.update_mask);
    for p in &paths {
        if !UPDATABLE.contains(p) && *p != "*" {
            return Err(invalid_field(
                "update_mask",
                format!("cannot update '{p}': use {}", UPDATABLE.join(", ")),
            ));
        }
    }
    let all = paths.is_empty() || paths.contains(&"*");
    let has = |p: &str| all || paths.contains(&p);
    let mut errs = ValidationError::new();
    let changes = ArticleChanges {
        title: has("title").then(|| text(&mut errs, "article.title", &a.title, true, MAX_TITLE)),
        body: has("body").then(|| text(&mut errs, "article.body", &a.body, true, MAX_ARTICLE_BODY)),
        topics: has("topics").then(|| labels(&mut errs, "article.topics", &a.topics, MAX_TOPICS)),
        tags: has("tags").then(|| labels(&mut errs, "article.tags", &a.tags, MAX_TAGS)),
    };
    errs.into_result().map_err(invalid)?;
    let a = store
        .update_article(id, changes, Some(a.etag.as_str()), now)
        .await
        .map_err(from_store)?;
    Ok(Response::new(article_to_proto(&a)))
}

pub async fn search_articles(
    store: &Store,
    req: proto::SearchArticlesRequest,
) -> Result<Response<proto::SearchArticlesResponse>, Status> {
    let size = result_size(req.page_size, 10)?;
    let mut errs = ValidationError::new();
    let query = text(&mut errs, "query", &req.query, true, MAX_QUERY);
    errs.into_result().map_err(invalid)?;
    let topic = req.topic.trim().to_lowercase();
    let hits = store
        .search_articles(&query, Some(topic.as_str()).filter(|t| !t.is_empty()), size)
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::SearchArticlesResponse {
        results: results(hits, &query),
    }))
}

pub async fn suggest_articles(
    store: &Store,
    req: proto::SuggestArticlesRequest,
    scope: &bakkal_store::RecordScope,
) -> Result<Response<proto::SuggestArticlesResponse>, Status> {
    let id = reference(&req.ticket, "tickets", "ticket")?;
    let size = result_size(req.page_size, 5)?;
    let t = store.get_ticket(id, scope).await.map_err(from_store)?;
    let query = format!("{} {}", t.subject, t.description);
    // The ticket's topic first, then anything else that matches.
    let mut hits = Vec::new();
    if !t.topic.is_empty() {
        hits = store
            .search_articles(&query, Some(t.topic.as_str()), size)
            .await
            .map_err(from_store)?;
    }
    if hits.len() < size {
        let more = store
            .search_articles(&query, None, size)
            .await
            .map_err(from_store)?;
        for h in more {
            if hits.len() == size {
                break;
            }
            if !hits.iter().any(|x| x.article.id == h.article.id) {
                hits.push(h);
            }
        }
    }
    Ok(Response::new(proto::SuggestArticlesResponse {
        results: results(hits, &query),
    }))
}
