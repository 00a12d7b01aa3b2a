//! Writing customers: create with duplicate prevention, masked updates with etags, erasure, and the email-key backfill.

use super::*;
use bakkal_domain::audit::{self, AuditAction};

use crate::personal_data::consent as consent_events;

impl Store {
    /// Give every customer written before migration 0012 its email key, which only Rust can
    /// compute. Runs after migrating, in batches; cheap once done (it finds no row). A row
    /// whose key another customer already holds (the same mailbox spelled twice, which the
    /// old rule let in) keeps no key, is named in a warning and is left for a merge.
    pub(crate) async fn backfill_email_keys(&self) -> Result<()> {
        let mut after = 0i64;
        loop {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, email FROM customers \
                 WHERE email IS NOT NULL AND email_key IS NULL AND id > $1 ORDER BY id LIMIT 500",
            )
            .bind(after)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
            let Some(&(last, _)) = rows.last() else {
                return Ok(());
            };
            let mut tx = self.write_tx().await?;
            for (id, email) in rows {
                let key = normalise::email_key(&email).unwrap_or_else(|_| email.clone());
                let holder: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM customers WHERE email_key = $1")
                        .bind(key.clone())
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(holder) = holder {
                    tracing::warn!(
                        customer = %customer_name(id),
                        holder = %customer_name(holder),
                        email = %email,
                        "two customers hold one mailbox; this one keeps no email key until they are merged"
                    );
                    continue;
                }
                sqlx::query("UPDATE customers SET email_key = $1 WHERE id = $2")
                    .bind(key)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            after = last;
        }
    }

    /// Create a customer from normalised fields. With a `request_id` seen before, return the
    /// customer that first request created.
    pub async fn create_customer(
        &self,
        fields: CustomerFields,
        request_id: Option<&str>,
        now: Micros,
    ) -> Result<Customer> {
        let key = request_id.map(|r| format!("CreateCustomer/{r}"));
        let result = self.try_create_customer(&fields, key.as_deref(), now).await;
        match result {
            // Lost a race for a unique key: report who holds it, or the replayed result.
            Err(e) if e.is_unique_violation() => {
                let mut conn = self.acquire().await?;
                if let Some(id) = self.replayed(&mut conn, key.as_deref()).await? {
                    return load_live(&mut conn, id).await;
                }
                check_unique(&mut conn, &fields, None).await?;
                Err(e)
            }
            other => other,
        }
    }

    async fn replayed(&self, conn: &mut AnyConnection, key: Option<&str>) -> Result<Option<i64>> {
        let Some(key) = key else { return Ok(None) };
        let resource: Option<String> =
            sqlx::query_scalar("SELECT resource FROM idempotency_keys WHERE key = $1")
                .bind(key.to_string())
                .fetch_optional(&mut *conn)
                .await?;
        Ok(resource.and_then(|r| bakkal_domain::name::parse_customer(&r)))
    }

    async fn try_create_customer(
        &self,
        fields: &CustomerFields,
        key: Option<&str>,
        now: Micros,
    ) -> Result<Customer> {
        let mut tx = self.write_tx().await?;
        if let Some(key) = key {
            lock_key(&mut tx, key).await?;
        }
        if let Some(id) = self.replayed(&mut tx, key).await? {
            let c = load_live(&mut tx, id).await?;
            tx.commit().await?;
            return Ok(c);
        }
        check_unique(&mut tx, fields, None).await?;
        check_referrer(&mut tx, fields, None).await?;
        check_organization(&mut tx, fields).await?;
        let mut fields = fields.clone();
        fields.consent.stamp_changes(None, now);
        let id = insert_customer(&mut tx, &fields, now).await?;
        let source = consent_events::write_source();
        consent_events::record_changes(&mut tx, id, None, &fields.consent, source, now).await?;
        if let Some(r) = fields.referred_by {
            refresh_referral_count(&mut tx, r).await?;
        }
        if let Some(key) = key {
            sqlx::query(
                "INSERT INTO idempotency_keys (key, resource, create_time) VALUES ($1, $2, $3)",
            )
            .bind(key.to_string())
            .bind(customer_name(id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let c = load_live(&mut tx, id).await?;
        tx.audit(
            customer_name(id),
            AuditAction::Create,
            audit::customer_changes(None, &c.fields),
        );
        tx.commit().await?;
        Ok(c)
    }

    /// Apply the masked fields of `input` (raw, not yet normalised) to customer `id`.
    /// `paths` must come from [`bakkal_domain::UPDATABLE_PATHS`]; empty means all of them.
    pub async fn update_customer(
        &self,
        id: i64,
        input: &CustomerFields,
        paths: &[&str],
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Customer> {
        let mut tx = self.write_tx().await?;
        let current = load_live_locked(&mut tx, id).await?;
        if let Some(etag) = etag.filter(|e| !e.is_empty()) {
            if etag != current.etag() {
                return Err(StoreError::Aborted(format!(
                    "{} changed since etag {etag} (now {}); read it again and retry",
                    current.name(),
                    current.etag()
                )));
            }
        }
        let mut merged = current.fields.clone();
        let paths: Vec<&str> = if paths.is_empty() {
            bakkal_domain::UPDATABLE_PATHS.to_vec()
        } else {
            paths.to_vec()
        };
        apply_mask(&mut merged, input, &paths);
        let mut fields = merged
            .normalised()
            .map_err(|e| StoreError::Invalid(e.prefixed("customer")))?;
        fields
            .consent
            .stamp_changes(Some(&current.fields.consent), now);
        check_unique(&mut tx, &fields, Some(current.id)).await?;
        if fields.referred_by != current.fields.referred_by {
            check_referrer(&mut tx, &fields, Some(current.id)).await?;
        }
        if fields.organization_id != current.fields.organization_id {
            check_organization(&mut tx, &fields).await?;
        }
        write_fields(&mut tx, current.id, &fields, now).await?;
        consent_events::record_changes(
            &mut tx,
            current.id,
            Some(&current.fields.consent),
            &fields.consent,
            consent_events::write_source(),
            now,
        )
        .await?;
        if fields.referred_by != current.fields.referred_by {
            for r in [current.fields.referred_by, fields.referred_by]
                .into_iter()
                .flatten()
            {
                refresh_referral_count(&mut tx, r).await?;
            }
        }
        let c = load_live(&mut tx, current.id).await?;
        tx.audit(
            current.name(),
            AuditAction::Update,
            audit::customer_changes(Some(&current.fields), &c.fields),
        );
        tx.commit().await?;
        Ok(c)
    }

    /// Erase a customer's personal data everywhere (`personal_data/erase.rs`). Their orders
    /// stay, anonymised; their interactions go.
    pub async fn delete_customer(&self, id: i64, etag: Option<&str>, now: Micros) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let current = load_live_locked(&mut tx, id).await?;
        if current.id != id {
            // a merged name: erasing through it would erase the survivor by surprise
            return Err(StoreError::FailedPrecondition(format!(
                "{} was merged into {}; delete that customer instead",
                customer_name(id),
                current.name()
            )));
        }
        if let Some(etag) = etag.filter(|e| !e.is_empty()) {
            if etag != current.etag() {
                return Err(StoreError::Aborted(format!(
                    "{} changed since etag {etag}",
                    current.name()
                )));
            }
        }
        // interactions, tickets and comments, messages, loyalty, scores, segments, events
        // and the free text of consent events: everywhere the person is
        crate::personal_data::erase_everywhere(&mut tx, id).await?;
        let erased = CustomerFields {
            referred_by: current.fields.referred_by,
            ..Default::default()
        };
        write_fields(&mut tx, id, &erased, now).await?;
        sqlx::query("UPDATE customers SET deleted_time = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // the personal values of their earlier events become unreadable; the erasure says
        // which fields it erased, never what they held
        crate::audit::forget_keys(&mut tx, id).await?;
        tx.audit(
            current.name(),
            AuditAction::Delete,
            audit::erasure_changes(&current.fields),
        );
        tx.commit().await?;
        Ok(())
    }
}
