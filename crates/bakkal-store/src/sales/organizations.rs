//! Organisations: unique normalised domains, parents without cycles, read through merges,
//! duplicates by name, merging one into another (its customers, opportunities and child
//! organisations move to the survivor) and deleting one nothing refers to.

use bakkal_domain::filter::FieldKind;
use bakkal_domain::normalise;
use bakkal_domain::sales::organization_name;
use bakkal_domain::time::Micros;

use super::*;
use crate::args::{bind, Arg, SqlBuilder};
use crate::lock::{lock_key, lock_row};
use crate::page::{after_id, split_page, Cursor};
use crate::Store;

/// A possible duplicate and why it looks like one.
#[derive(Debug, Clone)]
pub struct OrganizationDuplicate {
    pub organization: Organization,
    pub reasons: Vec<String>,
}

/// How deep a chain of merges (or of parents) is followed.
const MAX_CHAIN: usize = 64;

/// The live organisation `id` is or was merged into; NOT_FOUND for an unknown id.
pub(super) async fn load_live_organization(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Organization> {
    let mut o = load_organization(conn, id).await?;
    for _ in 0..MAX_CHAIN {
        match o.merged_into {
            Some(next) => o = load_organization(conn, next).await?,
            None => return Ok(o),
        }
    }
    Err(StoreError::NotFound(organization_name(id)))
}

/// The checks a write needs the database for: the domain free (ALREADY_EXISTS naming the
/// holder), the parent a live organisation that is not `id` itself nor one of its
/// descendants, the owner a staff user.
async fn check_references(
    conn: &mut AnyConnection,
    f: &OrganizationFields,
    id: Option<i64>,
) -> Result<()> {
    if let Some(d) = &f.domain {
        lock_key(conn, &format!("organization-domain:{d}")).await?;
        let holder: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM organizations WHERE domain = $1 AND merged_into IS NULL",
        )
        .bind(d.clone())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(h) = holder.filter(|h| Some(*h) != id) {
            return Err(StoreError::AlreadyExists {
                existing: organization_name(h),
                field: "organization.domain".into(),
                message: format!(
                    "an organization with domain {d} already exists: organizations/{h}"
                ),
            });
        }
    }
    if let Some(p) = f.parent_id {
        let parent = match load_organization(conn, p).await {
            Ok(o) if o.merged_into.is_none() => o,
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return Err(invalid(
                    "organization.parent",
                    format!("{} does not exist", organization_name(p)),
                ))
            }
            Err(e) => return Err(e),
        };
        // walk up from the parent: meeting `id` would make a cycle
        let mut at = Some(parent);
        for _ in 0..MAX_CHAIN {
            let Some(o) = at else { break };
            if Some(o.id) == id {
                return Err(invalid(
                    "organization.parent",
                    "would make the organization its own ancestor",
                ));
            }
            at = match o.fields.parent_id {
                Some(next) => Some(load_organization(conn, next).await?),
                None => None,
            };
        }
    }
    check_owner(conn, &f.owner, "organization.owner").await
}

fn field_args(f: &OrganizationFields) -> Vec<Arg> {
    vec![
        Arg::Text(f.display_name.clone()),
        Arg::Text(normalise::name_key(&f.display_name)),
        Arg::OptText(f.domain.clone()),
        Arg::Text(f.industry.clone()),
        Arg::Text(f.size.clone()),
        Arg::Text(f.country_code.clone()),
        Arg::Text(f.region.clone()),
        Arg::Text(f.city.clone()),
        Arg::OptInt(f.parent_id),
        Arg::Text(f.owner.clone()),
        Arg::Text(encode_list(&f.tags)),
        Arg::Text(encode_attributes(&f.attributes)),
    ]
}

const FIELD_COLUMNS: &str = "display_name, name_key, domain, industry, size, country_code, \
    region, city, parent_id, owner, tags, attributes";

/// Fields `ListOrganizations` filters on.
pub const ORGANIZATION_FILTER_FIELDS: &[(&str, FieldKind)] = &[
    ("display_name", FieldKind::Text),
    ("domain", FieldKind::Text),
    ("industry", FieldKind::Text),
    ("size", FieldKind::Text),
    ("country_code", FieldKind::Text),
    ("region", FieldKind::Text),
    ("city", FieldKind::Text),
    ("owner", FieldKind::Text),
    ("parent", FieldKind::Text),
    ("tags", FieldKind::Repeated),
];

impl Store {
    pub async fn create_organization(
        &self,
        f: &OrganizationFields,
        now: Micros,
    ) -> Result<Organization> {
        let mut tx = self.write_tx().await?;
        check_references(&mut tx, f, None).await?;
        let mut b = SqlBuilder::new(format!(
            "INSERT INTO organizations ({FIELD_COLUMNS}, version, create_time, update_time) VALUES ("
        ));
        for (i, a) in field_args(f).into_iter().enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.arg(a);
        }
        b.push(", 1, ").arg(Arg::Int(now)).push(", ");
        b.arg(Arg::Int(now)).push(") RETURNING id");
        let id: i64 = crate::args::bind_as(sqlx::query_as::<_, (i64,)>(&b.sql), &b.args)
            .fetch_one(&mut *tx)
            .await?
            .0;
        let o = load_organization(&mut tx, id).await?;
        tx.audit_call(organization_name(id));
        tx.commit().await?;
        Ok(o)
    }

    /// Organisation `id`, or the one it was merged into.
    pub async fn get_organization(&self, id: i64) -> Result<Organization> {
        load_live_organization(&mut *self.acquire().await?, id).await
    }

    /// Live organisations matching `clauses` (from [`ORGANIZATION_FILTER_FIELDS`]) in id order.
    pub async fn list_organizations(
        &self,
        clauses: &[bakkal_domain::filter::Clause],
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Organization>, Option<Cursor>)> {
        use bakkal_domain::filter::{Op, Value};
        let mut b = SqlBuilder::new(format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE merged_into IS NULL AND id > "
        ));
        b.arg(Arg::Int(after_id(after)?));
        for cl in clauses {
            let text = match &cl.value {
                Value::Text(t) => t.clone(),
                Value::Number(n) => n.to_string(),
            };
            if cl.field == "tags" {
                b.push(" AND tags LIKE ")
                    .arg(Arg::Text(format!("%,{},%", text.replace(['%', '_'], ""))));
                continue;
            }
            let (column, arg) = match cl.field.as_str() {
                "parent" => match bakkal_domain::name::parse_id(&text, "organizations") {
                    Some(id) => ("parent_id", Arg::Int(id)),
                    None => {
                        return Err(invalid(
                            "filter",
                            format!("'{text}' is not a name like organizations/3"),
                        ))
                    }
                },
                "domain" => (
                    "domain",
                    Arg::Text(bakkal_domain::sales::domain(&text).unwrap_or(text)),
                ),
                "display_name" => ("display_name", Arg::Text(text)),
                "industry" => ("industry", Arg::Text(text)),
                "size" => ("size", Arg::Text(text)),
                "country_code" => ("country_code", Arg::Text(text.to_ascii_uppercase())),
                "region" => ("region", Arg::Text(text)),
                "city" => ("city", Arg::Text(text)),
                "owner" => ("owner", Arg::Text(text)),
                other => return Err(invalid("filter", format!("cannot filter on '{other}'"))),
            };
            let op = if cl.op == Op::Ne { " <> " } else { " = " };
            b.push(" AND ").push(column).push(op).arg(arg);
        }
        b.push(" ORDER BY id LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(organization_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(split_page(out, page_size, |o| Cursor::Int(o.id, o.id)))
    }

    /// Replace the fields of live organisation `id` with `f` (the transport applied the
    /// update mask to what `get_organization` read), if `etag` still matches.
    pub async fn update_organization(
        &self,
        id: i64,
        f: &OrganizationFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Organization> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "organizations", id).await?;
        let current = load_organization(&mut tx, id).await?;
        if current.merged_into.is_some() {
            return Err(StoreError::NotFound(organization_name(id)));
        }
        check_etag(etag, current.version, &organization_name(id))?;
        check_references(&mut tx, f, Some(id)).await?;
        let mut b = SqlBuilder::new("UPDATE organizations SET ");
        for (i, (column, a)) in FIELD_COLUMNS.split(", ").zip(field_args(f)).enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.push(column).push(" = ").arg(a);
        }
        b.push(", version = version + 1, update_time = ")
            .arg(Arg::Int(now))
            .push(" WHERE id = ")
            .arg(Arg::Int(id));
        bind(sqlx::query(&b.sql), &b.args).execute(&mut *tx).await?;
        let o = load_organization(&mut tx, id).await?;
        tx.audit_call(organization_name(id));
        tx.commit().await?;
        Ok(o)
    }

    /// Delete live organisation `id`: FAILED_PRECONDITION while a customer, an opportunity or
    /// a child organisation refers to it (merge it instead).
    pub async fn delete_organization(&self, id: i64, etag: Option<&str>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "organizations", id).await?;
        let current = load_organization(&mut tx, id).await?;
        if current.merged_into.is_some() {
            return Err(StoreError::NotFound(organization_name(id)));
        }
        check_etag(etag, current.version, &organization_name(id))?;
        for (table, column, what) in [
            ("customers", "organization_id", "customers"),
            ("opportunities", "organization_id", "opportunities"),
            ("organizations", "parent_id", "child organizations"),
        ] {
            let n: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            if n > 0 {
                return Err(StoreError::FailedPrecondition(format!(
                    "{} has {n} {what}; move them or merge the organization instead",
                    organization_name(id)
                )));
            }
        }
        // rows merged into this one point at it: they go with it
        sqlx::query("DELETE FROM organizations WHERE id = $1 OR merged_into = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.audit(
            organization_name(id),
            bakkal_domain::audit::AuditAction::Delete,
            Vec::new(),
        );
        tx.commit().await
    }

    /// Live organisations that look like the same company as `id`: the same name (compared
    /// as a name key), or a domain that differs only in its top-level label.
    pub async fn find_organization_duplicates(
        &self,
        id: i64,
    ) -> Result<Vec<OrganizationDuplicate>> {
        let mut conn = self.acquire().await?;
        let me = load_live_organization(&mut conn, id).await?;
        let key = normalise::name_key(&me.fields.display_name);
        let stem = me
            .fields
            .domain
            .as_deref()
            .and_then(|d| d.rsplit_once('.'))
            .map(|(s, _)| s.to_string());
        let sql = format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations \
             WHERE id <> $1 AND merged_into IS NULL AND ( \
               (name_key <> '' AND name_key = $2) \
               OR (domain IS NOT NULL AND $3 <> '' AND domain LIKE $4)) \
             ORDER BY id LIMIT 200"
        );
        let rows = sqlx::query(&sql)
            .bind(me.id)
            .bind(key.clone())
            .bind(stem.clone().unwrap_or_default())
            .bind(format!(
                "{}.%",
                stem.as_deref().unwrap_or("").replace(['%', '_'], "")
            ))
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let other = organization_from_row(&r)?;
            let mut reasons = Vec::new();
            if !key.is_empty() && normalise::name_key(&other.fields.display_name) == key {
                reasons.push("same name".to_string());
            }
            let other_stem = other
                .fields
                .domain
                .as_deref()
                .and_then(|d| d.rsplit_once('.'))
                .map(|(s, _)| s);
            if stem.is_some() && other_stem == stem.as_deref() {
                reasons.push("same domain but for the top-level label".to_string());
            }
            if !reasons.is_empty() {
                out.push(OrganizationDuplicate {
                    organization: other,
                    reasons,
                });
            }
        }
        Ok(out)
    }

    /// Fold organisation `source` into `target` in one transaction: the target keeps its
    /// fields and takes the source's where its own are empty (tags joined, the source's
    /// attributes under the target's); the source's customers, opportunities and child
    /// organisations move to the target; the source stays as a pointer (`merged_into`) with
    /// its domain freed.
    pub async fn merge_organizations(
        &self,
        source: i64,
        target: i64,
        now: Micros,
    ) -> Result<Organization> {
        if source == target {
            return Err(invalid(
                "duplicate",
                "cannot merge an organization into itself",
            ));
        }
        let mut tx = self.write_tx().await?;
        for id in [source.min(target), source.max(target)] {
            lock_row(&mut tx, "organizations", id).await?;
        }
        let s = load_organization(&mut tx, source).await?;
        let t = load_organization(&mut tx, target).await?;
        if s.merged_into.is_some() {
            return Err(StoreError::NotFound(organization_name(source)));
        }
        if t.merged_into.is_some() {
            return Err(StoreError::NotFound(organization_name(target)));
        }
        let mut f = t.fields.clone();
        let fill = |mine: &mut String, theirs: &String| {
            if mine.is_empty() {
                *mine = theirs.clone();
            }
        };
        fill(&mut f.industry, &s.fields.industry);
        fill(&mut f.size, &s.fields.size);
        fill(&mut f.country_code, &s.fields.country_code);
        fill(&mut f.region, &s.fields.region);
        fill(&mut f.city, &s.fields.city);
        fill(&mut f.owner, &s.fields.owner);
        for tag in &s.fields.tags {
            if !f.tags.contains(tag) {
                f.tags.push(tag.clone());
            }
        }
        for (k, v) in &s.fields.attributes {
            f.attributes.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if f.parent_id.is_none() && s.fields.parent_id != Some(target) {
            f.parent_id = s.fields.parent_id;
        }
        let take_domain = f.domain.is_none() && s.fields.domain.is_some();
        sqlx::query(
            "UPDATE organizations SET merged_into = $1, domain = NULL, version = version + 1, \
             update_time = $2 WHERE id = $3",
        )
        .bind(target)
        .bind(now)
        .bind(source)
        .execute(&mut *tx)
        .await?;
        if take_domain {
            f.domain = s.fields.domain.clone();
        }
        for sql in [
            "UPDATE customers SET organization_id = $1, version = version + 1, update_time = $3 \
             WHERE organization_id = $2",
            "UPDATE opportunities SET organization_id = $1, version = version + 1, \
             update_time = $3 WHERE organization_id = $2",
            "UPDATE organizations SET parent_id = $1, version = version + 1, update_time = $3 \
             WHERE parent_id = $2 AND id <> $1",
        ] {
            sqlx::query(sql)
                .bind(target)
                .bind(source)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        if f.parent_id == Some(source) {
            f.parent_id = None;
        }
        sqlx::query("UPDATE organizations SET parent_id = NULL WHERE id = $1 AND parent_id = $2")
            .bind(target)
            .bind(source)
            .execute(&mut *tx)
            .await?;
        let mut b = SqlBuilder::new("UPDATE organizations SET ");
        for (i, (column, a)) in FIELD_COLUMNS.split(", ").zip(field_args(&f)).enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.push(column).push(" = ").arg(a);
        }
        b.push(", version = version + 1, update_time = ")
            .arg(Arg::Int(now))
            .push(" WHERE id = ")
            .arg(Arg::Int(target));
        bind(sqlx::query(&b.sql), &b.args).execute(&mut *tx).await?;
        let merged = load_organization(&mut tx, target).await?;
        tx.audit(
            organization_name(source),
            bakkal_domain::audit::AuditAction::Merge,
            Vec::new(),
        );
        tx.audit_call(organization_name(target));
        tx.commit().await?;
        Ok(merged)
    }
}
