//! Keyset pagination: a cursor is the sort key and id of the last row of a page, so deep pages
//! cost what the first one does and rows written meanwhile are neither skipped nor repeated.

/// Where the next page starts. The transport wraps it in an opaque page token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Sorted by an integer expression, then by id.
    Int(i64, i64),
    /// Sorted by a text expression, then by id.
    Text(String, i64),
    /// Sorted by an integer, then by a text key (orders: placed time, then order id).
    Pair(i64, String),
}

impl Cursor {
    /// A compact text form: `i:{key}:{id}` or `t:{id}:{key}`.
    pub fn encode(&self) -> String {
        match self {
            Cursor::Int(k, id) => format!("i:{k}:{id}"),
            Cursor::Text(k, id) => format!("t:{id}:{k}"),
            Cursor::Pair(k, t) => format!("p:{k}:{t}"),
        }
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        if let Some(rest) = s.strip_prefix("i:") {
            let (k, id) = rest.split_once(':')?;
            Some(Cursor::Int(k.parse().ok()?, id.parse().ok()?))
        } else if let Some(rest) = s.strip_prefix("t:") {
            let (id, k) = rest.split_once(':')?;
            Some(Cursor::Text(k.to_string(), id.parse().ok()?))
        } else if let Some(rest) = s.strip_prefix("p:") {
            let (k, t) = rest.split_once(':')?;
            Some(Cursor::Pair(k.parse().ok()?, t.to_string()))
        } else {
            None
        }
    }
}

/// Cut a list read with one row more than `page_size` into the page and, when that extra row
/// was there, the cursor after the page's last row.
pub(crate) fn split_page<T>(
    mut rows: Vec<T>,
    page_size: usize,
    cursor: impl Fn(&T) -> Cursor,
) -> (Vec<T>, Option<Cursor>) {
    if rows.len() > page_size {
        rows.truncate(page_size);
        let next = rows.last().map(cursor);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// The id a page in id order starts after: 0 for the first page; a cursor of another shape
/// is a bad page token.
pub(crate) fn after_id(after: Option<&Cursor>) -> crate::Result<i64> {
    match after {
        None => Ok(0),
        Some(Cursor::Int(id, _)) => Ok(*id),
        Some(_) => Err(crate::customers::bad_token()),
    }
}

/// One page of a table's rows in id order: `columns` read by `from_row`, and the cursor after
/// the page's last row when there are more.
pub(crate) async fn page_by_id<T>(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    columns: &str,
    page_size: usize,
    after: Option<&Cursor>,
    from_row: impl Fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
    id: impl Fn(&T) -> i64,
) -> crate::Result<(Vec<T>, Option<Cursor>)> {
    let sql = format!("SELECT {columns} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(after_id(after)?)
        .bind(page_size as i64 + 1)
        .fetch_all(conn)
        .await?;
    let out = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(split_page(out, page_size, |t| {
        let id = id(t);
        Cursor::Int(id, id)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for c in [
            Cursor::Int(-5, 9),
            Cursor::Text("a:b".into(), 3),
            Cursor::Pair(7, "o:1".into()),
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cursor::decode("x"), None);
    }

    #[test]
    fn pages_split_on_the_extra_row() {
        let key = |v: &i64| Cursor::Int(*v, *v);
        assert_eq!(
            split_page(vec![1, 2, 3], 2, key),
            (vec![1, 2], Some(Cursor::Int(2, 2)))
        );
        assert_eq!(split_page(vec![1, 2], 2, key), (vec![1, 2], None));
    }
}
