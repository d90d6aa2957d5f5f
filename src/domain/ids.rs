//! Identifiers that arrive from outside, parsed once into types that cannot hold a bad
//! value.

use std::fmt;

/// A tenant or site slug, or a plan code: `^[a-z0-9][a-z0-9-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bytes = s.as_bytes();
        if bytes.is_empty() || bytes.len() > 63 {
            return Err("must be 1 to 63 characters".to_owned());
        }
        let ok_first = bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit();
        let ok_rest = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !ok_first || !ok_rest {
            return Err(
                "must match ^[a-z0-9][a-z0-9-]{0,62}$ (lower-case letters, digits, hyphens)"
                    .to_owned(),
            );
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The opaque id a site gives a session: 1–128 printable ASCII characters (a hash of
/// the session key; raw keys never leave the site).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionRef(String);

impl SessionRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 128 {
            return Err("must be 1 to 128 characters".to_owned());
        }
        if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err("must be printable ASCII without spaces".to_owned());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sessions limit: 0 ..= 1,000,000 (0 blocks every new session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionLimit(i64);

impl SessionLimit {
    pub const MAX: i64 = 1_000_000;

    pub fn parse(n: i64) -> Result<Self, String> {
        if (0..=Self::MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(format!("must be between 0 and {}", Self::MAX))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A timeout in seconds: 60 s ..= 365 days.
pub fn parse_timeout_seconds(n: i64) -> Result<i64, String> {
    if (60..=365 * 86400).contains(&n) {
        Ok(n)
    } else {
        Err("must be between 60 and 31536000 seconds".to_owned())
    }
}

/// An http(s) URL with a host.
pub fn parse_http_url(s: &str) -> Result<String, String> {
    let u = url::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("must be an http or https URL".to_owned());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if s.len() > 2048 {
        return Err("must be at most 2048 characters".to_owned());
    }
    Ok(s.to_owned())
}

/// A plain-shape check for an e-mail address: one `@`, something on both sides.
pub fn parse_email(s: &str) -> Result<String, String> {
    let ok = s.len() <= 254
        && s.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.matches('@').count() == 1;
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be an e-mail address like billing@example.com".to_owned())
    }
}

/// An ISO 4217 currency code: three upper-case letters.
pub fn parse_currency(s: &str) -> Result<String, String> {
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s.to_owned())
    } else {
        Err("must be an ISO 4217 code of three upper-case letters, like EUR".to_owned())
    }
}

/// A display name: 1–200 characters, no control characters.
pub fn parse_name(s: &str) -> Result<String, String> {
    let n = s.chars().count();
    if n == 0 || n > 200 {
        return Err("must be 1 to 200 characters".to_owned());
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_pattern() {
        assert!(Slug::parse("acme").is_ok());
        assert!(Slug::parse("0-site-1").is_ok());
        assert!(Slug::parse(&"a".repeat(63)).is_ok());
        assert!(Slug::parse(&"a".repeat(64)).is_err());
        assert!(Slug::parse("").is_err());
        assert!(Slug::parse("-acme").is_err());
        assert!(Slug::parse("Acme").is_err());
        assert!(Slug::parse("a_b").is_err());
        assert!(Slug::parse("é").is_err());
    }

    #[test]
    fn session_refs_are_printable_ascii() {
        assert!(SessionRef::parse("abc123").is_ok());
        assert!(SessionRef::parse(&"x".repeat(128)).is_ok());
        assert!(SessionRef::parse(&"x".repeat(129)).is_err());
        assert!(SessionRef::parse("").is_err());
        assert!(SessionRef::parse("a b").is_err());
        assert!(SessionRef::parse("a\u{7f}").is_err());
        assert!(SessionRef::parse("ü").is_err());
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(SessionLimit::parse(0).unwrap().get(), 0);
        assert!(SessionLimit::parse(1_000_000).is_ok());
        assert!(SessionLimit::parse(1_000_001).is_err());
        assert!(SessionLimit::parse(-1).is_err());
    }

    #[test]
    fn urls_emails_currencies() {
        assert!(parse_http_url("https://site.example/hook").is_ok());
        assert!(parse_http_url("ftp://site.example").is_err());
        assert!(parse_http_url("not a url").is_err());
        assert!(parse_email("a@b.example").is_ok());
        assert!(parse_email("a@b").is_err());
        assert!(parse_email("a@@b.c").is_err());
        assert!(parse_currency("EUR").is_ok());
        assert!(parse_currency("eur").is_err());
        assert!(parse_timeout_seconds(59).is_err());
        assert!(parse_timeout_seconds(60).is_ok());
    }
}
