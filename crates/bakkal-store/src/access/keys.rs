//! API keys (`apiKeys/{key id}`): the public id, the owner (a user or a service account), the
//! roles it carries (empty: its owner's), and a hash of the secret, never the secret.

use bakkal_domain::access::PrincipalKind;
use bakkal_domain::time::Micros;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::users::{load_account, load_user, service_account_name, user_name};
use super::{decode_list, encode_list};
use crate::lock::lock_key;
use crate::{Result, Store, StoreError};

pub fn api_key_name(key_id: &str) -> String {
    format!("apiKeys/{key_id}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: String,
    pub parent_kind: PrincipalKind,
    pub parent_id: i64,
    pub display_name: String,
    pub roles: Vec<String>,
    pub test: bool,
    pub expire_time: Option<Micros>,
    pub revoke_time: Option<Micros>,
    pub rotated_from: Option<String>,
    pub create_time: Micros,
}

impl ApiKey {
    pub fn name(&self) -> String {
        api_key_name(&self.key_id)
    }

    pub fn parent(&self) -> String {
        match self.parent_kind {
            PrincipalKind::ServiceAccount => service_account_name(self.parent_id),
            _ => user_name(self.parent_id),
        }
    }

    /// Usable at `now`: not revoked, not expired.
    pub fn live_at(&self, now: Micros) -> bool {
        self.revoke_time.is_none() && self.expire_time.is_none_or(|t| now < t)
    }
}

/// A key to store: everything but the secret, which only its hash stands for.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key_id: String,
    pub parent_kind: PrincipalKind,
    pub parent_id: i64,
    pub display_name: String,
    pub roles: Vec<String>,
    pub test: bool,
    pub secret_hash: String,
    pub expire_time: Option<Micros>,
}

/// Who a key speaks for, as authentication needs it.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub key: ApiKey,
    pub secret_hash: String,
    /// The owner is active (a deactivated user's keys stop working).
    pub active: bool,
    pub owner_roles: Vec<String>,
    pub teams: Vec<i64>,
}

const KEY_COLUMNS: &str = "key_id, parent_kind, parent_id, display_name, roles, test, \
                           expire_time, revoke_time, rotated_from, create_time, secret_hash";

fn key_from_row(r: &AnyRow) -> std::result::Result<(ApiKey, String), sqlx::Error> {
    let kind: String = r.try_get(1)?;
    let roles: String = r.try_get(4)?;
    let test: i64 = r.try_get(5)?;
    Ok((
        ApiKey {
            key_id: r.try_get(0)?,
            parent_kind: PrincipalKind::parse(&kind).unwrap_or(PrincipalKind::User),
            parent_id: r.try_get(2)?,
            display_name: r.try_get(3)?,
            roles: decode_list(&roles),
            test: test != 0,
            expire_time: r.try_get(6)?,
            revoke_time: r.try_get(7)?,
            rotated_from: r.try_get(8)?,
            create_time: r.try_get(9)?,
        },
        r.try_get(10)?,
    ))
}

async fn load_key(conn: &mut AnyConnection, key_id: &str) -> Result<(ApiKey, String)> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1");
    match sqlx::query(&sql)
        .bind(key_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(key_from_row(&r)?),
        None => Err(StoreError::NotFound(api_key_name(key_id))),
    }
}

async fn insert_key(
    conn: &mut AnyConnection,
    k: &NewApiKey,
    rotated_from: Option<&str>,
    now: Micros,
) -> Result<ApiKey> {
    match k.parent_kind {
        PrincipalKind::User => {
            load_user(conn, k.parent_id).await?;
        }
        PrincipalKind::ServiceAccount => {
            load_account(conn, k.parent_id).await?;
        }
        _ => {
            return Err(StoreError::Invalid(bakkal_domain::ValidationError::single(
                "parent",
                "must be users/{id} or serviceAccounts/{id}",
            )))
        }
    }
    let sql = format!(
        "INSERT INTO api_keys (key_id, parent_kind, parent_id, display_name, roles, test, \
         secret_hash, expire_time, rotated_from, create_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {KEY_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(k.key_id.clone())
        .bind(k.parent_kind.as_str())
        .bind(k.parent_id)
        .bind(k.display_name.clone())
        .bind(encode_list(&k.roles))
        .bind(i64::from(k.test))
        .bind(k.secret_hash.clone())
        .bind(k.expire_time)
        .bind(rotated_from.map(str::to_string))
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
    Ok(key_from_row(&row)?.0)
}

impl Store {
    /// Store a new key for an existing user or service account.
    pub async fn create_api_key(&self, k: &NewApiKey, now: Micros) -> Result<ApiKey> {
        let mut tx = self.write_tx().await?;
        let key = insert_key(&mut tx, k, None, now).await?;
        tx.audit_call(key.name());
        tx.commit().await?;
        Ok(key)
    }

    pub async fn get_api_key(&self, key_id: &str) -> Result<ApiKey> {
        let mut conn = self.acquire().await?;
        Ok(load_key(&mut conn, key_id).await?.0)
    }

    /// Keys, newest first, of one owner or of everyone.
    pub async fn list_api_keys(
        &self,
        parent: Option<(PrincipalKind, i64)>,
        page_size: usize,
        offset: usize,
    ) -> Result<(Vec<ApiKey>, bool)> {
        let mut sql = format!("SELECT {KEY_COLUMNS} FROM api_keys");
        if parent.is_some() {
            sql.push_str(" WHERE parent_kind = $3 AND parent_id = $4");
        }
        sql.push_str(" ORDER BY create_time DESC, key_id LIMIT $1 OFFSET $2");
        let mut q = sqlx::query(&sql)
            .bind(page_size as i64 + 1)
            .bind(offset as i64);
        if let Some((kind, id)) = parent {
            q = q.bind(kind.as_str()).bind(id);
        }
        let rows = q.fetch_all(&mut *self.acquire().await?).await?;
        let mut keys = rows
            .iter()
            .map(|r| key_from_row(r).map(|k| k.0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let more = keys.len() > page_size;
        keys.truncate(page_size);
        Ok((keys, more))
    }

    /// Revoke a key now; revoking a revoked key keeps its first revoke time.
    pub async fn revoke_api_key(&self, key_id: &str, now: Micros) -> Result<ApiKey> {
        let mut tx = self.write_tx().await?;
        lock_key(&mut tx, &format!("apikey:{key_id}")).await?;
        load_key(&mut tx, key_id).await?;
        sqlx::query(
            "UPDATE api_keys SET revoke_time = $1 WHERE key_id = $2 AND revoke_time IS NULL",
        )
        .bind(now)
        .bind(key_id.to_string())
        .execute(&mut *tx)
        .await?;
        let key = load_key(&mut tx, key_id).await?.0;
        tx.audit_call(key.name());
        tx.commit().await?;
        Ok(key)
    }

    /// A new key for the same owner and roles as `old`, which stays valid until it is revoked
    /// or until `old_expires` (the overlap's end), whichever comes first.
    pub async fn rotate_api_key(
        &self,
        old: &str,
        new: &NewApiKey,
        old_expires: Option<Micros>,
        now: Micros,
    ) -> Result<ApiKey> {
        let mut tx = self.write_tx().await?;
        lock_key(&mut tx, &format!("apikey:{old}")).await?;
        let (current, _) = load_key(&mut tx, old).await?;
        if !current.live_at(now) {
            return Err(StoreError::FailedPrecondition(format!(
                "{} is revoked or expired; create a new key instead",
                current.name()
            )));
        }
        let new = NewApiKey {
            parent_kind: current.parent_kind,
            parent_id: current.parent_id,
            roles: current.roles.clone(),
            test: current.test,
            ..new.clone()
        };
        let key = insert_key(&mut tx, &new, Some(old), now).await?;
        if let Some(t) = old_expires {
            let until = current.expire_time.map_or(t, |e| e.min(t));
            sqlx::query("UPDATE api_keys SET expire_time = $1 WHERE key_id = $2")
                .bind(until)
                .bind(old.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.audit_call(key.name());
        tx.commit().await?;
        Ok(key)
    }

    /// How many keys work at `now` (a server requiring auth refuses to start with none).
    pub async fn live_api_key_count(&self, now: Micros) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE revoke_time IS NULL \
             AND (expire_time IS NULL OR expire_time > $1)",
        )
        .bind(now)
        .fetch_one(&mut *self.acquire().await?)
        .await?)
    }

    /// The key `key_id` with its secret's hash and what its owner is, for authentication;
    /// `None` when there is no such key or owner.
    pub async fn key_owner(&self, key_id: &str) -> Result<Option<KeyOwner>> {
        let mut conn = self.acquire().await?;
        let (key, secret_hash) = match load_key(&mut conn, key_id).await {
            Ok(k) => k,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (active, owner_roles, teams) = match key.parent_kind {
            PrincipalKind::ServiceAccount => match load_account(&mut conn, key.parent_id).await {
                Ok(a) => (a.active, a.roles, Vec::new()),
                Err(StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            },
            _ => match load_user(&mut conn, key.parent_id).await {
                Ok(u) => (u.fields.active, u.fields.roles, u.fields.teams),
                Err(StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            },
        };
        Ok(Some(KeyOwner {
            key,
            secret_hash,
            active,
            owner_roles,
            teams,
        }))
    }
}
