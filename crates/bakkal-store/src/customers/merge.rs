//! Duplicates and merging: candidates for one customer and folding one customer into another.

use super::query::like_escape;
use super::*;
use bakkal_domain::audit::{self, AuditAction};

/// A possible duplicate and why it looks like one.
#[derive(Debug, Clone)]
pub struct DuplicateCandidate {
    pub customer: Customer,
    pub reasons: Vec<String>,
}

pub(super) fn national_suffix(phone: &str) -> Option<&str> {
    (phone.len() > 9).then(|| &phone[phone.len() - 9..])
}

impl Store {
    /// Live customers that look like the same person as `id`, among those `scope` admits
    /// (`id` out of scope is not found).
    pub async fn find_duplicates(
        &self,
        id: i64,
        scope: &RecordScope,
    ) -> Result<Vec<DuplicateCandidate>> {
        let mut conn = self.acquire().await?;
        let me = load_live(&mut conn, id).await?;
        if !scope.admits_owner(&me.fields.owner) {
            return Err(StoreError::NotFound(customer_name(id)));
        }
        let f = &me.fields;
        let name_key = f.name_key();
        let local = f
            .email
            .as_deref()
            .and_then(|e| e.split_once('@'))
            .map(|(l, _)| l.to_string());
        let suffix = f
            .phone
            .as_deref()
            .and_then(national_suffix)
            .map(str::to_string);
        let sql = format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers \
             WHERE id <> $1 AND merged_into IS NULL AND deleted_time IS NULL AND ( \
               (name_key <> '' AND name_key = $2) \
               OR (phone IS NOT NULL AND $3 <> '' AND substr(phone, length(phone) - 8) = $3) \
               OR (email IS NOT NULL AND $4 <> '' AND email LIKE $5 ESCAPE '\\')) \
             ORDER BY id LIMIT 200"
        );
        let rows = sqlx::query(&sql)
            .bind(me.id)
            .bind(name_key.clone())
            .bind(suffix.clone().unwrap_or_default())
            .bind(local.clone().unwrap_or_default())
            .bind(format!("{}@%", like_escape(local.as_deref().unwrap_or(""))))
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let other = customer_from_row(&r)?.customer;
            let o = &other.fields;
            if !scope.admits_owner(&o.owner) {
                continue;
            }
            let same_name = !name_key.is_empty() && o.name_key() == name_key;
            let mut reasons = Vec::new();
            if same_name && f.birth_date.is_some() && o.birth_date == f.birth_date {
                reasons.push("same name and birth date".to_string());
            }
            if same_name && !f.city.is_empty() && o.city.eq_ignore_ascii_case(&f.city) {
                reasons.push("same name and city".to_string());
            }
            if suffix.is_some() && o.phone.as_deref().and_then(national_suffix) == suffix.as_deref()
            {
                reasons.push("same phone number without the country code".to_string());
            }
            let other_local = o
                .email
                .as_deref()
                .and_then(|e| e.split_once('@'))
                .map(|(l, _)| l);
            if local.as_deref().is_some_and(|l| l.len() >= 4) && other_local == local.as_deref() {
                reasons.push("same email address at another domain".to_string());
            }
            if same_name && reasons.is_empty() && f.birth_date.is_none() && f.city.is_empty() {
                reasons.push("same name".to_string());
            }
            if !reasons.is_empty() {
                out.push(DuplicateCandidate {
                    customer: other,
                    reasons,
                });
            }
        }
        Ok(out)
    }

    /// Merge `duplicate` into `primary` and return the primary. Merging again is a no-op.
    pub async fn merge_customers(
        &self,
        primary: i64,
        duplicate: i64,
        now: Micros,
    ) -> Result<Customer> {
        let mut tx = self.write_tx().await?;
        // both rows locked, in id order so that two opposite merges cannot deadlock
        for id in [primary.min(duplicate), primary.max(duplicate)] {
            lock_row(&mut tx, "customers", id).await?;
        }
        let p = load_live(&mut tx, primary).await?;
        if p.id != primary {
            return Err(StoreError::FailedPrecondition(format!(
                "{} was itself merged into {}; merge into that customer",
                customer_name(primary),
                p.name()
            )));
        }
        let d = load_live(&mut tx, duplicate).await?;
        if d.id == p.id {
            if duplicate == primary {
                return Err(StoreError::Invalid(ValidationError::single(
                    "duplicate",
                    "a customer cannot be merged into itself",
                )));
            }
            // already merged: the retried merge returns the same result
            tx.commit().await?;
            return Ok(p);
        }
        for sql in [
            "UPDATE orders SET customer_id = $1 WHERE customer_id = $2",
            "UPDATE interactions SET customer_id = $1 WHERE customer_id = $2",
            "UPDATE customers SET referred_by = $1 WHERE referred_by = $2 AND id <> $1",
            "UPDATE customers SET merged_into = $1 WHERE merged_into = $2",
        ] {
            sqlx::query(sql)
                .bind(p.id)
                .bind(d.id)
                .execute(&mut *tx)
                .await?;
        }
        // The survivor keeps its own data and gains what only the duplicate knew.
        let (pf, df) = (&p.fields, &d.fields);
        let mut f = pf.clone();
        let fill = |mine: &mut Option<String>, theirs: &Option<String>| {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        };
        fill(&mut f.email, &df.email);
        fill(&mut f.phone, &df.phone);
        fill(&mut f.country_code, &df.country_code);
        fill(&mut f.birth_date, &df.birth_date);
        for (mine, theirs) in [
            (&mut f.display_name, &df.display_name),
            (&mut f.region, &df.region),
            (&mut f.city, &df.city),
            (&mut f.owner, &df.owner),
        ] {
            if mine.is_empty() {
                mine.clone_from(theirs);
            }
        }
        if f.referred_by.is_none() && df.referred_by != Some(p.id) {
            f.referred_by = df.referred_by;
        }
        if f.referred_by == Some(d.id) {
            f.referred_by = None;
        }
        if f.organization_id.is_none() {
            f.organization_id = df.organization_id;
        }
        f.tags.extend(df.tags.iter().cloned());
        f.tags.sort();
        f.tags.dedup();
        for (k, v) in &df.attributes {
            f.attributes.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for ch in bakkal_domain::ConsentChannel::ALL {
            let (mine, theirs) = (pf.consent.get(ch), df.consent.get(ch));
            if theirs.update_time.unwrap_or(0) > mine.update_time.unwrap_or(0) {
                *f.consent.get_mut(ch) = theirs;
            }
        }
        // Free the duplicate's unique keys before the survivor takes them.
        let tombstone = CustomerFields::default();
        write_fields(&mut tx, d.id, &tombstone, now).await?;
        sqlx::query("UPDATE customers SET merged_into = $1, order_count = 0, total_spent = 0, \
                     first_order_time = NULL, last_order_time = NULL, referral_count = 0 WHERE id = $2")
            .bind(p.id)
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
        write_fields(&mut tx, p.id, &f, now).await?;
        crate::personal_data::consent::record_changes(
            &mut tx,
            p.id,
            Some(&pf.consent),
            &f.consent,
            bakkal_domain::personal_data::ConsentSource::Merge,
            now,
        )
        .await?;
        refresh_totals(&mut tx, p.id, now).await?;
        let mut referrers = vec![p.id];
        referrers.extend(pf.referred_by);
        referrers.extend(df.referred_by);
        referrers.extend(f.referred_by);
        referrers.sort();
        referrers.dedup();
        for r in referrers {
            refresh_referral_count(&mut tx, r).await?;
        }
        let merged = load_live(&mut tx, p.id).await?;
        tx.audit(
            merged.name(),
            AuditAction::Merge,
            audit::customer_changes(Some(&p.fields), &merged.fields),
        );
        tx.audit(
            customer_name(d.id),
            AuditAction::Merge,
            vec![audit::FieldChange {
                field: "merged_into".into(),
                before: None,
                after: Some(merged.name()),
            }],
        );
        tx.commit().await?;
        Ok(merged)
    }
}
