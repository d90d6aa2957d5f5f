//! People's sessions in the browser: the cookie a sign-in through the identity
//! provider sets, checked on every request that carries it instead of a bearer token.
//! A write made with it must also carry the session's CSRF token in a header, which a
//! page of another site cannot read or send.

use crate::db::people::{self, Person, WebSession};
use crate::domain::sign_in::{self, PersonRole};
use crate::error::{Error, Result};
use crate::state::AppState;

use super::Caller;

/// The session cookie's name.
pub const COOKIE: &str = "headcount_session";

/// The header that carries the session's CSRF token on writes.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// A session used again this long after its last noted use is noted again: the idle
/// timeout is judged to within this, without a write per request.
const TOUCH_MS: i64 = 60_000;

/// A person's current session, found by its cookie.
#[derive(Debug, Clone)]
pub struct Signed {
    pub caller: Caller,
    pub session: WebSession,
    pub person: Person,
    pub role: PersonRole,
}

/// What a request carries of a session: the cookie, whether it writes, and the CSRF
/// header.
#[derive(Debug, Clone)]
pub struct Carried {
    pub value: String,
    pub write: bool,
    pub csrf: Option<String>,
}

/// The session cookie of a request, if it has one.
pub fn from_request(req: &actix_web::HttpRequest) -> Option<Carried> {
    let value = req.cookie(COOKIE)?.value().to_owned();
    let method = req.method();
    let write = !(method == actix_web::http::Method::GET
        || method == actix_web::http::Method::HEAD
        || method == actix_web::http::Method::OPTIONS);
    let csrf = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (!value.is_empty()).then_some(Carried { value, write, csrf })
}

/// The `Set-Cookie` value of a new session (`Secure` when headcount is reached over
/// TLS), or of none (`value` empty: the cookie is removed).
pub fn set_cookie(state: &AppState, value: &str) -> String {
    let secure = state
        .oidc
        .as_ref()
        .is_some_and(|p| p.settings.public_url.starts_with("https://"));
    let max_age = if value.is_empty() {
        0
    } else {
        state
            .oidc
            .as_ref()
            .map_or(0, |p| p.settings.max_age.as_secs())
    };
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session a cookie names, if it still holds. `write`: the request changes
/// something, so `csrf` must be the session's token (403 otherwise).
pub async fn signed(
    state: &AppState, cookie: &str, write: bool, csrf: Option<&str>,
) -> Result<Signed> {
    let provider = state.oidc.as_ref().ok_or_else(|| {
        Error::Unauthorized("sign-in by identity provider is not configured here".to_owned())
    })?;
    let idle_ms = provider.settings.idle.as_millis() as i64;
    let hash = sign_in::session_hash(cookie);
    let now = state.now();
    let found = {
        let hash = hash.clone();
        state.db.run(move |c| people::session(c, &hash)).await?
    };
    let (session, person) = found.ok_or_else(|| {
        Error::Unauthorized("the session cookie names no session; sign in again".to_owned())
    })?;
    if let Some(why) = sign_in::session_ended(
        session.ended_at,
        session.last_seen_at,
        session.expires_at,
        idle_ms,
        now,
    ) {
        return Err(Error::Unauthorized(format!("session ended: {why}")));
    }
    let role = PersonRole::from_stored(&session.role, session.tenant.as_deref())
        .ok_or_else(|| Error::Unauthorized("the session's role is unknown".to_owned()))?;
    if write && !csrf.is_some_and(|t| same(t.as_bytes(), session.csrf_token.as_bytes())) {
        return Err(Error::Forbidden(format!(
            "a change made with the session cookie must carry the {CSRF_HEADER} header \
             (its value is in GET /auth/session)"
        )));
    }
    if now - session.last_seen_at >= TOUCH_MS {
        state.db.run(move |c| people::touch(c, &hash, now)).await?;
    }
    let person_label = person.actor(&role);
    // The rate limit counts per session.
    let jti = format!("web:{}", &session.id_hash[..16.min(session.id_hash.len())]);
    let caller = match &role {
        PersonRole::Admin => Caller::Admin {
            jti,
            person: Some(person_label),
        },
        PersonRole::Tenant(t) => Caller::Tenant {
            tenant: t.clone(),
            jti,
            person: Some(person_label),
        },
    };
    Ok(Signed {
        caller,
        session,
        person,
        role,
    })
}

/// Equality in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
