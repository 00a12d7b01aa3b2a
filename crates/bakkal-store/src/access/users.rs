//! Staff users (`users/{id}`) and service accounts (`serviceAccounts/{id}`).

use bakkal_domain::time::Micros;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{decode_list, encode_list};
use crate::lock::{lock_key, lock_row};
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
    /// The user's subject at the OIDC identity provider (a bearer token's `sub`); unique
    /// when set.
    pub oidc_subject: Option<String>,
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
    /// SHA-256 fingerprints (lowercase hex) of the client certificates that speak for this
    /// account over mTLS, oldest first.
    pub client_certificates: Vec<String>,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl ServiceAccount {
    pub fn name(&self) -> String {
        service_account_name(self.id)
    }
    pub fn etag(&self) -> String {
        bakkal_domain::etag(self.version)
    }
}

/// What a caller sets on a service account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAccountFields {
    pub display_name: String,
    pub roles: Vec<String>,
    pub active: bool,
    /// Normalised fingerprints (`access::certificate_fingerprint`), each unique among accounts.
    pub client_certificates: Vec<String>,
}

impl From<&ServiceAccount> for ServiceAccountFields {
    fn from(a: &ServiceAccount) -> Self {
        ServiceAccountFields {
            display_name: a.display_name.clone(),
            roles: a.roles.clone(),
            active: a.active,
            client_certificates: a.client_certificates.clone(),
        }
    }
}

const USER_COLUMNS: &str = "id, display_name, email, roles, teams, manager_id, active, version, \
     create_time, update_time, oidc_subject";
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
            oidc_subject: r.try_get(10)?,
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
        client_certificates: Vec::new(),
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
        Some(r) => {
            let mut a = account_from_row(&r)?;
            a.client_certificates = certificates_of(conn, id).await?;
            Ok(a)
        }
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

/// ALREADY_EXISTS naming the user bound to OIDC subject `subject`, if another is.
async fn check_subject(
    conn: &mut AnyConnection,
    subject: Option<&str>,
    except: Option<i64>,
) -> Result<()> {
    let Some(subject) = subject else {
        return Ok(());
    };
    let holder: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE oidc_subject = $1")
        .bind(subject.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match holder {
        Some(id) if Some(id) != except => Err(StoreError::AlreadyExists {
            existing: user_name(id),
            field: "user.oidc_subject".into(),
            message: format!("the OIDC subject is already {}'s", user_name(id)),
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

/// ALREADY_EXISTS naming the service account called `name`, if another is.
async fn check_account_name(
    conn: &mut AnyConnection,
    name: &str,
    except: Option<i64>,
) -> Result<()> {
    let holder: Option<i64> =
        sqlx::query_scalar("SELECT id FROM service_accounts WHERE display_name = $1")
            .bind(name.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    match holder {
        Some(id) if Some(id) != except => Err(StoreError::AlreadyExists {
            existing: service_account_name(id),
            field: "service_account.display_name".into(),
            message: format!("{name} is already {}", service_account_name(id)),
        }),
        _ => Ok(()),
    }
}

/// The fingerprints account `id` lists, in the order they were set.
async fn certificates_of(conn: &mut AnyConnection, id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT sha256 FROM service_account_certificates WHERE service_account_id = $1 \
         ORDER BY create_time, sha256",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Make account `id` list exactly `fingerprints`; ALREADY_EXISTS when another account lists
/// one of them.
async fn set_certificates(
    conn: &mut AnyConnection,
    id: i64,
    fingerprints: &[String],
    now: Micros,
) -> Result<()> {
    for fp in fingerprints {
        lock_key(conn, &format!("certificate:{fp}")).await?;
        let holder: Option<i64> = sqlx::query_scalar(
            "SELECT service_account_id FROM service_account_certificates WHERE sha256 = $1",
        )
        .bind(fp.clone())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(other) = holder.filter(|h| *h != id) {
            return Err(StoreError::AlreadyExists {
                existing: service_account_name(other),
                field: "service_account.client_certificate_sha256".into(),
                message: format!(
                    "the certificate {fp} already speaks for {}",
                    service_account_name(other)
                ),
            });
        }
    }
    let kept: Vec<String> = certificates_of(conn, id).await?;
    for old in kept.iter().filter(|k| !fingerprints.contains(k)) {
        sqlx::query("DELETE FROM service_account_certificates WHERE sha256 = $1")
            .bind(old.clone())
            .execute(&mut *conn)
            .await?;
    }
    // new ones after the kept ones, in the order given (create_time microseconds apart)
    for (i, fp) in fingerprints.iter().enumerate() {
        if kept.contains(fp) {
            continue;
        }
        sqlx::query(
            "INSERT INTO service_account_certificates (sha256, service_account_id, create_time) \
             VALUES ($1, $2, $3)",
        )
        .bind(fp.clone())
        .bind(id)
        .bind(now + i as i64)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    pub async fn create_user(&self, f: &UserFields, now: Micros) -> Result<User> {
        let mut tx = self.write_tx().await?;
        check_email(&mut tx, &f.email, None).await?;
        check_subject(&mut tx, f.oidc_subject.as_deref(), None).await?;
        check_manager(&mut tx, f).await?;
        let sql = format!(
            "INSERT INTO users (display_name, email, roles, teams, manager_id, active, version, \
             create_time, update_time, oidc_subject) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, \
             $8) RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.email.clone())
            .bind(encode_list(&f.roles))
            .bind(encode_list(&f.teams))
            .bind(f.manager_id)
            .bind(i64::from(f.active))
            .bind(now)
            .bind(f.oidc_subject.clone())
            .fetch_one(&mut *tx)
            .await?;
        let u = user_from_row(&row)?;
        tx.audit_call(u.name());
        tx.commit().await?;
        Ok(u)
    }

    pub async fn get_user(&self, id: i64) -> Result<User> {
        let mut conn = self.acquire().await?;
        load_user(&mut conn, id).await
    }

    /// The user a bearer token speaks for: the one bound to OIDC subject `subject`, else (when
    /// the token carries a verified address) the user with `email` who is bound to no subject.
    /// A user bound to a subject is reached only through it.
    pub async fn user_for_token(&self, subject: &str, email: Option<&str>) -> Result<Option<User>> {
        let mut conn = self.acquire().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE oidc_subject = $1");
        if let Some(r) = sqlx::query(&sql)
            .bind(subject.to_string())
            .fetch_optional(&mut *conn)
            .await?
        {
            return Ok(Some(user_from_row(&r)?));
        }
        let Some(email) = email else {
            return Ok(None);
        };
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1 AND oidc_subject IS NULL");
        match sqlx::query(&sql)
            .bind(email.to_string())
            .fetch_optional(&mut *conn)
            .await?
        {
            Some(r) => Ok(Some(user_from_row(&r)?)),
            None => Ok(None),
        }
    }

    pub async fn list_users(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<User>, Option<Cursor>)> {
        crate::page::page_by_id(
            &mut *self.acquire().await?,
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
        check_subject(&mut tx, f.oidc_subject.as_deref(), Some(id)).await?;
        check_manager(&mut tx, f).await?;
        let sql = format!(
            "UPDATE users SET display_name = $1, email = $2, roles = $3, teams = $4, \
             manager_id = $5, active = $6, version = version + 1, update_time = $7, \
             oidc_subject = $8 WHERE id = $9 RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.email.clone())
            .bind(encode_list(&f.roles))
            .bind(encode_list(&f.teams))
            .bind(f.manager_id)
            .bind(i64::from(f.active))
            .bind(now)
            .bind(f.oidc_subject.clone())
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
        f: &ServiceAccountFields,
        now: Micros,
    ) -> Result<ServiceAccount> {
        let mut tx = self.write_tx().await?;
        check_account_name(&mut tx, &f.display_name, None).await?;
        let sql = format!(
            "INSERT INTO service_accounts (display_name, roles, active, version, create_time, \
             update_time) VALUES ($1, $2, $3, 1, $4, $4) RETURNING {ACCOUNT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(encode_list(&f.roles))
            .bind(i64::from(f.active))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let mut a = account_from_row(&row)?;
        set_certificates(&mut tx, a.id, &f.client_certificates, now).await?;
        a.client_certificates = f.client_certificates.clone();
        tx.audit_call(a.name());
        tx.commit().await?;
        Ok(a)
    }

    /// Replace a service account's fields (the transport merged the mask); a stale `etag` is
    /// ABORTED, a fingerprint another account lists ALREADY_EXISTS.
    pub async fn update_service_account(
        &self,
        id: i64,
        f: &ServiceAccountFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<ServiceAccount> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "service_accounts", id).await?;
        let current = load_account(&mut tx, id).await?;
        if let Some(e) = etag.filter(|e| !e.is_empty()) {
            if e != current.etag() {
                return Err(StoreError::Aborted(format!(
                    "{} changed since etag {e}",
                    current.name()
                )));
            }
        }
        check_account_name(&mut tx, &f.display_name, Some(id)).await?;
        let sql = format!(
            "UPDATE service_accounts SET display_name = $1, roles = $2, active = $3, \
             version = version + 1, update_time = $4 WHERE id = $5 RETURNING {ACCOUNT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(encode_list(&f.roles))
            .bind(i64::from(f.active))
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let mut a = account_from_row(&row)?;
        set_certificates(&mut tx, id, &f.client_certificates, now).await?;
        a.client_certificates = f.client_certificates.clone();
        tx.audit_call(a.name());
        tx.commit().await?;
        Ok(a)
    }

    pub async fn get_service_account(&self, id: i64) -> Result<ServiceAccount> {
        let mut conn = self.acquire().await?;
        load_account(&mut conn, id).await
    }

    pub async fn list_service_accounts(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<ServiceAccount>, Option<Cursor>)> {
        let (mut list, next) = crate::page::page_by_id(
            &mut *self.acquire().await?,
            "service_accounts",
            ACCOUNT_COLUMNS,
            page_size,
            after,
            account_from_row,
            |a| a.id,
        )
        .await?;
        let mut conn = self.pool.acquire().await?;
        for a in &mut list {
            a.client_certificates = certificates_of(&mut conn, a.id).await?;
        }
        Ok((list, next))
    }

    /// The service account a client certificate with this fingerprint speaks for, if any.
    pub async fn service_account_by_certificate(
        &self,
        sha256: &str,
    ) -> Result<Option<ServiceAccount>> {
        let mut conn = self.pool.acquire().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT service_account_id FROM service_account_certificates WHERE sha256 = $1",
        )
        .bind(sha256.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        match id {
            None => Ok(None),
            Some(id) => match load_account(&mut conn, id).await {
                Ok(a) => Ok(Some(a)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Active service accounts that list at least one client certificate.
    pub async fn certificate_account_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(DISTINCT c.service_account_id) FROM service_account_certificates c \
             JOIN service_accounts a ON a.id = c.service_account_id WHERE a.active = 1",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
