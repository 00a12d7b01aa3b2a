//! Resource names (AIP-122): `customers/{id}`, `products/{sku}`, `customers/{id}/orders/{order_id}`.

/// Parse `{collection}/{id}` where the id is a positive integer.
pub fn parse_id(name: &str, collection: &str) -> Option<i64> {
    let rest = name.strip_prefix(collection)?.strip_prefix('/')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.len() > 18 {
        return None;
    }
    rest.parse().ok().filter(|id| *id > 0)
}

pub fn customer_name(id: i64) -> String {
    format!("customers/{id}")
}

pub fn parse_customer(name: &str) -> Option<i64> {
    parse_id(name, "customers")
}

pub fn product_name(sku: &str) -> String {
    format!("products/{sku}")
}

pub fn order_name(customer_id: i64, order_id: &str) -> String {
    format!("customers/{customer_id}/orders/{order_id}")
}

pub fn interaction_name(customer_id: i64, id: i64) -> String {
    format!("customers/{customer_id}/interactions/{id}")
}

/// Parse `scripts/{id}` or `scripts/{id}@{revision}` (AIP-162 revision names).
pub fn parse_script(name: &str) -> Option<(i64, Option<i64>)> {
    let (base, revision) = match name.split_once('@') {
        Some((b, r)) => (b, Some(r)),
        None => (name, None),
    };
    let id = parse_id(base, "scripts")?;
    let revision = match revision {
        None => None,
        Some(r) if !r.is_empty() && r.len() <= 18 && r.bytes().all(|b| b.is_ascii_digit()) => {
            Some(r.parse().ok().filter(|r: &i64| *r > 0)?)
        }
        Some(_) => return None,
    };
    Some((id, revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_well_formed_names() {
        assert_eq!(parse_customer("customers/42"), Some(42));
        assert_eq!(parse_customer("customers/0"), None);
        assert_eq!(parse_customer("customers/"), None);
        assert_eq!(parse_customer("customers/4x"), None);
        assert_eq!(parse_customer("customer/4"), None);
        assert_eq!(parse_customer("customers/-4"), None);
        assert_eq!(parse_customer("customers/99999999999999999999"), None);
    }

    #[test]
    fn script_names_may_name_a_revision() {
        assert_eq!(parse_script("scripts/12"), Some((12, None)));
        assert_eq!(parse_script("scripts/12@3"), Some((12, Some(3))));
        for bad in [
            "scripts/12@",
            "scripts/12@0",
            "scripts/12@x",
            "scripts/x",
            "scripts/",
            "customers/12",
        ] {
            assert_eq!(parse_script(bad), None, "{bad}");
        }
    }
}
