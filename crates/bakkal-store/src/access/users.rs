//! Staff users (`users/{id}`) and service accounts (`serviceAccounts/{id}`).

use bakkal_domain::time::Micros;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{decode_list, encode_list};
use crate::lock::lock_row;
use crate::page::Cursor;
use crate::{Result, Store, StoreError};

pub fn user_name(id: i64) -> String {
    format!("users/{id}")
}

pub fn service_account_name(id: i64) -> String {
    format!("serviceAccounts/{id}")
}

/// What a caller sets on a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFields {
    pub display_name: String,
    /// Normalised (lowercase); unique among users.
    pub email: String,
    pub roles: Vec<String>,
    pub teams: Vec<i64>,
    pub manager_id: Option<i64>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub fields: UserFields,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl User {
    pub fn name(&self) -> String {
        user_name(self.id)
    }
    pub fn etag(&self) -> String {
        bakkal_domain::etag(self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub id: i64,
    pub display_name: String,
    pub roles: Vec<String>,
    pub active: bool,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl ServiceAccount {
    pub fn name(&self) -> String {
        service_account_name(self.id)
    }
}

const USER_COLUMNS: &str =
    "id, display_name, email, roles, teams, manager_id, active, version, create_time, update_time";
const ACCOUNT_COLUMNS: &str = "id, display_name, roles, active, version, create_time, update_time";

fn user_from_row(r: &AnyRow) -> std::result::Result<User, sqlx::Error> {
    let roles: String = r.try_get(3)?;
    let teams: String = r.try_get(4)?;
    let active: i64 = r.try_get(6)?;
    Ok(User {
        id: r.try_get(0)?,
        fields: UserFields {
            display_name: r.try_get(1)?,
            email: r.try_get(2)?,
            roles: decode_list(&roles),
            teams: decode_list(&teams),
            manager_id: r.try_get(5)?,
            active: active != 0,
        },
        version: r.try_get(7)?,
        create_time: r.try_get(8)?,
        update_time: r.try_get(9)?,
    })
}

fn account_from_row(r: &AnyRow) -> std::result::Result<ServiceAccount, sqlx::Error> {
    let roles: String = r.try_get(2)?;
    let active: i64 = r.try_get(3)?;
    Ok(ServiceAccount {
        id: r.try_get(0)?,
        display_name: r.try_get(1)?,
        roles: decode_list(&roles),
        active: active != 0,
        version: r.try_get(4)?,
        create_time: r.try_get(5)?,
        update_time: r.try_get(6)?,
    })
}

pub(crate) async fn load_user(conn: &mut AnyConnection, id: i64) -> Result<User> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(user_from_row(&r)?),
        None => Err(StoreError::NotFound(user_name(id))),
    }
}

pub(crate) async fn load_account(conn: &mut AnyConnection, id: i64) -> Result<ServiceAccount> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM service_accounts WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(account_from_row(&r)?),
        None => Err(StoreError::NotFound(service_account_name(id))),
    }
}

/// ALREADY_EXISTS naming the user who has `email`, if another does.
async fn check_email(conn: &mut AnyConnection, email: &str, except: Option<i64>) -> Result<()> {
    let holder: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match holder {
        Some(id) if Some(id) != except => Err(StoreError::AlreadyExists {
            existing: user_name(id),
            field: "user.email".into(),
            message: format!("{email} is already {}", user_name(id)),
        }),
        _ => Ok(()),
    }
}

async fn check_manager(conn: &mut AnyConnection, f: &UserFields) -> Result<()> {
    if let Some(m) = f.manager_id {
        load_user(conn, m).await.map_err(|_| {
            StoreError::Invalid(bakkal_domain::ValidationError::single(
                "user.manager",
                format!("{} does not exist", user_name(m)),
            ))
        })?;
    }
    Ok(())
}

impl Store {
    pub async fn create_user(&self, f: &UserFields, now: Micros) -> Result<User> {
        let mut tx = self.write_tx().await?;
        check_email(&mut tx, &f.email, None).await?;
        check_manager(&mut tx, f).await?;
        let sql = format!(
            "INSERT INTO users (display_name, email, roles, teams, manager_id, active, version, \
             create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) \
             RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.email.clone())
            .bind(encode_list(&f.roles))
            .bind(encode_list(&f.teams))
            .bind(f.manager_id)
            .bind(i64::from(f.active))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let u = user_from_row(&row)?;
        tx.audit_call(u.name());
        tx.commit().await?;
        Ok(u)
    }

    pub async fn get_user(&self, id: i64) -> Result<User> {
        let mut conn = self.pool.acquire().await?;
        load_user(&mut conn, id).await
    }

    pub async fn list_users(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<User>, Option<Cursor>)> {
        crate::page::page_by_id(
            &self.pool,
            "users",
            USER_COLUMNS,
            page_size,
            after,
            user_from_row,
            |u| u.id,
        )
        .await
    }

    /// Replace a user's fields (the transport merged the mask); a stale `etag` is ABORTED.
    pub async fn update_user(
        &self,
        id: i64,
        f: &UserFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<User> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "users", id).await?;
        let current = load_user(&mut tx, id).await?;
        if let Some(e) = etag.filter(|e| !e.is_empty()) {
            if e != current.etag() {
                return Err(StoreError::Aborted(format!(
                    "{} changed since etag {e}",
                    current.name()
                )));
            }
        }
        if f.manager_id == Some(id) {
            return Err(StoreError::Invalid(bakkal_domain::ValidationError::single(
                "user.manager",
                "a user cannot be their own manager",
            )));
        }
        check_email(&mut tx, &f.email, Some(id)).await?;
        check_manager(&mut tx, f).await?;
        let sql = format!(
            "UPDATE users SET display_name = $1, email = $2, roles = $3, teams = $4, \
             manager_id = $5, active = $6, version = version + 1, update_time = $7 \
             WHERE id = $8 RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.email.clone())
            .bind(encode_list(&f.roles))
            .bind(encode_list(&f.teams))
            .bind(f.manager_id)
            .bind(i64::from(f.active))
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let u = user_from_row(&row)?;
        tx.audit_call(u.name());
        tx.commit().await?;
        Ok(u)
    }

    pub async fn create_service_account(
        &self,
        display_name: &str,
        roles: &[String],
        now: Micros,
    ) -> Result<ServiceAccount> {
        let mut tx = self.write_tx().await?;
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM service_accounts WHERE display_name = $1")
                .bind(display_name.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(id) = taken {
            return Err(StoreError::AlreadyExists {
                existing: service_account_name(id),
                field: "service_account.display_name".into(),
                message: format!("{display_name} is already {}", service_account_name(id)),
            });
        }
        let sql = format!(
            "INSERT INTO service_accounts (display_name, roles, active, version, create_time, \
             update_time) VALUES ($1, $2, 1, 1, $3, $3) RETURNING {ACCOUNT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(display_name.to_string())
            .bind(encode_list(roles))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let a = account_from_row(&row)?;
        tx.audit_call(a.name());
        tx.commit().await?;
        Ok(a)
    }

    pub async fn get_service_account(&self, id: i64) -> Result<ServiceAccount> {
        let mut conn = self.pool.acquire().await?;
        load_account(&mut conn, id).await
    }

    pub async fn list_service_accounts(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<ServiceAccount>, Option<Cursor>)> {
        crate::page::page_by_id(
            &self.pool,
            "service_accounts",
            ACCOUNT_COLUMNS,
            page_size,
            after,
            account_from_row,
            |a| a.id,
        )
        .await
    }
}
