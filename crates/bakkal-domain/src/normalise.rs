//! Normalisation that makes "the same person" comparable: emails trimmed and lower-cased, phone
//! numbers in E.164, names folded for duplicate search.

use unicode_normalization::UnicodeNormalization;

/// An email address as bakkal stores and shows it: trimmed, in Unicode NFKC (so full-width
/// `ＶＥＬＩ＠…` becomes `veli@…`), lower-cased with `İ` as `i` (not `i̇`), the domain as the
/// person wrote it (Unicode or punycode). Checks the shape; `Err` says what is wrong. Two
/// addresses are the same mailbox when their [`email_key`]s are equal, not their stored forms.
pub fn email(raw: &str) -> Result<String, &'static str> {
    email_parts(raw).map(|p| p.display)
}

/// The key that makes two spellings of one mailbox equal: [`email`]'s form with full case
/// folding (`ß` → `ss`, final `ς` → `σ`) in the local part and the domain in its IDNA ASCII
/// form (`exämple.com` → `xn--exmple-cua.com`). Uniqueness and matching use this key.
pub fn email_key(raw: &str) -> Result<String, &'static str> {
    let p = email_parts(raw)?;
    let local: String = p.local.chars().flat_map(fold_char).collect();
    let local: String = local.nfkc().collect();
    Ok(format!("{local}@{}", p.ascii_domain))
}

struct EmailParts {
    display: String,
    local: String,
    ascii_domain: String,
}

fn email_parts(raw: &str) -> Result<EmailParts, &'static str> {
    let e = lower(&raw.trim().nfkc().collect::<String>());
    if e.len() > 254 {
        return Err("is longer than 254 characters");
    }
    let (local, domain) = e.split_once('@').ok_or("has no '@'")?;
    if local.is_empty() || local.len() > 64 {
        return Err("has an empty or over-long local part");
    }
    if domain.contains('@') {
        return Err("has more than one '@'");
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    const NO_DOMAIN: &str = "has no valid domain (such as example.com)";
    let ascii_domain = idna::domain_to_ascii_strict(domain).map_err(|_| NO_DOMAIN)?;
    let labels: Vec<&str> = ascii_domain.split('.').collect();
    if labels.len() < 2
        || labels.iter().any(|l| {
            l.is_empty()
                || l.starts_with('-')
                || l.ends_with('-')
                || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    {
        return Err(NO_DOMAIN);
    }
    Ok(EmailParts {
        local: local.to_string(),
        ascii_domain,
        display: e,
    })
}

/// Lower-case for people, not for Turkish or Lithuanian only: `İ` becomes `i` (Unicode's
/// default mapping gives `i` + U+0307, a dot no mailbox has), and a U+0307 after `i` or `j`,
/// which are dotted already, is dropped. The result is in NFC.
fn lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{130}' => out.push('i'),
            '\u{307}' if out.ends_with(['i', 'j']) => {}
            c => out.extend(c.to_lowercase()),
        }
    }
    out.nfc().collect()
}

/// Full case folding of an already lower-cased character, where it differs from lower case.
fn fold_char(c: char) -> impl Iterator<Item = char> {
    let folded: &[char] = match c {
        'ß' => &['s', 's'],
        'ς' => &['σ'],
        _ => &[],
    };
    let own = folded.is_empty().then_some(c);
    folded.iter().copied().chain(own)
}

/// Caller text bakkal stores or searches: no control characters but tab and line breaks. NUL
/// in particular is refused here, the same on both databases (PostgreSQL cannot store it in
/// text, SQLite would).
pub fn control_free(raw: &str) -> Result<(), &'static str> {
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        Err("must not contain control characters (other than tab and line breaks)")
    } else {
        Ok(())
    }
}

/// ITU calling codes for the countries bakkal knows how to dial without a leading `+`.
fn calling_code(country: &str) -> Option<&'static str> {
    Some(match country {
        "TR" => "90",
        "US" | "CA" => "1",
        "GB" => "44",
        "DE" => "49",
        "FR" => "33",
        "NL" => "31",
        "BE" => "32",
        "ES" => "34",
        "IT" => "39",
        "AT" => "43",
        "CH" => "41",
        "SE" => "46",
        "NO" => "47",
        "DK" => "45",
        "PL" => "48",
        "GR" => "30",
        "AZ" => "994",
        "IE" => "353",
        "PT" => "351",
        _ => return None,
    })
}

/// A phone number in E.164 (`+905321234567`). Accepts spaces, dashes, dots and parentheses;
/// `00` as the international prefix; a national number (leading `0` or none) when the customer's
/// country is one bakkal knows the calling code of. Full-width forms are read as ASCII.
pub fn phone(raw: &str, country_code: Option<&str>) -> Result<String, &'static str> {
    // NFKC makes full-width digits, `＋`, `－` and `（）` their ASCII selves.
    let compatible: String = raw.nfkc().collect();
    let trimmed = compatible.trim();
    let mut digits = String::with_capacity(trimmed.len());
    let mut international = false;
    for (i, c) in trimmed.chars().enumerate() {
        match c {
            '+' if i == 0 => international = true,
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => {
                return Err("may contain only digits, spaces, '-', '.', '(', ')' and a leading '+'")
            }
        }
    }
    if !international {
        if let Some(rest) = digits.strip_prefix("00") {
            digits = rest.to_string();
        } else {
            let code = country_code
                .and_then(calling_code)
                .ok_or("needs a leading '+' and country code (or a known country_code)")?;
            let national = digits.trim_start_matches('0');
            digits = format!("{code}{national}");
        }
    }
    if digits.starts_with('0') {
        return Err("has a country code starting with 0");
    }
    if !(8..=15).contains(&digits.len()) {
        return Err("must have 8 to 15 digits in E.164 form");
    }
    Ok(format!("+{digits}"))
}

/// An ISO 3166-1 alpha-2 country code, upper-cased.
pub fn country_code(raw: &str) -> Result<String, &'static str> {
    let c = raw.trim().to_ascii_uppercase();
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        Err("must be a two-letter ISO 3166-1 code such as TR")
    }
}

/// An ISO 4217 currency code, upper-cased.
pub fn currency(raw: &str) -> Result<String, &'static str> {
    let c = raw.trim().to_ascii_uppercase();
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        Err("must be a three-letter ISO 4217 code such as TRY")
    }
}

/// The key two display names share when they are "the same name": lower-cased, whitespace
/// collapsed, punctuation dropped.
pub fn name_key(display_name: &str) -> String {
    let folded: String = display_name
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A tag or a SKU: 1..=64 characters of letters, digits, `-`, `_`, `.`, `:`.
pub fn token(raw: &str) -> Result<String, &'static str> {
    let t = raw.trim();
    if t.is_empty() || t.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !t
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err("may contain only letters, digits, '-', '_', '.' and ':'");
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(email("  Ayse@Example.COM ").unwrap(), "ayse@example.com");
        assert!(email("ayse").is_err());
        assert!(email("ayse@example").is_err());
        assert!(email("a b@example.com").is_err());
        assert!(email("a@@example.com").is_err());
        assert!(email("@example.com").is_err());
        assert!(email("a@example..com").is_err());
    }

    #[test]
    fn decomposed_and_precomposed_emails_share_a_key_and_display_precomposed() {
        let precomposed = "ay\u{15f}e@example.com";
        let decomposed = "ays\u{327}e@example.com";
        assert_eq!(email(decomposed).unwrap(), precomposed);
        assert_eq!(
            email_key(decomposed).unwrap(),
            email_key(precomposed).unwrap()
        );
    }

    #[test]
    fn dotted_capital_i_lowercases_to_plain_i() {
        assert_eq!(email("İLKER@example.com").unwrap(), "ilker@example.com");
        assert_eq!(
            email("I\u{307}LKER@example.com").unwrap(),
            "ilker@example.com"
        );
        assert_eq!(
            email_key("İLKER@example.com").unwrap(),
            email_key("ilker@example.com").unwrap()
        );
        // a key stored with the combining dot (as older versions did) meets the plain one
        assert_eq!(
            email_key("i\u{307}lker@example.com").unwrap(),
            "ilker@example.com"
        );
    }

    #[test]
    fn unicode_domains_are_keyed_by_their_idna_form() {
        assert_eq!(email("ali@EXÄMPLE.com").unwrap(), "ali@exämple.com");
        assert_eq!(
            email_key("ali@exämple.com").unwrap(),
            "ali@xn--exmple-cua.com"
        );
        assert_eq!(
            email_key("ali@xn--exmple-cua.com").unwrap(),
            "ali@xn--exmple-cua.com"
        );
        assert_eq!(
            email("ali@xn--exmple-cua.com").unwrap(),
            "ali@xn--exmple-cua.com"
        );
        assert!(email("ali@exa_mple.com").is_err());
        assert!(email("ali@-example.com").is_err());
    }

    #[test]
    fn full_width_emails_are_their_ascii_selves() {
        assert_eq!(email("ＶＥＬＩ@example.com").unwrap(), "veli@example.com");
        assert_eq!(
            email("ＶＥＬＩ＠ｅｘａｍｐｌｅ．ｃｏｍ").unwrap(),
            "veli@example.com"
        );
        assert_eq!(
            email_key("ＶＥＬＩ@example.com").unwrap(),
            "veli@example.com"
        );
    }

    #[test]
    fn email_keys_fold_case_fully() {
        assert_eq!(email("STRASSE@example.de").unwrap(), "strasse@example.de");
        assert_eq!(email("Straße@example.de").unwrap(), "straße@example.de");
        assert_eq!(
            email_key("Straße@example.de").unwrap(),
            "strasse@example.de"
        );
        assert_eq!(
            email_key("STRAẞE@example.de").unwrap(),
            "strasse@example.de"
        );
        assert_eq!(
            email_key("ΟΔΥΣΣΕΥΣ@example.gr").unwrap(),
            email_key("οδυσσευς@example.gr").unwrap()
        );
    }

    #[test]
    fn full_width_phone_digits_are_read_as_ascii() {
        assert_eq!(
            phone("＋９０ ５３２ １２３ ４５ ６７", None).unwrap(),
            "+905321234567"
        );
        assert_eq!(
            phone("０５３２－１２３－４５－６７", Some("TR")).unwrap(),
            "+905321234567"
        );
        // other scripts' digits are refused with the usual message
        assert!(phone("+٩٠٥٣٢١٢٣٤٥٦٧", None).is_err());
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(phone("+90 532 123 45 67", None).unwrap(), "+905321234567");
        assert_eq!(
            phone("0090 (532) 123-45-67", None).unwrap(),
            "+905321234567"
        );
        assert_eq!(
            phone("0532 123 45 67", Some("TR")).unwrap(),
            "+905321234567"
        );
        assert_eq!(phone("(415) 555-0100", Some("US")).unwrap(), "+14155550100");
        assert!(phone("0532 123 45 67", None).is_err());
        assert!(phone("+90 532 abc", None).is_err());
        assert!(phone("+12", None).is_err());
        assert!(phone("+1234567890123456", None).is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(control_free("two\nlines\tand a tab").is_ok());
        assert!(control_free("nul\0byte").is_err());
        assert!(control_free("bell\u{7}").is_err());
        assert!(control_free("c1\u{85}").is_err());
    }

    #[test]
    fn name_keys_fold_case_and_punctuation() {
        assert_eq!(name_key("  Ayşe   YILMAZ-Kaya "), "ayşe yilmaz kaya");
    }
}
