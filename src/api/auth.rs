//! Signing people in through the provider's identity provider (OpenID Connect,
//! authorization code with PKCE S256), their session, and signing out. Machines keep
//! using bearer tokens; without the OIDC settings only tokens sign in.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Scope;
use crate::auth::web as session;
use crate::clock::to_rfc3339;
use crate::db::people::{self, Attempt, NewSession, Seen};
use crate::db::tenants;
use crate::domain::sign_in::{self, PersonRole};
use crate::error::{Error, Result};
use crate::oidc::{Provider, SignInError};
use crate::state::{AppState, random_secret};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(login)
        .service(callback)
        .service(current)
        .service(logout);
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// The dashboard address to come back to (`/ui/…`); anything else leads to `/ui/`.
    pub return_to: Option<String>,
}

fn provider(state: &AppState) -> Result<&Provider> {
    state.oidc.as_deref().ok_or_else(|| {
        Error::not_found(
            "sign-in by identity provider (it is not configured here: \
             HEADCOUNT_OIDC_ISSUER, HEADCOUNT_OIDC_CLIENT_ID, HEADCOUNT_OIDC_CLIENT_SECRET, \
             HEADCOUNT_PUBLIC_URL)",
        )
    })
}

/// Start signing in: a redirect to the identity provider, with `state`, `nonce` and
/// the PKCE challenge (S256) of this sign-in.
#[utoipa::path(tag = "sign-in", params(LoginQuery),
    responses((status = 302, description = "to the identity provider"),
        (status = 404, description = "OpenID Connect is not configured")))]
#[get("/auth/login")]
pub async fn login(state: web::Data<AppState>, q: web::Query<LoginQuery>) -> HttpResponse {
    match start(&state, q.return_to.as_deref()).await {
        Ok(to) => HttpResponse::Found()
            .insert_header((header::LOCATION, to))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(page) => page,
    }
}

async fn start(state: &AppState, return_to: Option<&str>) -> Result<String, HttpResponse> {
    let p = provider(state).map_err(|e| page(StatusCode::NOT_FOUND, &e.to_string()))?;
    let attempt = Attempt {
        state: random_secret(32),
        nonce: random_secret(32),
        pkce_verifier: random_secret(48),
        return_to: sign_in::return_to(return_to),
        created_at: state.now(),
    };
    let challenge = sign_in::pkce_challenge(&attempt.pkce_verifier);
    let to = p
        .authorization_url(&attempt.state, &attempt.nonce, &challenge)
        .await
        .map_err(|e| refused(&e))?;
    state
        .db
        .run(move |c| people::start_attempt(c, &attempt))
        .await
        .map_err(|e| page(StatusCode::SERVICE_UNAVAILABLE, &Error::from(e).to_string()))?;
    Ok(to)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the identity provider when it did not sign the person in.
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Finish signing in (the identity provider sends the browser here): the code is
/// exchanged with the sign-in's PKCE verifier, the ID token checked (signature,
/// issuer, audience, expiry, nonce), the person's groups mapped to a role, and a
/// session started (an HttpOnly, SameSite cookie). A failure is a page that says why;
/// no session is made.
#[utoipa::path(tag = "sign-in", params(CallbackQuery),
    responses((status = 303, description = "signed in: to the dashboard, with the session cookie"),
        (status = 400, description = "the sign-in was refused (a page)"),
        (status = 403, description = "the person has no role in headcount (a page)")))]
#[get("/auth/callback")]
pub async fn callback(state: web::Data<AppState>, q: web::Query<CallbackQuery>) -> HttpResponse {
    match finish(&state, q.into_inner()).await {
        Ok((cookie, to)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .insert_header((header::SET_COOKIE, session::set_cookie(&state, &cookie)))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(page) => page,
    }
}

async fn finish(state: &AppState, q: CallbackQuery) -> Result<(String, String), HttpResponse> {
    let p = provider(state).map_err(|e| page(StatusCode::NOT_FOUND, &e.to_string()))?;
    let bad = |m: &str| page(StatusCode::BAD_REQUEST, m);
    if let Some(e) = &q.error {
        let more = q.error_description.as_deref().unwrap_or("");
        return Err(bad(&format!(
            "the identity provider did not sign you in: {e} {more}"
        )));
    }
    let (Some(code), Some(st)) = (q.code, q.state) else {
        return Err(bad(
            "this address finishes a sign-in, but it lacks its code or state",
        ));
    };
    let now = state.now();
    let attempt = state
        .db
        .run(move |c| people::take_attempt(c, &st, now))
        .await
        .map_err(|e| page(StatusCode::SERVICE_UNAVAILABLE, &Error::from(e).to_string()))?
        .ok_or_else(|| {
            bad(
                "this sign-in is unknown to headcount: it was finished already, \
                 took longer than 10 minutes, or was not started here",
            )
        })?;
    let id_token = p
        .exchange(&code, &attempt.pkce_verifier)
        .await
        .map_err(|e| refused(&e))?;
    let who = p
        .verify(&id_token, &attempt.nonce, now)
        .await
        .map_err(|e| refused(&e))?;
    let role = role_of(state, p, &who.groups).await?;
    let cookie = random_secret(32);
    let csrf = random_secret(32);
    let issuer = p.settings.issuer.clone();
    let expires_at = now + p.settings.max_age.as_millis() as i64;
    let id_hash = sign_in::session_hash(&cookie);
    state
        .db
        .run(move |c| {
            let seen = Seen {
                issuer: &issuer,
                subject: &who.subject,
                email: who.email.as_deref(),
                name: who.name.as_deref(),
            };
            let new = NewSession {
                id_hash: &id_hash,
                role: &role,
                csrf_token: &csrf,
                id_token: &id_token,
                now,
                expires_at,
            };
            people::sign_in(c, &seen, &new)
        })
        .await
        .map_err(|e| page(StatusCode::SERVICE_UNAVAILABLE, &Error::from(e).to_string()))?;
    Ok((cookie, attempt.return_to))
}

/// The role a person's groups give, for a tenant that exists (a page otherwise).
async fn role_of(
    state: &AppState, p: &Provider, groups: &[String],
) -> Result<PersonRole, HttpResponse> {
    let role = sign_in::role_of(
        groups,
        &p.settings.admin_group,
        &p.settings.tenant_group_prefix,
    )
    .map_err(|m| page(StatusCode::FORBIDDEN, &m))?;
    if let PersonRole::Tenant(t) = &role {
        let slug = t.clone();
        let known = state
            .db
            .run(move |c| tenants::get(c, &Scope::Provider, &slug))
            .await
            .is_ok();
        if !known {
            return Err(page(
                StatusCode::FORBIDDEN,
                &format!("your group names the tenant {t:?}, which headcount does not have"),
            ));
        }
    }
    Ok(role)
}

/// The person signed in with this browser's session cookie.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedInView {
    /// `admin` or `tenant`.
    pub role: String,
    pub tenant: Option<String>,
    /// The identity provider's subject.
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Send it as `X-CSRF-Token` with every change made with the cookie.
    pub csrf_token: String,
    /// When the session ends at the latest (it ends sooner when unused).
    pub expires_at: String,
}

/// Who is signed in with the session cookie. 401 without one; its problem carries
/// `login_url` when sign-in by identity provider is configured.
#[utoipa::path(tag = "sign-in",
    responses((status = 200, body = SignedInView), (status = 401, description = "not signed in")))]
#[get("/auth/session")]
pub async fn current(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let signed = match session::from_request(&req) {
        Some(c) => session::signed(&state, &c.value, false, None).await,
        None => Err(Error::Unauthorized("not signed in".to_owned())),
    };
    match signed {
        Ok(s) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(SignedInView {
                role: s.role.name().to_owned(),
                tenant: s.role.tenant().map(str::to_owned),
                subject: s.person.subject,
                email: s.person.email,
                name: s.person.name,
                csrf_token: s.session.csrf_token,
                expires_at: to_rfc3339(s.session.expires_at),
            }),
        Err(e) => signed_out(&state, &e),
    }
}

/// A 401 or 403 problem; a 401 says where to sign in when that is configured.
fn signed_out(state: &AppState, e: &Error) -> HttpResponse {
    use actix_web::ResponseError as _;
    let mut problem = serde_json::to_value(e.problem()).unwrap_or_default();
    if state.oidc.is_some() && e.status_code() == StatusCode::UNAUTHORIZED {
        problem["login_url"] = "/auth/login".into();
    }
    HttpResponse::build(e.status_code())
        .insert_header((header::CONTENT_TYPE, "application/problem+json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(problem.to_string())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedOut {
    /// Where to send the browser so that the identity provider signs the person out
    /// too, when it offers that.
    pub end_session_url: Option<String>,
}

/// Sign out: the session ends on the server at once (the cookie is refused from then
/// on, 401) and the cookie is removed. Needs the cookie and its `X-CSRF-Token`.
#[utoipa::path(tag = "sign-in",
    responses((status = 200, body = SignedOut), (status = 401, description = "not signed in"),
        (status = 403, description = "the X-CSRF-Token header is missing or wrong")))]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Some(carried) = session::from_request(&req) else {
        return signed_out(&state, &Error::Unauthorized("not signed in".to_owned()));
    };
    let s = match session::signed(&state, &carried.value, true, carried.csrf.as_deref()).await {
        Ok(s) => s,
        Err(e) => return signed_out(&state, &e),
    };
    let (hash, now, actor) = (s.session.id_hash.clone(), state.now(), s.caller.actor());
    if let Err(e) = state
        .db
        .run(move |c| people::end(c, &hash, now, &actor))
        .await
    {
        return signed_out(&state, &e.into());
    }
    let end_session_url = match state.oidc.as_deref() {
        Some(p) => p.end_session_url(&s.session.id_token).await,
        None => None,
    };
    HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, session::set_cookie(&state, "")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SignedOut { end_session_url })
}

/// A sign-in that went wrong, as a page for the person (502 when the identity
/// provider could not be asked).
fn refused(e: &SignInError) -> HttpResponse {
    let status = match e {
        SignInError::Unreachable(_) => StatusCode::BAD_GATEWAY,
        SignInError::Refused(_) | SignInError::BadToken(_) => StatusCode::BAD_REQUEST,
    };
    page(status, &e.to_string())
}

/// A small page that says what happened and offers to sign in again.
fn page(status: StatusCode, message: &str) -> HttpResponse {
    let mut chars = message.chars();
    let sentence: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    let text = escape(&sentence);
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>headcount · sign-in</title></head>\n<body>\
         <h1>You are not signed in</h1>\n<p id=\"reason\">{text}.</p>\n\
         <p><a href=\"/auth/login\">Sign in again</a> · <a href=\"/ui/\">the dashboard</a></p>\
         \n</body></html>\n"
    );
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .body(body)
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}
