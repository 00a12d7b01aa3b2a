//! The product catalogue that cross-sell scripts draw offers from.

use bakkal_domain::Product;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::args::{bind, Arg, SqlBuilder};
use crate::page::Cursor;
use crate::{Result, Store};

const COLUMNS: &str = "sku, display_name, category, price, related_skus, update_time";

fn from_row(r: &AnyRow) -> std::result::Result<Product, sqlx::Error> {
    let related: String = r.try_get(4)?;
    Ok(Product {
        sku: r.try_get(0)?,
        display_name: r.try_get(1)?,
        category: r.try_get(2)?,
        price: r.try_get(3)?,
        related_skus: related
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        update_time: r.try_get(5)?,
    })
}

impl Store {
    /// Create the product, or replace the one with its SKU.
    pub async fn upsert_product(&self, p: Product) -> Result<Product> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO products (sku, display_name, category, price, related_skus, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sku) DO UPDATE SET \
             display_name = excluded.display_name, category = excluded.category, \
             price = excluded.price, related_skus = excluded.related_skus, \
             update_time = excluded.update_time",
        )
        .bind(p.sku.clone())
        .bind(p.display_name.clone())
        .bind(p.category.clone())
        .bind(p.price)
        .bind(p.related_skus.join(","))
        .bind(p.update_time)
        .execute(&mut *tx)
        .await?;
        tx.audit(
            bakkal_domain::name::product_name(&p.sku),
            bakkal_domain::audit::AuditAction::Update,
            Vec::new(),
        );
        tx.commit().await?;
        Ok(p)
    }

    /// Products in SKU order, optionally in one category.
    pub async fn list_products(
        &self,
        category: Option<&str>,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Product>, Option<Cursor>)> {
        let mut b = SqlBuilder::new(format!("SELECT {COLUMNS} FROM products WHERE 1 = 1"));
        if let Some(c) = category {
            b.push(" AND category = ").arg(Arg::Text(c.to_lowercase()));
        }
        match after {
            Some(Cursor::Text(sku, _)) => {
                b.push(" AND sku > ").arg(Arg::Text(sku.clone()));
            }
            Some(_) => return Err(crate::customers::bad_token()),
            None => {}
        }
        b.push(" ORDER BY sku LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (out, next) =
            crate::page::split_page(out, page_size, |p| Cursor::Text(p.sku.clone(), 0));
        Ok((out, next))
    }
}
