//! Reading customers: one by id (through merges) and filtered, sorted keyset lists.

use super::*;

pub(super) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A parsed `ListCustomers` request.
#[derive(Debug, Clone)]
pub struct CustomerQuery {
    pub clauses: Vec<Clause>,
    pub order_by: OrderBy,
    pub page_size: usize,
    pub after: Option<Cursor>,
    /// The clock stage and day filters are evaluated against.
    pub now: Micros,
}

impl CustomerQuery {
    /// Parse a filter and order_by; `Err` names the offending field of the request.
    pub fn parse(filter_text: &str, order_by: &str, now: Micros) -> Result<Self, ValidationError> {
        let clauses = filter::parse(filter_text, CUSTOMER_FILTER_FIELDS)
            .map_err(|e| ValidationError::single("filter", e))?;
        for c in &clauses {
            if matches!(
                c.field.as_str(),
                "value.order_count" | "value.referral_count" | "value.days_since_last_order"
            ) && matches!(c.value, Value::Number(n) if n.fract() != 0.0)
            {
                return Err(ValidationError::single(
                    "filter",
                    format!("{} compares with whole numbers", c.field),
                ));
            }
        }
        let order_by = filter::parse_order_by(order_by, CUSTOMER_SORT_FIELDS, "create_time")
            .map_err(|e| ValidationError::single("order_by", e))?;
        Ok(CustomerQuery {
            clauses,
            order_by,
            page_size: 50,
            after: None,
            now,
        })
    }
}

enum SortKind {
    Int,
    Text,
}

fn sort_expr(field: &str) -> (&'static str, SortKind) {
    match field {
        "update_time" => ("update_time", SortKind::Int),
        "display_name" => ("display_name", SortKind::Text),
        "value.total_spent" => ("total_spent", SortKind::Int),
        "value.order_count" => ("order_count", SortKind::Int),
        "value.last_order_time" => ("COALESCE(last_order_time, 0)", SortKind::Int),
        _ => ("create_time", SortKind::Int),
    }
}

fn sort_key(field: &str, c: &Customer) -> Cursor {
    match field {
        "update_time" => Cursor::Int(c.update_time, c.id),
        "display_name" => Cursor::Text(c.fields.display_name.clone(), c.id),
        "value.total_spent" => Cursor::Int(c.totals.total_spent, c.id),
        "value.order_count" => Cursor::Int(c.totals.order_count, c.id),
        "value.last_order_time" => Cursor::Int(c.totals.last_order_time.unwrap_or(0), c.id),
        _ => Cursor::Int(c.create_time, c.id),
    }
}

fn text_value(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        Value::Number(n) => n.to_string(),
    }
}

/// Append `AND …` for each clause.
pub(crate) fn push_clauses(b: &mut SqlBuilder, clauses: &[Clause], now: Micros) {
    for c in clauses {
        b.push(" AND ");
        let negate = c.op == Op::Ne;
        match c.field.as_str() {
            "stage" => {
                let cutoff = now - DEFAULT_LAPSE_DAYS * MICROS_PER_DAY;
                if negate {
                    b.push("NOT ");
                }
                match text_value(&c.value).as_str() {
                    "PROSPECT" => b.push("(converted_time IS NULL)"),
                    "ACTIVE" => b
                        .push(
                            "(converted_time IS NOT NULL AND \
                             COALESCE(last_order_time, converted_time) > ",
                        )
                        .arg(Arg::Int(cutoff))
                        .push(")"),
                    _ => b
                        .push(
                            "(converted_time IS NOT NULL AND \
                             COALESCE(last_order_time, converted_time) <= ",
                        )
                        .arg(Arg::Int(cutoff))
                        .push(")"),
                };
            }
            "organization" => {
                // a name that is not an organisation's matches none
                let id =
                    bakkal_domain::name::parse_id(text_value(&c.value).trim(), "organizations")
                        .unwrap_or(0);
                if negate {
                    b.push("(organization_id IS NULL OR organization_id <> ")
                        .arg(Arg::Int(id))
                        .push(")");
                } else {
                    b.push("organization_id = ").arg(Arg::Int(id));
                }
            }
            "tags" => {
                let tag = like_escape(&text_value(&c.value).to_lowercase());
                b.push("tags LIKE ")
                    .arg(Arg::Text(format!("%,{tag},%")))
                    .push(" ESCAPE '\\'");
            }
            "value.order_count" | "value.referral_count" | "value.total_spent" => {
                let (col, scale) = match c.field.as_str() {
                    "value.order_count" => ("order_count", 1.0),
                    "value.referral_count" => ("referral_count", 1.0),
                    _ => ("total_spent", 1_000_000.0),
                };
                let n = match c.value {
                    Value::Number(n) => (n * scale).round() as i64,
                    Value::Text(_) => 0,
                };
                b.push(col)
                    .push(" ")
                    .push(c.op.sql())
                    .push(" ")
                    .arg(Arg::Int(n));
            }
            "value.days_since_last_order" => {
                let n = match c.value {
                    Value::Number(n) => n as i64,
                    Value::Text(_) => 0,
                };
                b.push("(last_order_time IS NOT NULL AND ((")
                    .arg(Arg::Int(now))
                    .push(" - last_order_time) / 86400000000) ")
                    .push(c.op.sql())
                    .push(" ")
                    .arg(Arg::Int(n))
                    .push(")");
            }
            field => {
                let raw = text_value(&c.value);
                let v = match field {
                    "email" => normalise::email(&raw).unwrap_or(raw.trim().to_lowercase()),
                    "phone" => normalise::phone(&raw, None).unwrap_or(raw),
                    "country_code" => raw.trim().to_ascii_uppercase(),
                    _ => raw,
                };
                // `field` comes from CUSTOMER_FILTER_FIELDS, never from the caller's text.
                b.push(field)
                    .push(" ")
                    .push(c.op.sql())
                    .push(" ")
                    .arg(Arg::Text(v));
            }
        }
    }
}

impl Store {
    /// The live customer `id` is (following merges), if `scope` admits it: one out of scope
    /// is not found, with the error of one that does not exist.
    pub async fn get_customer(&self, id: i64, scope: &RecordScope) -> Result<Customer> {
        let c = self.cached_customer(id).await?;
        if !scope.admits_owner(&c.fields.owner) {
            return Err(StoreError::NotFound(customer_name(id)));
        }
        Ok(c)
    }

    /// One page of customers and the cursor of the next page, with the total matching count.
    pub async fn list_customers(
        &self,
        q: &CustomerQuery,
        with_total: bool,
        scope: &RecordScope,
    ) -> Result<(Vec<Customer>, Option<Cursor>, i64)> {
        let (expr, kind) = sort_expr(&q.order_by.field);
        let mut b = SqlBuilder::new(format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE merged_into IS NULL AND deleted_time IS NULL"
        ));
        push_clauses(&mut b, &q.clauses, q.now);
        scope.push_customers(&mut b, "");
        let total_sql = b.sql.replacen(CUSTOMER_COLUMNS, "COUNT(*)", 1);
        let total_args = b.args.clone();
        let (cmp, dir) = if q.order_by.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some(after) = &q.after {
            let (key, id) = match (after, kind) {
                (Cursor::Int(k, id), SortKind::Int) => (Arg::Int(*k), *id),
                (Cursor::Text(k, id), SortKind::Text) => (Arg::Text(k.clone()), *id),
                _ => {
                    return Err(StoreError::Invalid(ValidationError::single(
                        "page_token",
                        "does not belong to this query",
                    )))
                }
            };
            b.push(" AND (")
                .push(expr)
                .push(&format!(" {cmp} "))
                .arg(key.clone())
                .push(" OR (")
                .push(expr)
                .push(" = ")
                .arg(key)
                .push(&format!(" AND id {cmp} "))
                .arg(Arg::Int(id))
                .push("))");
        }
        b.push(&format!(" ORDER BY {expr} {dir}, id {dir} LIMIT "))
            .arg(Arg::Int(q.page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let customers = rows
            .iter()
            .map(|r| customer_from_row(r).map(|c| c.customer))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (customers, next) =
            crate::page::split_page(customers, q.page_size, |c| sort_key(&q.order_by.field, c));
        let total = if with_total {
            bind_as(sqlx::query_as::<_, (i64,)>(&total_sql), &total_args)
                .fetch_one(&mut *self.acquire().await?)
                .await?
                .0
        } else {
            0
        };
        Ok((customers, next, total))
    }
}
