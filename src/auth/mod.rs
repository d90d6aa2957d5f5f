//! Bearer JWTs (HS256) and the extractor that says who is calling.
//!
//! Every request checks the signature, the algorithm, `iss`, `exp` (with 30 s of
//! leeway), `nbf` when present, and revocation. Revocations are cached for at most
//! one second, so a revoked token stops working on every process within a second
//! without a database query per request.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::config::Secret;
use crate::db::Db;
pub use crate::domain::scope::{Scope, SubjectKey};
use crate::error::{Error, Result};

pub mod extract;
pub mod web;

pub const ISSUER: &str = "headcount";
pub const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Tenant,
    Site,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
}

/// The signing key; never printed.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

impl Keys {
    pub fn from_secret(secret: &Secret) -> Self {
        let bytes = secret.expose().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        }
    }

    pub fn mint(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot sign token: {e}")))
    }

    pub fn verify(&self, token: &str) -> Result<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss"]);
        v.leeway = LEEWAY_SECONDS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|e| Error::Unauthorized(format!("invalid token: {}", describe(&e))))?;
        let c = data.claims;
        match c.role {
            Role::Tenant if c.tenant.is_none() => {
                return Err(Error::Unauthorized(
                    "invalid token: tenant claim missing".into(),
                ));
            }
            Role::Site if c.site.is_none() => {
                return Err(Error::Unauthorized(
                    "invalid token: site claim missing".into(),
                ));
            }
            _ => {}
        }
        Ok(c)
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not yet valid",
        K::InvalidIssuer => "wrong issuer",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "algorithm not allowed",
        K::MissingRequiredClaim(_) => "a required claim is missing",
        _ => "malformed",
    }
}

/// Who is calling, after the token has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `person`: signed in through the identity provider (with the session cookie),
    /// named so in the audit trail; `None` for a bearer token.
    Admin {
        jti: String,
        person: Option<String>,
    },
    Tenant {
        tenant: String,
        jti: String,
        person: Option<String>,
    },
    Site {
        site: String,
        jti: String,
    },
}

impl Caller {
    pub fn from_claims(c: Claims) -> Self {
        match c.role {
            Role::Admin => Self::Admin {
                jti: c.jti,
                person: None,
            },
            Role::Tenant => Self::Tenant {
                tenant: c.tenant.unwrap_or_default(),
                jti: c.jti,
                person: None,
            },
            Role::Site => Self::Site {
                site: c.site.unwrap_or_default(),
                jti: c.jti,
            },
        }
    }

    /// A short label for the audit trail: the token's id, or the person signed in.
    pub fn actor(&self) -> String {
        match self {
            Self::Admin {
                person: Some(p), ..
            }
            | Self::Tenant {
                person: Some(p), ..
            } => p.clone(),
            Self::Admin { jti, .. } => format!("admin:{jti}"),
            Self::Tenant { tenant, jti, .. } => format!("tenant:{tenant}:{jti}"),
            Self::Site { site, jti } => format!("site:{site}:{jti}"),
        }
    }

    pub fn require_admin(&self) -> Result<()> {
        match self {
            Self::Admin { .. } => Ok(()),
            _ => Err(Error::Forbidden(
                "this action is reserved to the provider's operators".to_owned(),
            )),
        }
    }

    /// The scope for reading tenant data: admins see every tenant, a tenant itself.
    /// Site tokens only reach their own site's ingestion, admission and config.
    pub fn scope(&self) -> Result<Scope> {
        match self {
            Self::Admin { .. } => Ok(Scope::Provider),
            Self::Tenant { tenant, .. } => Ok(Scope::Tenant(tenant.clone())),
            Self::Site { .. } => Err(Error::Forbidden(
                "a site token reaches only its site's ingestion, admission and config".to_owned(),
            )),
        }
    }

    /// For the site agent's endpoints: only the site's own token.
    pub fn require_site(&self, slug: &str) -> Result<()> {
        match self {
            Self::Site { site, .. } if site == slug => Ok(()),
            Self::Site { .. } => Err(Error::not_found(format!("site {slug:?}"))),
            _ => Err(Error::Forbidden(
                "this endpoint takes the site's own token".to_owned(),
            )),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin { .. })
    }

    pub fn jti(&self) -> &str {
        match self {
            Self::Admin { jti, .. } | Self::Tenant { jti, .. } | Self::Site { jti, .. } => jti,
        }
    }
}

/// Revoked token ids, reloaded at most once a second.
///
/// Requests read the current set under a short synchronous read lock; only one of
/// them reloads a stale set while the others go on with the previous one, so the
/// reload (a database round trip) never queues every request of the process behind
/// it, and no request holds a lock across an await.
#[derive(Debug)]
pub struct Revocations {
    current: std::sync::RwLock<(Option<Instant>, Arc<HashSet<String>>)>,
    reloading: tokio::sync::Mutex<()>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            current: std::sync::RwLock::new((None, Arc::new(HashSet::new()))),
            reloading: tokio::sync::Mutex::new(()),
        }
    }
}

/// How old the revocation set may get before a request reloads it.
const REVOCATIONS_FRESH: Duration = Duration::from_millis(900);

impl Revocations {
    pub async fn is_revoked(&self, db: &Db, now: Millis, jti: &str) -> Result<bool> {
        let (loaded_at, set) = self.snapshot();
        if loaded_at.is_some_and(|at| at.elapsed() < REVOCATIONS_FRESH) {
            return Ok(set.contains(jti));
        }
        // Stale: one request reloads. While it does, others use the previous set,
        // unless there has never been one (then they wait for the first load).
        let guard = match self.reloading.try_lock() {
            Ok(g) => g,
            Err(_) if loaded_at.is_some() => return Ok(set.contains(jti)),
            Err(_) => self.reloading.lock().await,
        };
        let (loaded_at, set) = self.snapshot();
        if loaded_at.is_some_and(|at| at.elapsed() < REVOCATIONS_FRESH) {
            return Ok(set.contains(jti));
        }
        let fresh: HashSet<String> = db
            .run(move |c| crate::db::tokens::revoked_since(c, now))
            .await?
            .into_iter()
            .collect();
        let revoked = fresh.contains(jti);
        if let Ok(mut w) = self.current.write() {
            *w = (Some(Instant::now()), Arc::new(fresh));
        }
        drop(guard);
        drop(set);
        Ok(revoked)
    }

    fn snapshot(&self) -> (Option<Instant>, Arc<HashSet<String>>) {
        match self.current.read() {
            Ok(r) => (r.0, r.1.clone()),
            Err(_) => (None, Arc::new(HashSet::new())),
        }
    }

    /// Forgets the cache so that a revocation made here applies at once.
    pub async fn invalidate(&self) {
        if let Ok(mut w) = self.current.write() {
            w.0 = None;
        }
    }
}

/// Tokens whose signature and claims have been checked, so that an agent sending
/// thousands of requests with one token pays for the HMAC and the JSON parse once.
/// Expiry and `nbf` are checked again on every use; revocation is checked separately.
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    map: std::sync::RwLock<std::collections::HashMap<String, Arc<Claims>>>,
}

/// Distinct tokens kept; beyond this the cache starts over (tokens are few in
/// practice: one per site agent, a few per operator).
const VERIFIED_TOKENS_MAX: usize = 10_000;

impl VerifiedTokens {
    pub fn verify(&self, keys: &Keys, token: &str) -> Result<Arc<Claims>> {
        let hit = self.map.read().ok().and_then(|m| m.get(token).cloned());
        if let Some(c) = hit {
            let now = jsonwebtoken::get_current_timestamp() as i64;
            let leeway = LEEWAY_SECONDS as i64;
            if c.exp + leeway < now {
                return Err(Error::Unauthorized("invalid token: expired".to_owned()));
            }
            if c.nbf.is_some_and(|nbf| nbf - leeway > now) {
                return Err(Error::Unauthorized(
                    "invalid token: not yet valid".to_owned(),
                ));
            }
            return Ok(c);
        }
        let claims = Arc::new(keys.verify(token)?);
        if let Ok(mut m) = self.map.write() {
            if m.len() >= VERIFIED_TOKENS_MAX {
                m.clear();
            }
            m.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }
}

/// A new random subject key for a tenant or site row.
pub fn new_subject_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether a token still names the row that now holds its slug, and not a later one
/// created with the same slug. Tokens minted here carry the row's key in `sub`
/// (`site:<slug>:<key>`); a token without one (minted elsewhere with the signing
/// key, or before keys were kept) fits only rows created no later than its `iat`.
pub fn token_fits(claims: &Claims, subject: &SubjectKey) -> bool {
    let key = claims.sub.splitn(3, ':').nth(2);
    match key {
        Some(k) => subject.token_key.as_deref().is_none_or(|own| own == k),
        None => subject.created_at.div_euclid(1000) <= claims.iat,
    }
}

/// Tenants' subject keys by slug, kept for a second like revocations, so that a
/// tenant token's every request does not cost a query. Only tenants that exist
/// are kept, and a token that does not fit the kept one reads it again.
#[derive(Debug, Default)]
pub struct TenantKeys {
    map: std::sync::RwLock<std::collections::HashMap<String, (Instant, SubjectKey)>>,
}

impl TenantKeys {
    pub(crate) fn cached(&self, slug: &str) -> Option<SubjectKey> {
        let m = self.map.read().ok()?;
        let (at, key) = m.get(slug)?;
        (at.elapsed() < REVOCATIONS_FRESH).then(|| key.clone())
    }

    pub(crate) async fn load(&self, db: &Db, slug: &str) -> Result<Option<SubjectKey>> {
        let s = slug.to_owned();
        let key = db
            .run(move |c| crate::db::tenants::subject_key(c, &s))
            .await?;
        if let Ok(mut m) = self.map.write() {
            match &key {
                Some(k) => {
                    if m.len() >= VERIFIED_TOKENS_MAX {
                        m.clear();
                    }
                    m.insert(slug.to_owned(), (Instant::now(), k.clone()));
                }
                None => {
                    m.remove(slug);
                }
            }
        }
        Ok(key)
    }

    /// Forgets a tenant this process deleted, so that its tokens stop here at once.
    pub fn forget(&self, slug: &str) {
        if let Ok(mut m) = self.map.write() {
            m.remove(slug);
        }
    }
}

/// Makes a token's claims; `subject_key` is the named tenant's or site's key.
pub fn claims(
    role: Role, tenant: Option<String>, site: Option<String>, subject_key: Option<&str>,
    now: Millis, ttl_seconds: i64,
) -> Claims {
    let jti = uuid::Uuid::new_v4().simple().to_string();
    let iat = now / 1000;
    let keyed = |base: String| match subject_key {
        Some(k) => format!("{base}:{k}"),
        None => base,
    };
    Claims {
        iss: ISSUER.to_owned(),
        sub: match (&role, &tenant, &site) {
            (Role::Site, _, Some(s)) => keyed(format!("site:{s}")),
            (Role::Tenant, Some(t), _) => keyed(format!("tenant:{t}")),
            _ => "admin".to_owned(),
        },
        role,
        tenant,
        site,
        iat,
        exp: iat + ttl_seconds,
        nbf: None,
        jti,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_secret(&Secret::new("0123456789abcdef0123456789abcdef"))
    }

    #[test]
    fn a_minted_token_verifies() {
        let now = chrono::Utc::now().timestamp_millis();
        let c = claims(Role::Tenant, Some("acme".into()), None, None, now, 600);
        let t = keys().mint(&c).unwrap();
        let back = keys().verify(&t).unwrap();
        assert_eq!(back.tenant.as_deref(), Some("acme"));
        assert_eq!(back.role, Role::Tenant);
    }

    #[test]
    fn other_keys_and_expiry_are_refused() {
        let now = chrono::Utc::now().timestamp_millis();
        let t = keys()
            .mint(&claims(Role::Admin, None, None, None, now, 600))
            .unwrap();
        let other = Keys::from_secret(&Secret::new("another-key-another-key-another-key"));
        assert!(matches!(other.verify(&t), Err(Error::Unauthorized(_))));
        let old = keys()
            .mint(&claims(Role::Admin, None, None, None, now - 3_600_000, 60))
            .unwrap();
        assert!(matches!(keys().verify(&old), Err(Error::Unauthorized(_))));
    }

    #[test]
    fn the_verified_token_cache_still_checks_signatures_and_expiry() {
        let cache = VerifiedTokens::default();
        let now = chrono::Utc::now().timestamp_millis();
        let t = keys()
            .mint(&claims(Role::Site, None, Some("s".into()), None, now, 600))
            .unwrap();
        let a = cache.verify(&keys(), &t).unwrap();
        let b = cache.verify(&keys(), &t).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second use is a cache hit");
        let forged = format!("{}x", &t[..t.len() - 1]);
        assert!(cache.verify(&keys(), &forged).is_err());
        // An entry whose expiry has passed is refused although it is cached.
        let old = claims(Role::Admin, None, None, None, now - 3_600_000, 60);
        let old_token = keys().mint(&old).unwrap();
        cache
            .map
            .write()
            .unwrap()
            .insert(old_token.clone(), Arc::new(old));
        assert!(matches!(
            cache.verify(&keys(), &old_token),
            Err(Error::Unauthorized(_))
        ));
    }

    #[test]
    fn a_token_fits_only_the_row_it_was_minted_for() {
        let now = 1_800_000_000_123;
        let row = SubjectKey {
            created_at: now - 5_000,
            token_key: Some("k1".into()),
        };
        let keyed = claims(Role::Site, None, Some("s".into()), Some("k1"), now, 600);
        assert!(token_fits(&keyed, &row));
        let recreated = SubjectKey {
            created_at: now,
            token_key: Some("k2".into()),
        };
        assert!(!token_fits(&keyed, &recreated), "same slug, new row");
        // Without a key in `sub`: judged by time, to the second.
        let plain = claims(Role::Tenant, Some("t".into()), None, None, now, 600);
        assert!(token_fits(&plain, &row));
        let later = SubjectKey {
            created_at: now + 1_000,
            token_key: Some("k3".into()),
        };
        assert!(!token_fits(&plain, &later));
        // Rows from before keys were kept accept keyed tokens of their slug.
        let legacy = SubjectKey {
            created_at: now - 5_000,
            token_key: None,
        };
        assert!(token_fits(&keyed, &legacy));
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = chrono::Utc::now().timestamp();
        let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = b64.encode(format!(
            r#"{{"iss":"headcount","sub":"admin","role":"admin","iat":{now},"exp":{},"jti":"x"}}"#,
            now + 600
        ));
        assert!(keys().verify(&format!("{header}.{body}.")).is_err());
    }
}
