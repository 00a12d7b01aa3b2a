//! Making API keys: random from the OS, shown once, stored as a hash. Used by
//! `AccessService.CreateApiKey`/`RotateApiKey` and by `bakkal keys create` (the bootstrap,
//! which writes straight to the database before any key exists).

use bakkal_domain::access::{self, PrincipalKind};
use bakkal_domain::time::Micros;
use bakkal_store::{ApiKey, NewApiKey, Store, StoreError};
use rand::RngCore;

/// A fresh key: the record to store and the full text to hand out once.
pub fn generate(
    parent: (PrincipalKind, i64),
    display_name: &str,
    roles: Vec<String>,
    test: bool,
    expire_time: Option<Micros>,
) -> (NewApiKey, String) {
    let mut random = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let (key_id, text) = access::new_key(&random, test);
    let secret_hash = access::parse_key(&text)
        .map(|p| p.secret_hash())
        .unwrap_or_default();
    (
        NewApiKey {
            key_id,
            parent_kind: parent.0,
            parent_id: parent.1,
            display_name: display_name.to_string(),
            roles,
            test,
            secret_hash,
            expire_time,
        },
        text,
    )
}

/// `bakkal keys create --role R --name N`: the service account named N (created with role R
/// when missing) gets a new key carrying role R. Returns the key and its text.
pub async fn bootstrap(
    store: &Store,
    name: &str,
    role: &str,
    now: Micros,
) -> Result<(ApiKey, String), StoreError> {
    let roles = vec![role.to_string()];
    let fields = bakkal_store::ServiceAccountFields {
        display_name: name.to_string(),
        roles: roles.clone(),
        active: true,
        client_certificates: Vec::new(),
    };
    let account = match store.create_service_account(&fields, now).await {
        Ok(a) => a.id,
        Err(StoreError::AlreadyExists { existing, .. }) => existing
            .strip_prefix("serviceAccounts/")
            .and_then(|id| id.parse().ok())
            .ok_or(StoreError::NotFound(existing))?,
        Err(e) => return Err(e),
    };
    let (new, text) = generate(
        (PrincipalKind::ServiceAccount, account),
        name,
        roles,
        false,
        None,
    );
    let key = store.create_api_key(&new, now).await?;
    Ok((key, text))
}
