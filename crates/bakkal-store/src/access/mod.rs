//! Access control's records: staff users, service accounts, API keys (only a hash of each
//! secret) and custom roles. What a role may do is the transport's permission table; here are
//! only the principals, their role names and the custom roles' permission lists.

mod keys;
mod roles;
mod users;

pub use keys::{api_key_name, ApiKey, KeyOwner, NewApiKey};
pub use roles::CustomRole;
pub use users::{
    service_account_name, user_name, ServiceAccount, ServiceAccountFields, User, UserFields,
};

fn encode_list<T: serde::Serialize>(v: &[T]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn decode_list<T: serde::de::DeserializeOwned>(s: &str) -> Vec<T> {
    serde_json::from_str(s).unwrap_or_default()
}
