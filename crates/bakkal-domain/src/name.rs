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
}
