//! `bakkal.v1.AccessService`: users, service accounts, API keys and roles.

use std::collections::BTreeMap;
use std::sync::Arc;

use bakkal_domain::access::Scope;
use bakkal_domain::time::{now_micros, Micros};
use bakkal_domain::ValidationError;
use bakkal_store::{
    ApiKey, CustomRole, ServiceAccount, ServiceAccountFields, Store, User, UserFields,
};
use tonic::{Request, Response, Status};

use super::permissions::{all_permissions, BuiltIn, BUILT_IN, RECORDS};
use super::{caller_of, keys, parse_principal_name, Authenticator};
use crate::convert::{micros, opt_timestamp, timestamp};
use crate::page_token;
use crate::proto;
use crate::proto::access_service_server::AccessService;
use crate::service_desk::convert::{check_mask, mask_paths, reference};
use crate::status::{from_store, invalid, invalid_field, quote};

pub struct AccessApi {
    store: Store,
    auth: Arc<Authenticator>,
}

impl AccessApi {
    pub fn new(store: Store, auth: Arc<Authenticator>) -> AccessApi {
        AccessApi { store, auth }
    }
}

const USER_UPDATABLE: &[&str] = &[
    "display_name",
    "email",
    "roles",
    "teams",
    "manager",
    "active",
    "oidc_subject",
];

const ACCOUNT_UPDATABLE: &[&str] = &[
    "display_name",
    "roles",
    "active",
    "client_certificate_sha256",
];

/// At most this many certificates per service account (a rollover needs two).
const MAX_CERTIFICATES: usize = 8;

fn user_to_proto(u: &User) -> proto::User {
    proto::User {
        name: u.name(),
        display_name: u.fields.display_name.clone(),
        email: u.fields.email.clone(),
        roles: u.fields.roles.clone(),
        teams: u
            .fields
            .teams
            .iter()
            .map(|t| format!("teams/{t}"))
            .collect(),
        manager: u
            .fields
            .manager_id
            .map(bakkal_store::user_name)
            .unwrap_or_default(),
        active: u.fields.active,
        create_time: Some(timestamp(u.create_time)),
        update_time: Some(timestamp(u.update_time)),
        etag: u.etag(),
        oidc_subject: u.fields.oidc_subject.clone().unwrap_or_default(),
    }
}

fn account_to_proto(a: &ServiceAccount) -> proto::ServiceAccount {
    proto::ServiceAccount {
        name: a.name(),
        display_name: a.display_name.clone(),
        roles: a.roles.clone(),
        active: a.active,
        create_time: Some(timestamp(a.create_time)),
        client_certificate_sha256: a.client_certificates.clone(),
        update_time: Some(timestamp(a.update_time)),
        etag: a.etag(),
    }
}

fn key_to_proto(k: &ApiKey, now: Micros) -> proto::ApiKey {
    proto::ApiKey {
        name: k.name(),
        parent: k.parent(),
        display_name: k.display_name.clone(),
        roles: k.roles.clone(),
        test: k.test,
        expire_time: opt_timestamp(k.expire_time),
        revoke_time: opt_timestamp(k.revoke_time),
        rotated_from: k
            .rotated_from
            .as_deref()
            .map(bakkal_store::api_key_name)
            .unwrap_or_default(),
        create_time: Some(timestamp(k.create_time)),
        live: k.live_at(now),
    }
}

/// A role name: lowercase letters, digits and `_`, 1–64 characters.
fn valid_role_name(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Role names must be built-in or custom ones that exist.
async fn check_roles(
    store: &Store,
    roles: &[String],
    field: &str,
    errs: &mut ValidationError,
) -> Result<(), Status> {
    let custom = store.custom_roles().await.map_err(from_store)?;
    for (i, r) in roles.iter().enumerate() {
        if BuiltIn::parse(r).is_none() && !custom.iter().any(|c| &c.name == r) {
            errs.add(
                format!("{field}[{i}]"),
                format!("unknown role '{}'; see AccessService.ListRoles", quote(r)),
            );
        }
    }
    Ok(())
}

fn team_ids(names: &[String], errs: &mut ValidationError) -> Vec<i64> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match bakkal_domain::name::parse_id(n.trim(), "teams") {
            Some(id) => out.push(id),
            None => errs.add(
                format!("user.teams[{i}]"),
                format!("'{}' is not a name like teams/3", quote(n)),
            ),
        }
    }
    out
}

impl AccessApi {
    async fn user_fields(
        &self,
        p: &proto::User,
        paths: &[&str],
        f: &mut UserFields,
    ) -> Result<(), Status> {
        let all = paths.is_empty();
        let has = |k: &str| all || paths.contains(&k);
        let mut errs = ValidationError::new();
        if has("display_name") {
            f.display_name = p.display_name.trim().to_string();
            if f.display_name.is_empty() || f.display_name.chars().count() > 200 {
                errs.add("user.display_name", "is required, at most 200 characters");
            }
        }
        if has("email") {
            match bakkal_domain::normalise::email(&p.email) {
                Ok(e) => f.email = e,
                Err(why) => errs.add("user.email", why),
            }
        }
        if has("roles") {
            f.roles = p.roles.iter().map(|r| r.trim().to_string()).collect();
            check_roles(&self.store, &f.roles, "user.roles", &mut errs).await?;
        }
        if has("teams") {
            f.teams = team_ids(&p.teams, &mut errs);
        }
        if has("manager") {
            f.manager_id = if p.manager.trim().is_empty() {
                None
            } else {
                match bakkal_domain::name::parse_id(p.manager.trim(), "users") {
                    Some(id) => Some(id),
                    None => {
                        errs.add("user.manager", "must be a name like users/3, or empty");
                        None
                    }
                }
            };
        }
        if has("oidc_subject") {
            let s = p.oidc_subject.trim();
            if s.len() > 255 || s.chars().any(char::is_control) {
                errs.add(
                    "user.oidc_subject",
                    "at most 255 bytes, no control characters",
                );
            }
            f.oidc_subject = (!s.is_empty()).then(|| s.to_string());
        }
        if !all && paths.contains(&"active") {
            f.active = p.active;
        }
        errs.into_result().map_err(invalid)
    }

    /// Merge the `paths` of `p` into `f` (every field when `paths` is empty but `active`,
    /// which only a named path or the create request's `inactive` sets).
    async fn account_fields(
        &self,
        p: &proto::ServiceAccount,
        paths: &[&str],
        f: &mut ServiceAccountFields,
    ) -> Result<(), Status> {
        let all = paths.is_empty();
        let has = |k: &str| all || paths.contains(&k);
        let mut errs = ValidationError::new();
        if has("display_name") {
            f.display_name = p.display_name.trim().to_string();
            if f.display_name.is_empty() || f.display_name.chars().count() > 200 {
                errs.add(
                    "service_account.display_name",
                    "is required, at most 200 characters",
                );
            }
        }
        if has("roles") {
            f.roles = p.roles.iter().map(|r| r.trim().to_string()).collect();
            check_roles(&self.store, &f.roles, "service_account.roles", &mut errs).await?;
        }
        if has("client_certificate_sha256") {
            f.client_certificates.clear();
            if p.client_certificate_sha256.len() > MAX_CERTIFICATES {
                errs.add(
                    "service_account.client_certificate_sha256",
                    format!("at most {MAX_CERTIFICATES} certificates"),
                );
            }
            for text in p.client_certificate_sha256.iter().take(MAX_CERTIFICATES) {
                match bakkal_domain::access::certificate_fingerprint(text) {
                    Some(fp) if !f.client_certificates.contains(&fp) => {
                        f.client_certificates.push(fp)
                    }
                    Some(_) => {}
                    None => errs.add(
                        "service_account.client_certificate_sha256",
                        format!(
                            "{} is not a SHA-256 fingerprint (64 hex digits, colons allowed)",
                            quote(text)
                        ),
                    ),
                }
            }
        }
        if !all && paths.contains(&"active") {
            f.active = p.active;
        }
        errs.into_result().map_err(invalid)
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn get_caller_identity(
        &self,
        request: Request<proto::GetCallerIdentityRequest>,
    ) -> Result<Response<proto::CallerIdentity>, Status> {
        let caller = caller_of(&request);
        Ok(Response::new(proto::CallerIdentity {
            principal: caller.principal.name(),
            api_key: caller
                .principal
                .key_id
                .as_deref()
                .map(bakkal_store::api_key_name)
                .unwrap_or_default(),
            roles: caller.principal.roles.clone(),
            permissions: caller.grants.permissions.iter().cloned().collect(),
            auth_required: self.auth.enabled(),
            client_certificate_sha256: caller.certificate.clone().unwrap_or_default(),
        }))
    }

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let req = request.into_inner();
        let Some(p) = req.user else {
            return Err(invalid_field("user", "is required"));
        };
        let mut f = UserFields {
            active: !req.inactive,
            ..Default::default()
        };
        self.user_fields(&p, &[], &mut f).await?;
        let u = self
            .store
            .create_user(&f, now_micros())
            .await
            .map_err(from_store)?;
        Ok(Response::new(user_to_proto(&u)))
    }

    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let id = reference(&request.get_ref().name, "users", "name")?;
        let u = self.store.get_user(id).await.map_err(from_store)?;
        Ok(Response::new(user_to_proto(&u)))
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let query = ["users"];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_users(size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListUsersResponse {
            users: list.iter().map(user_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn update_user(
        &self,
        request: Request<proto::UpdateUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let req = request.into_inner();
        let Some(p) = req.user else {
            return Err(invalid_field("user", "is required"));
        };
        let id = reference(&p.name, "users", "user.name")?;
        let paths = mask_paths(&req.update_mask);
        check_mask(&paths, USER_UPDATABLE)?;
        let current = self.store.get_user(id).await.map_err(from_store)?;
        let mut f = current.fields.clone();
        if paths.is_empty() {
            f.active = p.active;
        }
        self.user_fields(&p, &paths, &mut f).await?;
        let u = self
            .store
            .update_user(id, &f, Some(p.etag.as_str()), now_micros())
            .await
            .map_err(from_store)?;
        // roles or activity changed: keys of this user resolve afresh on this server
        self.auth.invalidate();
        Ok(Response::new(user_to_proto(&u)))
    }

    async fn create_service_account(
        &self,
        request: Request<proto::CreateServiceAccountRequest>,
    ) -> Result<Response<proto::ServiceAccount>, Status> {
        let req = request.into_inner();
        let Some(p) = req.service_account else {
            return Err(invalid_field("service_account", "is required"));
        };
        let mut f = ServiceAccountFields {
            active: !req.inactive,
            ..Default::default()
        };
        self.account_fields(&p, &[], &mut f).await?;
        let a = self
            .store
            .create_service_account(&f, now_micros())
            .await
            .map_err(from_store)?;
        // a certificate unknown a moment ago may be cached as unknown
        self.auth.invalidate();
        Ok(Response::new(account_to_proto(&a)))
    }

    async fn update_service_account(
        &self,
        request: Request<proto::UpdateServiceAccountRequest>,
    ) -> Result<Response<proto::ServiceAccount>, Status> {
        let req = request.into_inner();
        let Some(p) = req.service_account else {
            return Err(invalid_field("service_account", "is required"));
        };
        let id = reference(&p.name, "serviceAccounts", "service_account.name")?;
        let paths = mask_paths(&req.update_mask);
        check_mask(&paths, ACCOUNT_UPDATABLE)?;
        let current = self
            .store
            .get_service_account(id)
            .await
            .map_err(from_store)?;
        let mut f = ServiceAccountFields::from(&current);
        if paths.is_empty() {
            f.active = p.active;
        }
        self.account_fields(&p, &paths, &mut f).await?;
        let a = self
            .store
            .update_service_account(id, &f, Some(p.etag.as_str()), now_micros())
            .await
            .map_err(from_store)?;
        // roles, activity or certificates changed: resolve afresh on this server
        self.auth.invalidate();
        Ok(Response::new(account_to_proto(&a)))
    }

    async fn get_service_account(
        &self,
        request: Request<proto::GetServiceAccountRequest>,
    ) -> Result<Response<proto::ServiceAccount>, Status> {
        let id = reference(&request.get_ref().name, "serviceAccounts", "name")?;
        let a = self
            .store
            .get_service_account(id)
            .await
            .map_err(from_store)?;
        Ok(Response::new(account_to_proto(&a)))
    }

    async fn list_service_accounts(
        &self,
        request: Request<proto::ListServiceAccountsRequest>,
    ) -> Result<Response<proto::ListServiceAccountsResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let query = ["serviceAccounts"];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_service_accounts(size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListServiceAccountsResponse {
            service_accounts: list.iter().map(account_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<proto::CreateApiKeyRequest>,
    ) -> Result<Response<proto::CreateApiKeyResponse>, Status> {
        let req = request.into_inner();
        let now = now_micros();
        let mut errs = ValidationError::new();
        let parent = parse_principal_name(req.parent.trim());
        if parent.is_none() {
            errs.add("parent", "must be a name like users/3 or serviceAccounts/2");
        }
        let k = req.api_key.unwrap_or_default();
        let display_name = k.display_name.trim().to_string();
        if display_name.is_empty() || display_name.chars().count() > 200 {
            errs.add(
                "api_key.display_name",
                "is required, at most 200 characters",
            );
        }
        let roles: Vec<String> = k.roles.iter().map(|r| r.trim().to_string()).collect();
        check_roles(&self.store, &roles, "api_key.roles", &mut errs).await?;
        let expire_time = k
            .expire_time
            .as_ref()
            .and_then(|t| micros(t, "api_key.expire_time", &mut errs));
        if expire_time.is_some_and(|t| t <= now) {
            errs.add("api_key.expire_time", "must be in the future");
        }
        errs.into_result().map_err(invalid)?;
        let Some(parent) = parent else {
            return Err(invalid_field("parent", "is required"));
        };
        let (new, text) = keys::generate(parent, &display_name, roles, k.test, expire_time);
        let key = self
            .store
            .create_api_key(&new, now)
            .await
            .map_err(from_store)?;
        tracing::info!(key_id = %key.key_id, parent = %key.parent(), "API key created");
        Ok(Response::new(proto::CreateApiKeyResponse {
            api_key: Some(key_to_proto(&key, now)),
            secret: text,
        }))
    }

    async fn get_api_key(
        &self,
        request: Request<proto::GetApiKeyRequest>,
    ) -> Result<Response<proto::ApiKey>, Status> {
        let id = key_ref(&request.get_ref().name)?;
        let k = self.store.get_api_key(&id).await.map_err(from_store)?;
        Ok(Response::new(key_to_proto(&k, now_micros())))
    }

    async fn list_api_keys(
        &self,
        request: Request<proto::ListApiKeysRequest>,
    ) -> Result<Response<proto::ListApiKeysResponse>, Status> {
        let req = request.into_inner();
        let parent = if req.parent.trim().is_empty() {
            None
        } else {
            Some(parse_principal_name(req.parent.trim()).ok_or_else(|| {
                invalid_field("parent", "must be a name like users/3 or serviceAccounts/2")
            })?)
        };
        let size = page_token::page_size(req.page_size)?;
        let query = ["apiKeys", req.parent.trim()];
        let offset = match page_token::decode(&req.page_token, &query)? {
            Some(bakkal_store::Cursor::Int(o, _)) => o.max(0) as usize,
            Some(_) => return Err(invalid_field("page_token", "does not belong to this query")),
            None => 0,
        };
        let (keys, more) = self
            .store
            .list_api_keys(parent, size, offset)
            .await
            .map_err(from_store)?;
        let now = now_micros();
        let next = more.then(|| {
            let o = (offset + keys.len()) as i64;
            bakkal_store::Cursor::Int(o, o)
        });
        Ok(Response::new(proto::ListApiKeysResponse {
            api_keys: keys.iter().map(|k| key_to_proto(k, now)).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<proto::RevokeApiKeyRequest>,
    ) -> Result<Response<proto::ApiKey>, Status> {
        let id = key_ref(&request.get_ref().name)?;
        let now = now_micros();
        let k = self
            .store
            .revoke_api_key(&id, now)
            .await
            .map_err(from_store)?;
        self.auth.invalidate();
        tracing::info!(key_id = %k.key_id, "API key revoked");
        Ok(Response::new(key_to_proto(&k, now)))
    }

    async fn rotate_api_key(
        &self,
        request: Request<proto::RotateApiKeyRequest>,
    ) -> Result<Response<proto::CreateApiKeyResponse>, Status> {
        let req = request.into_inner();
        let id = key_ref(&req.name)?;
        if req.overlap_seconds < 0 || req.overlap_seconds > 90 * 86_400 {
            return Err(invalid_field(
                "overlap_seconds",
                "must be between 0 (until revoked) and 90 days",
            ));
        }
        let now = now_micros();
        let old = self.store.get_api_key(&id).await.map_err(from_store)?;
        let display_name = if req.display_name.trim().is_empty() {
            old.display_name.clone()
        } else {
            req.display_name.trim().to_string()
        };
        let (new, text) = keys::generate(
            (old.parent_kind, old.parent_id),
            &display_name,
            old.roles.clone(),
            old.test,
            old.expire_time,
        );
        let old_expires =
            (req.overlap_seconds > 0).then(|| now.saturating_add(req.overlap_seconds * 1_000_000));
        let key = self
            .store
            .rotate_api_key(&id, &new, old_expires, now)
            .await
            .map_err(from_store)?;
        self.auth.invalidate();
        tracing::info!(key_id = %key.key_id, rotated_from = %id, "API key rotated");
        Ok(Response::new(proto::CreateApiKeyResponse {
            api_key: Some(key_to_proto(&key, now)),
            secret: text,
        }))
    }

    async fn list_roles(
        &self,
        _request: Request<proto::ListRolesRequest>,
    ) -> Result<Response<proto::ListRolesResponse>, Status> {
        let mut roles: Vec<proto::Role> = BUILT_IN
            .iter()
            .map(|b| proto::Role {
                name: format!("roles/{}", b.name()),
                description: b.description().to_string(),
                permissions: b.permissions().into_iter().map(str::to_string).collect(),
                built_in: true,
                record_scopes: RECORDS
                    .iter()
                    .filter_map(|&r| b.scope(r).map(|s| role_scope(r.name(), s)))
                    .collect(),
            })
            .collect();
        for r in self.store.custom_roles().await.map_err(from_store)? {
            roles.push(proto::Role {
                name: format!("roles/{}", r.name),
                description: r.description,
                permissions: r.permissions,
                built_in: false,
                record_scopes: r.scopes.iter().map(|(f, s)| role_scope(f, *s)).collect(),
            });
        }
        Ok(Response::new(proto::ListRolesResponse { roles }))
    }

    async fn create_role(
        &self,
        request: Request<proto::CreateRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let Some(r) = request.into_inner().role else {
            return Err(invalid_field("role", "is required"));
        };
        let mut errs = ValidationError::new();
        let name = r
            .name
            .trim()
            .strip_prefix("roles/")
            .unwrap_or(r.name.trim());
        if !valid_role_name(name) {
            errs.add(
                "role.name",
                "must be roles/{name}: lowercase letters, digits and _, at most 64",
            );
        } else if BuiltIn::parse(name).is_some() {
            errs.add("role.name", "is a built-in role");
        }
        let known = all_permissions();
        if r.permissions.is_empty() {
            errs.add("role.permissions", "list at least one permission");
        }
        for (i, p) in r.permissions.iter().enumerate() {
            if !known.contains(p.as_str()) {
                errs.add(
                    format!("role.permissions[{i}]"),
                    format!("unknown permission '{}'; see docs/permissions.md", quote(p)),
                );
            }
        }
        if r.description.chars().count() > 500 {
            errs.add("role.description", "at most 500 characters");
        }
        let mut scopes = BTreeMap::new();
        for (i, rs) in r.record_scopes.iter().enumerate() {
            let field = format!("role.record_scopes[{i}]");
            match RECORDS.iter().find(|f| f.name() == rs.records.trim()) {
                None => errs.add(
                    format!("{field}.records"),
                    format!(
                        "unknown record family '{}'; one of: {}",
                        quote(&rs.records),
                        RECORDS
                            .iter()
                            .map(|f| f.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some(f) => match scope_from_proto(rs.scope) {
                    None => errs.add(format!("{field}.scope"), "must be OWN, TEAM or ALL"),
                    Some(s) => {
                        if scopes.insert(f.name().to_string(), s).is_some() {
                            errs.add(format!("{field}.records"), "is given twice");
                        }
                    }
                },
            }
        }
        errs.into_result().map_err(invalid)?;
        let role = self
            .store
            .create_role(&CustomRole {
                name: name.to_string(),
                description: r.description.clone(),
                permissions: r.permissions.clone(),
                scopes,
                create_time: now_micros(),
            })
            .await
            .map_err(from_store)?;
        self.auth.invalidate();
        Ok(Response::new(proto::Role {
            name: format!("roles/{}", role.name),
            description: role.description,
            permissions: role.permissions,
            built_in: false,
            record_scopes: role.scopes.iter().map(|(f, s)| role_scope(f, *s)).collect(),
        }))
    }
}

fn role_scope(records: &str, scope: Scope) -> proto::RoleRecordScope {
    let level = match scope {
        Scope::Own => proto::RecordScopeLevel::Own,
        Scope::Team => proto::RecordScopeLevel::Team,
        Scope::All => proto::RecordScopeLevel::All,
    };
    proto::RoleRecordScope {
        records: records.to_string(),
        scope: level as i32,
    }
}

fn scope_from_proto(level: i32) -> Option<Scope> {
    match proto::RecordScopeLevel::try_from(level).ok()? {
        proto::RecordScopeLevel::Own => Some(Scope::Own),
        proto::RecordScopeLevel::Team => Some(Scope::Team),
        proto::RecordScopeLevel::All => Some(Scope::All),
        proto::RecordScopeLevel::Unspecified => None,
    }
}

fn key_ref(name: &str) -> Result<String, Status> {
    name.trim()
        .strip_prefix("apiKeys/")
        .filter(|id| bakkal_domain::access::is_key_id(id))
        .map(str::to_string)
        .ok_or_else(|| invalid_field("name", "must be a name like apiKeys/{16-character key id}"))
}
