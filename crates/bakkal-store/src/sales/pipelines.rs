//! Pipelines: an ordered list of stages each with its default probability and forecast
//! category and whether it is open, won or lost. Stages keep their ids across updates; a stage
//! an opportunity is in, or ever was, cannot be removed.

use bakkal_domain::sales::{pipeline_name, stage_name, StageSpec};
use bakkal_domain::time::Micros;

use super::*;
use crate::lock::lock_row;
use crate::page::{after_id, split_page, Cursor};
use crate::Store;

async fn write_stages(
    conn: &mut AnyConnection,
    pipeline: i64,
    stages: &[StageSpec],
    existing: &[Stage],
) -> Result<()> {
    for (i, s) in stages.iter().enumerate() {
        if let Some(id) = s.id {
            if !existing.iter().any(|e| e.id == id) {
                return Err(invalid(
                    &format!("pipeline.stages[{i}].name"),
                    format!(
                        "{} is not a stage of this pipeline",
                        stage_name(pipeline, id)
                    ),
                ));
            }
        }
    }
    for e in existing {
        if stages.iter().any(|s| s.id == Some(e.id)) {
            continue;
        }
        let used: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM opportunities WHERE stage_id = $1) + \
                    (SELECT COUNT(*) FROM opportunity_events WHERE stage_id = $1)",
        )
        .bind(e.id)
        .fetch_one(&mut *conn)
        .await?;
        if used > 0 {
            return Err(StoreError::FailedPrecondition(format!(
                "stage {} ({}) has opportunities or history; it cannot be removed",
                stage_name(pipeline, e.id),
                e.display_name
            )));
        }
        sqlx::query("DELETE FROM pipeline_stages WHERE id = $1")
            .bind(e.id)
            .execute(&mut *conn)
            .await?;
    }
    for (i, s) in stages.iter().enumerate() {
        let q = match s.id {
            Some(id) => sqlx::query(
                "UPDATE pipeline_stages SET position = $1, display_name = $2, probability = $3, \
                 forecast_category = $4, outcome = $5 WHERE id = $6 AND pipeline_id = $7",
            )
            .bind(i as i64)
            .bind(s.display_name.clone())
            .bind(s.probability)
            .bind(s.forecast_category.as_str())
            .bind(s.outcome.as_str())
            .bind(id)
            .bind(pipeline),
            None => sqlx::query(
                "INSERT INTO pipeline_stages (position, display_name, probability, \
                 forecast_category, outcome, pipeline_id) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(i as i64)
            .bind(s.display_name.clone())
            .bind(s.probability)
            .bind(s.forecast_category.as_str())
            .bind(s.outcome.as_str())
            .bind(pipeline),
        };
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store {
    pub async fn create_pipeline(
        &self,
        display_name: &str,
        stages: &[StageSpec],
        now: Micros,
    ) -> Result<Pipeline> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO pipelines (display_name, version, create_time, update_time) \
             VALUES ($1, 1, $2, $2) RETURNING id",
        )
        .bind(display_name.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if stages.iter().any(|s| s.id.is_some()) {
            return Err(invalid(
                "pipeline.stages",
                "a new pipeline's stages cannot name existing stages",
            ));
        }
        write_stages(&mut tx, id, stages, &[]).await?;
        let p = load_pipeline(&mut tx, id).await?;
        tx.audit_call(pipeline_name(id));
        tx.commit().await?;
        Ok(p)
    }

    pub async fn get_pipeline(&self, id: i64) -> Result<Pipeline> {
        load_pipeline(&mut *self.acquire().await?, id).await
    }

    pub async fn list_pipelines(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Pipeline>, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let ids: Vec<(i64,)> =
            sqlx::query_as("SELECT id FROM pipelines WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after_id(after)?)
                .bind(page_size as i64 + 1)
                .fetch_all(&mut *conn)
                .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            out.push(load_pipeline(&mut conn, id).await?);
        }
        Ok(split_page(out, page_size, |p| Cursor::Int(p.id, p.id)))
    }

    /// Rename pipeline `id` and/or replace its stage list (`None`: keep it). Stages named by
    /// id keep it (and their opportunities); unnamed ones are new; a stage left out is removed,
    /// which fails while an opportunity is in it or its history mentions it.
    pub async fn update_pipeline(
        &self,
        id: i64,
        display_name: Option<&str>,
        stages: Option<&[StageSpec]>,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Pipeline> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "pipelines", id).await?;
        let current = load_pipeline(&mut tx, id).await?;
        check_etag(etag, current.version, &pipeline_name(id))?;
        if let Some(stages) = stages {
            write_stages(&mut tx, id, stages, &current.stages).await?;
        }
        sqlx::query(
            "UPDATE pipelines SET display_name = $1, version = version + 1, update_time = $2 \
             WHERE id = $3",
        )
        .bind(
            display_name
                .unwrap_or(current.display_name.as_str())
                .to_string(),
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let p = load_pipeline(&mut tx, id).await?;
        tx.audit_call(pipeline_name(id));
        tx.commit().await?;
        Ok(p)
    }
}
