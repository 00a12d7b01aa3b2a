//! Personal data masking: a caller without `customers.pii.read` sees e-mail addresses, phone
//! numbers and birth dates masked in every customer and ticket a response carries. The
//! conversion to protobuf takes a [`Pii`], so no response path can forget it.

use super::caller_of;

/// Whether a response may carry personal data as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pii {
    Show,
    Mask,
}

impl Pii {
    /// What the caller of `req` may see.
    pub fn of<T>(req: &tonic::Request<T>) -> Pii {
        if caller_of(req).reads_pii() {
            Pii::Show
        } else {
            Pii::Mask
        }
    }

    pub fn email(self, e: &str) -> String {
        match self {
            Pii::Show => e.to_string(),
            Pii::Mask => email(e),
        }
    }

    pub fn phone(self, p: &str) -> String {
        match self {
            Pii::Show => p.to_string(),
            Pii::Mask => phone(p),
        }
    }

    /// A birth date (`YYYY-MM-DD`) or other exact personal value: gone when masked.
    pub fn hidden(self, v: &str) -> String {
        match self {
            Pii::Show => v.to_string(),
            Pii::Mask => String::new(),
        }
    }
}

/// `a***@example.com`: the first character of the local part and the domain.
pub fn email(e: &str) -> String {
    if e.is_empty() {
        return String::new();
    }
    match e.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `+90*******67`: the country prefix (`+` and two digits) and the last two digits.
pub fn phone(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_a_hint() {
        assert_eq!(email("ayse@example.com"), "a***@example.com");
        assert_eq!(email(""), "");
        assert_eq!(phone("+905321234567"), "+90********67");
        assert_eq!(phone(""), "");
        assert_eq!(Pii::Show.email("a@b.c"), "a@b.c");
        assert_eq!(Pii::Mask.hidden("1990-01-02"), "");
    }
}
