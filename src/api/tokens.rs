//! Tokens: minting and revocation.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, post, web};
use diesel::Connection as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::common::Body;
use super::problems::{BadRequest, NotFound, UnprocessableEntity};
use super::shown_once::{ShownOnce, Withheld, shown_once, take_secret};
use crate::auth::{Caller, Role, Scope};
use crate::clock::to_rfc3339;
use crate::db::{audit, sites, tenants, tokens};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_token).service(revoke_token);
}

/// Longest lifetime of a token: ten years.
const MAX_TTL: i64 = 10 * 365 * 86_400;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub role: Role,
    /// The tenant, for `tenant` tokens.
    pub tenant: Option<String>,
    /// The site, for `site` tokens.
    pub site: Option<String>,
    /// Lifetime in seconds (default: 30 days for admin and tenant tokens, a year for
    /// site tokens; at most ten years).
    #[schema(minimum = 60, maximum = 315360000)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// The bearer token. Shown once: not in a replay of the request's
    /// `Idempotency-Key` (see `withheld`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub jti: String,
    pub expires_at: String,
    /// Only in a replay: the token is not repeated; mint another one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
}

impl ShownOnce for TokenView {
    fn withhold(&mut self, withheld: Withheld) -> bool {
        take_secret(&mut self.token, &mut self.withheld, withheld)
    }
}

/// What a replay says instead of the token `jti`.
fn token_withheld(jti: &str) -> Withheld {
    Withheld {
        field: "token",
        renew: "POST /v1/tokens".to_owned(),
        detail: format!(
            "The token is shown only in the first answer and is not kept for replays. \
             Mint another one (with another Idempotency-Key), and revoke this one with \
             DELETE /v1/tokens/{jti} if it was lost."
        ),
    }
}

/// Mint a token. Admins mint any; a tenant mints site tokens for its own sites.
#[utoipa::path(tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = TokenView), BadRequest, NotFound, UnprocessableEntity))]
#[post("/v1/tokens")]
pub async fn create_token(
    state: web::Data<AppState>, caller: Caller, body: Body,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let (subject, ttl) = body.json::<CreateToken>()?.parse(&scope)?;
    let key = subject.key(&state, &scope).await?;
    let role = subject.role();
    let (tenant, site) = subject.into_names();
    let (token, claims) = state.mint(role, tenant, site, key.as_deref(), ttl)?;
    let now = state.now();
    let actor = caller.actor();
    let jti = claims.jti.clone();
    let role = format!("{role:?}").to_lowercase();
    state
        .db
        .run(move |c| {
            audit::record(
                c,
                now,
                &actor,
                "mint",
                "token",
                &jti,
                &json!({"role": role}),
            )
        })
        .await?;
    let minted = TokenView {
        token: Some(token),
        withheld: None,
        expires_at: to_rfc3339(claims.exp * 1000),
        jti: claims.jti,
    };
    let withheld = token_withheld(&minted.jti);
    shown_once(StatusCode::CREATED, minted, withheld)
}

/// Whom a token is for, with the name its role requires.
enum Subject {
    Admin,
    Tenant(String),
    Site(String),
}

impl CreateToken {
    /// The subject and lifetime asked for, judged without the database: a tenant mints
    /// only site tokens, and each role names exactly what it needs.
    fn parse(self, scope: &Scope) -> Result<(Subject, i64)> {
        if matches!(scope, Scope::Tenant(_)) && self.role != Role::Site {
            return Err(Error::Forbidden(
                "a tenant may mint only site tokens for its own sites".to_owned(),
            ));
        }
        let ttl = self.ttl_seconds.unwrap_or(match self.role {
            Role::Site => 365 * 86_400,
            _ => 30 * 86_400,
        });
        if !(60..=MAX_TTL).contains(&ttl) {
            return Err(Error::invalid_field(
                "ttl_seconds",
                format!("must be between 60 and {MAX_TTL}"),
            ));
        }
        let subject = match (self.role, self.tenant, self.site) {
            (Role::Admin, None, None) => Subject::Admin,
            (Role::Admin, _, _) => {
                return Err(Error::invalid_field(
                    "role",
                    "admin tokens take neither tenant nor site",
                ));
            }
            (Role::Tenant, None, _) => {
                return Err(Error::invalid_field(
                    "tenant",
                    "required for a tenant token",
                ));
            }
            (Role::Tenant, Some(_), Some(_)) => {
                return Err(Error::invalid_field(
                    "site",
                    "not allowed on a tenant token",
                ));
            }
            (Role::Tenant, Some(t), None) => Subject::Tenant(t),
            (Role::Site, _, None) => {
                return Err(Error::invalid_field("site", "required for a site token"));
            }
            (Role::Site, Some(_), Some(_)) => {
                return Err(Error::invalid_field(
                    "tenant",
                    "not allowed on a site token",
                ));
            }
            (Role::Site, None, Some(s)) => Subject::Site(s),
        };
        Ok((subject, ttl))
    }
}

impl Subject {
    fn role(&self) -> Role {
        match self {
            Self::Admin => Role::Admin,
            Self::Tenant(_) => Role::Tenant,
            Self::Site(_) => Role::Site,
        }
    }

    /// The key of the tenant or site row the token names, so that the token dies with
    /// that row. A tenant out of the caller's sight is an invalid field, a site a 404.
    async fn key(&self, state: &AppState, scope: &Scope) -> Result<Option<String>> {
        let scope = scope.clone();
        match self {
            Self::Admin => Ok(None),
            Self::Tenant(t) => {
                let slug = t.clone();
                let found = state
                    .db
                    .run(move |c| tenants::get(c, &scope, &slug))
                    .await
                    .map_err(|_| Error::invalid_field("tenant", format!("no tenant {t:?}")))?;
                Ok(found.token_key)
            }
            Self::Site(s) => {
                let slug = s.clone();
                match state.db.run(move |c| sites::get(c, &scope, &slug)).await {
                    Ok(f) => Ok(f.into_inner().site.token_key),
                    Err(crate::db::Error::NotFound(_)) => {
                        Err(Error::not_found(format!("site {s:?}")))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// The tenant and site the claims name.
    fn into_names(self) -> (Option<String>, Option<String>) {
        match self {
            Self::Admin => (None, None),
            Self::Tenant(t) => (Some(t), None),
            Self::Site(s) => (None, Some(s)),
        }
    }
}

/// Revoke a token by its `jti`; every process refuses it within a second.
#[utoipa::path(tag = "tokens", responses((status = 204, description = "revoked"), NotFound))]
#[delete("/v1/tokens/{jti}")]
pub async fn revoke_token(
    state: web::Data<AppState>, caller: Caller, jti: web::Path<String>,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let jti = jti.into_inner();
    if jti.is_empty() || jti.len() > 128 || !jti.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::not_found("token"));
    }
    let now = state.now();
    let actor = caller.actor();
    // Tokens live at most ten years (plus leeway), so that is how long to remember.
    let until = now + (MAX_TTL + 86_400) * 1000;
    state
        .db
        .run(move |c| {
            c.transaction(|c| {
                tokens::revoke(c, &jti, now, until)?;
                audit::record(c, now, &actor, "revoke", "token", &jti, &json!({}))
            })
        })
        .await?;
    state.revocations.invalidate().await;
    Ok(HttpResponse::NoContent().finish())
}
