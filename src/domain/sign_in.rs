//! The rules of people's sign-in through an identity provider: which role a person's
//! groups give, where a finished sign-in may lead, the PKCE challenge, and how long a
//! session lasts. Nothing here talks to the provider or the database.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::Millis;

/// What a person may do in headcount, from their groups at sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonRole {
    /// One of the provider's operators.
    Admin,
    /// A maintainer of this tenant's sites.
    Tenant(String),
}

impl PersonRole {
    /// The stored name of the role (as tokens name it).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Tenant(_) => "tenant",
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Admin => None,
            Self::Tenant(t) => Some(t),
        }
    }

    /// The role as stored (`role`, `tenant`); `None` for anything else.
    pub fn from_stored(role: &str, tenant: Option<&str>) -> Option<Self> {
        match (role, tenant) {
            ("admin", _) => Some(Self::Admin),
            ("tenant", Some(t)) => Some(Self::Tenant(t.to_owned())),
            _ => None,
        }
    }
}

/// The role a person's groups give: the provider's operators by `admin_group`, a
/// tenant's maintainers by `{tenant_prefix}{tenant}`. An operator group wins; a
/// person in the groups of several tenants is refused (a session is for one), as is
/// a person in none.
pub fn role_of(
    groups: &[String], admin_group: &str, tenant_prefix: &str,
) -> Result<PersonRole, String> {
    if groups.iter().any(|g| g == admin_group) {
        return Ok(PersonRole::Admin);
    }
    let mut tenants: Vec<&str> = groups
        .iter()
        .filter_map(|g| g.strip_prefix(tenant_prefix))
        .filter(|t| !t.is_empty())
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    match tenants.as_slice() {
        [one] => Ok(PersonRole::Tenant((*one).to_owned())),
        [] => Err(format!(
            "your account is in none of headcount's groups ({admin_group:?} for the \
             provider's operators, \"{tenant_prefix}<tenant>\" for a tenant's maintainers); \
             ask your administrator to add you to one"
        )),
        several => Err(format!(
            "your account is in the groups of several tenants ({}); a session is for one \
             tenant: ask your administrator to keep one",
            several.join(", ")
        )),
    }
}

/// Where a finished sign-in leads: a dashboard address given by the page that started
/// it, or the dashboard's start. Anything else (another site, a scheme-relative
/// `//host`, a path outside the dashboard) leads to the start, so that the sign-in
/// cannot be used to send people elsewhere.
pub fn return_to(asked: Option<&str>) -> String {
    const START: &str = "/ui/";
    match asked {
        Some(p)
            if p.starts_with(START)
                && p.len() <= 2000
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => START.to_owned(),
    }
}

/// The PKCE challenge of a verifier (method `S256`, RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The hash a session is stored under: the cookie itself is never stored.
pub fn session_hash(cookie: &str) -> String {
    Sha256::digest(cookie.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How long a sign-in may take, from `GET /auth/login` to its callback.
pub const ATTEMPT_MS: Millis = 10 * 60 * 1000;

/// How far an ID token's times may be off headcount's clock.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// Why a session no longer holds at `now`, if it does not: ended, past its absolute
/// end, or unused for longer than `idle_ms`.
pub fn session_ended(
    ended_at: Option<Millis>, last_seen_at: Millis, expires_at: Millis, idle_ms: Millis,
    now: Millis,
) -> Option<&'static str> {
    if ended_at.is_some() {
        Some("signed out")
    } else if now >= expires_at {
        Some("the session reached its longest life; sign in again")
    } else if now - last_seen_at >= idle_ms {
        Some("the session was unused for too long; sign in again")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn groups_give_one_role() {
        let role = |g: &[&str]| role_of(&groups(g), "hc-admins", "hc-tenant-");
        assert_eq!(
            role(&["staff", "hc-admins", "hc-tenant-acme"]),
            Ok(PersonRole::Admin)
        );
        assert_eq!(
            role(&["hc-tenant-acme", "hc-tenant-acme"]),
            Ok(PersonRole::Tenant("acme".to_owned()))
        );
        assert!(
            role(&["hc-tenant-acme", "hc-tenant-globex"])
                .unwrap_err()
                .contains("acme, globex")
        );
        assert!(role(&["staff", "hc-tenant-"]).is_err());
        assert!(role(&[]).is_err());
    }

    #[test]
    fn a_sign_in_leads_only_into_the_dashboard() {
        assert_eq!(
            return_to(Some("/ui/#/sites/acme-erp")),
            "/ui/#/sites/acme-erp"
        );
        for bad in [
            "https://evil.example/ui/",
            "//evil.example/ui/",
            "/v1/sites",
            "/ui\\x",
            "/ui/\n",
        ] {
            assert_eq!(return_to(Some(bad)), "/ui/", "{bad:?}");
        }
        assert_eq!(return_to(None), "/ui/");
    }

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // The example of RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_session_ends_by_sign_out_age_or_idleness() {
        let idle = 60_000;
        assert_eq!(session_ended(None, 1_000, 100_000, idle, 50_000), None);
        assert!(session_ended(Some(2_000), 1_000, 100_000, idle, 3_000).is_some());
        assert!(session_ended(None, 90_000, 100_000, idle, 100_000).is_some());
        assert!(session_ended(None, 1_000, 100_000, idle, 61_000).is_some());
    }
}
