//! Custom roles: a name, the permissions it grants and how far it reaches into each record
//! family (built-in roles are the transport's).

use std::collections::BTreeMap;

use bakkal_domain::access::Scope;
use bakkal_domain::time::Micros;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{decode_list, encode_list};
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRole {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    /// Record family (`customers`, `tickets`, …) → scope; a family left out gives no reach.
    pub scopes: BTreeMap<String, Scope>,
    pub create_time: Micros,
}

fn encode_scopes(scopes: &BTreeMap<String, Scope>) -> String {
    let text: BTreeMap<&str, &str> = scopes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    serde_json::to_string(&text).unwrap_or_else(|_| "{}".into())
}

fn decode_scopes(s: &str) -> BTreeMap<String, Scope> {
    let text: BTreeMap<String, String> = serde_json::from_str(s).unwrap_or_default();
    text.into_iter()
        .filter_map(|(k, v)| Scope::parse(&v).map(|s| (k, s)))
        .collect()
}

fn role_from_row(r: &AnyRow) -> std::result::Result<CustomRole, sqlx::Error> {
    let permissions: String = r.try_get(2)?;
    Ok(CustomRole {
        name: r.try_get(0)?,
        description: r.try_get(1)?,
        permissions: decode_list(&permissions),
        create_time: r.try_get(3)?,
        scopes: decode_scopes(&r.try_get::<String, _>(4)?),
    })
}

impl Store {
    pub async fn create_role(&self, role: &CustomRole) -> Result<CustomRole> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT INTO roles (name, description, permissions, create_time, scopes) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(role.name.clone())
        .bind(role.description.clone())
        .bind(encode_list(&role.permissions))
        .bind(role.create_time)
        .bind(encode_scopes(&role.scopes))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                existing: format!("roles/{}", role.name),
                field: "role.name".into(),
                message: format!("role {} exists", role.name),
            });
        }
        tx.audit_call(format!("roles/{}", role.name));
        tx.commit().await?;
        Ok(role.clone())
    }

    /// Every custom role, by name.
    pub async fn custom_roles(&self) -> Result<Vec<CustomRole>> {
        let rows = sqlx::query(
            "SELECT name, description, permissions, create_time, scopes FROM roles ORDER BY name",
        )
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        Ok(rows
            .iter()
            .map(role_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }
}
