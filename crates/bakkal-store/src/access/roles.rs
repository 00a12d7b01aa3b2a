//! Custom roles: a name and the permissions it grants (built-in roles are the transport's).

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
    pub create_time: Micros,
}

fn role_from_row(r: &AnyRow) -> std::result::Result<CustomRole, sqlx::Error> {
    let permissions: String = r.try_get(2)?;
    Ok(CustomRole {
        name: r.try_get(0)?,
        description: r.try_get(1)?,
        permissions: decode_list(&permissions),
        create_time: r.try_get(3)?,
    })
}

impl Store {
    pub async fn create_role(&self, role: &CustomRole) -> Result<CustomRole> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT INTO roles (name, description, permissions, create_time) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(role.name.clone())
        .bind(role.description.clone())
        .bind(encode_list(&role.permissions))
        .bind(role.create_time)
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
            "SELECT name, description, permissions, create_time FROM roles ORDER BY name",
        )
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        Ok(rows
            .iter()
            .map(role_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }
}
