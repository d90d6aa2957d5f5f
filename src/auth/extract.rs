//! The [`Caller`] extractor: a request's bearer token checked for signature, claims,
//! revocation and subject, then counted against the token's rate limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::{Caller, Claims, token_fits};
use crate::domain::scope::SubjectKey;
use crate::error::{Error, Result};
use crate::state::AppState;

fn bearer(req: &HttpRequest) -> Result<String> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| Error::Unauthorized("missing Authorization: Bearer token".to_owned()))?;
    let value = header
        .to_str()
        .map_err(|_| Error::Unauthorized("malformed Authorization header".to_owned()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| Error::Unauthorized("expected Authorization: Bearer <token>".to_owned()))?;
    Ok(token.trim().to_owned())
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        // A bearer token wins; without one, a person's session cookie.
        let cookie = match req.headers().get(actix_web::http::header::AUTHORIZATION) {
            None => super::web::from_request(req),
            Some(_) => None,
        };
        let token = bearer(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| Error::Internal(anyhow::anyhow!("no state")))?;
            let caller = match cookie {
                Some(c) => {
                    super::web::signed(&state, &c.value, c.write, c.csrf.as_deref())
                        .await?
                        .caller
                }
                None => authenticate(&state, &token?).await?.0,
            };
            state.rate_limit(&caller)?;
            Ok(caller)
        })
    }
}

/// The request's bearer token, checked as the [`Caller`] extractor checks it (but
/// not counted against the rate limit): signature, claims, revocation, subject.
pub async fn request_claims(state: &AppState, req: &HttpRequest) -> Result<Arc<Claims>> {
    let token = bearer(req)?;
    Ok(authenticate(state, &token).await?.1)
}

async fn authenticate(state: &AppState, token: &str) -> Result<(Caller, Arc<Claims>)> {
    let claims = state.verified_tokens.verify(&state.keys, token)?;
    let now = state.clock.now_ms();
    if state
        .revocations
        .is_revoked(&state.db, now, &claims.jti)
        .await?
    {
        return Err(Error::Unauthorized("invalid token: revoked".to_owned()));
    }
    let caller = Caller::from_claims(Claims::clone(&claims));
    check_subject(state, &caller, &claims).await?;
    Ok((caller, claims))
}

/// A tenant or site token dies with its subject: 401 once the row is gone or
/// replaced by a new one of the same slug. A cached row that does not fit is read
/// again before the token is refused, so a slug created again is seen at once.
async fn check_subject(state: &AppState, caller: &Caller, claims: &Claims) -> Result<()> {
    let fits = |s: &Option<SubjectKey>| s.as_ref().is_some_and(|s| token_fits(claims, s));
    let fresh = match caller {
        Caller::Admin { .. } => return Ok(()),
        Caller::Site { site, .. } => {
            let cached = state.agent_sites().get(site).map(|f| site_key(&f));
            if fits(&cached) {
                return Ok(());
            }
            let slug = site.clone();
            match state
                .db
                .run(move |c| crate::db::sites::get_for_agent(c, &slug))
                .await
            {
                Ok(f) => {
                    state.agent_sites().put(&f);
                    Some(site_key(&f))
                }
                Err(crate::db::Error::NotFound(_)) => {
                    state.agent_sites().forget(site);
                    None
                }
                Err(e) => return Err(e.into()),
            }
        }
        Caller::Tenant { tenant, .. } => {
            if fits(&state.tenant_keys.cached(tenant)) {
                return Ok(());
            }
            state.tenant_keys.load(&state.db, tenant).await?
        }
    };
    if fits(&fresh) {
        Ok(())
    } else {
        Err(Error::Unauthorized(
            "invalid token: the tenant or site it names no longer exists".to_owned(),
        ))
    }
}

fn site_key(f: &crate::db::sites::SiteFull) -> SubjectKey {
    SubjectKey {
        created_at: f.site.created_at,
        token_key: f.site.token_key.clone(),
    }
}
