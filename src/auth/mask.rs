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

    /// A customer as this caller may see it: with `Mask`, e-mail and phone masked and the
    /// birth date gone. Dry runs (TestScript, DryRunCampaign) run their scripts on this, so
    /// nothing a script prints, returns or renders can carry what a response would mask.
    pub fn customer(self, mut c: bakkal_domain::Customer) -> bakkal_domain::Customer {
        if self == Pii::Mask {
            c.fields.email = c.fields.email.as_deref().map(email);
            c.fields.phone = c.fields.phone.as_deref().map(phone);
            c.fields.birth_date = None;
        }
        c
    }

    /// A birth date (`YYYY-MM-DD`) or other exact personal value: gone when masked.
    pub fn hidden(self, v: &str) -> String {
        match self {
            Pii::Show => v.to_string(),
            Pii::Mask => String::new(),
        }
    }
}

impl Pii {
    /// `text` (a script's output or error about a customer with fields `f`) with its e-mail, phone and
    /// birth date in it masked when this caller may not see them: for dry-run outputs made
    /// from unmasked data (segment previews' error examples, campaign dry runs' messages).
    pub fn scrub(self, text: &str, f: &bakkal_domain::CustomerFields) -> String {
        if self == Pii::Show {
            return text.to_string();
        }
        let mut out = text.to_string();
        let mut swap = |value: &str, masked: String| {
            if value.len() < 4 {
                return;
            }
            for v in [
                value.to_string(),
                value.to_uppercase(),
                value.to_lowercase(),
            ] {
                out = out.replace(&v, &masked);
            }
        };
        if let Some(e) = &f.email {
            swap(e, email(e));
        }
        if let Some(p) = &f.phone {
            swap(p, phone(p));
            // the national number, without `+` and the country code
            if p.len() > 10 {
                let national = &p[p.len() - 10..];
                swap(national, "*".repeat(8) + &national[8..]);
            }
        }
        if let Some(b) = &f.birth_date {
            swap(b, "****-**-**".into());
        }
        out
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

    #[test]
    fn scrubbing_masks_a_customers_values_in_text() {
        let c = bakkal_domain::CustomerFields {
            email: Some("ayse@example.com".into()),
            phone: Some("+905321234567".into()),
            birth_date: Some("1990-01-02".into()),
            ..Default::default()
        };
        let text = "AYSE@EXAMPLE.COM / ayse@example.com, 05321234567, +905321234567, 1990-01-02";
        let out = Pii::Mask.scrub(text, &c);
        assert!(!out.contains("ayse@"), "{out}");
        assert!(!out.to_lowercase().contains("ayse@"), "{out}");
        assert!(!out.contains("5321234567"), "{out}");
        assert!(!out.contains("1990-01-02"), "{out}");
        assert_eq!(Pii::Show.scrub(text, &c), text);
    }
}
