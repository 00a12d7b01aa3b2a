//! What real-time offers read besides the customer: the campaigns whose OFFER scripts are
//! live, the whole catalogue, and a cheap fingerprint of both so a cached copy can be kept
//! until they change.

use bakkal_domain::Product;
use sqlx::Row;

use crate::{Result, Store};

/// A campaign whose offer script is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferCampaign {
    pub id: i64,
    /// `scripts/{id}` or `scripts/{id}@{revision}`, as the campaign names it.
    pub offer_script: String,
    pub holdout_percent: i64,
    pub version: i64,
}

/// Changes when an offer campaign, a script or a product changes (counts and versions or
/// update times); equal fingerprints mean a cached offer setup is still good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferFingerprint {
    pub campaigns: Vec<OfferCampaign>,
    pub script_versions: i64,
    pub script_count: i64,
    pub product_count: i64,
    pub product_update: i64,
}

impl Store {
    /// Campaigns in one of `states` with an offer script, by id; and the fingerprint of the
    /// scripts and the catalogue they would run against. Two queries.
    pub async fn offer_fingerprint(&self, states: &[&str]) -> Result<OfferFingerprint> {
        let mut conn = self.acquire().await?;
        let placeholders: Vec<String> = (1..=states.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, offer_script, holdout_percent, version FROM campaigns \
             WHERE offer_script <> '' AND state IN ({}) ORDER BY id",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for s in states {
            q = q.bind(s.to_string());
        }
        let rows = q.fetch_all(&mut *conn).await?;
        let campaigns = rows
            .iter()
            .map(|r| {
                Ok(OfferCampaign {
                    id: r.try_get(0)?,
                    offer_script: r.try_get(1)?,
                    holdout_percent: r.try_get(2)?,
                    version: r.try_get(3)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        let row = sqlx::query(
            "SELECT (SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM scripts), \
             (SELECT COUNT(*) FROM scripts), (SELECT COUNT(*) FROM products), \
             (SELECT COALESCE(MAX(update_time), 0) FROM products)",
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(OfferFingerprint {
            campaigns,
            script_versions: row.try_get(0)?,
            script_count: row.try_get(1)?,
            product_count: row.try_get(2)?,
            product_update: row.try_get(3)?,
        })
    }

    /// Every product, by SKU (the catalogue offer scripts see).
    pub async fn all_products(&self) -> Result<Vec<Product>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = self.list_products(None, 1000, after.as_ref()).await?;
            out.extend(page);
            match next {
                Some(c) => after = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// The write generation: bumped by every write this process commits. Equal generations
    /// mean this process wrote nothing in between (other servers may have, on PostgreSQL).
    pub fn write_generation(&self) -> u64 {
        self.generation.current()
    }
}
