//! The identity provider, as headcount talks to it (OpenID Connect, authorization
//! code with PKCE): its discovery document and keys (cached), the code exchanged for
//! tokens, and the ID token checked. Signatures and keys are jsonwebtoken's; every
//! call goes through the provider-side HTTP client and its judging resolver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::config::Oidc;
use crate::domain::sign_in::CLOCK_SKEW_SECONDS;

/// How long the discovery document and keys are trusted before they are read again
/// (keys are also read again at once when a token names one not seen).
const CACHE: Duration = Duration::from_secs(3600);

/// Why a sign-in did not finish, in words for the person who tried.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The identity provider could not be reached or answered nonsense.
    #[error("the identity provider could not be asked: {0}")]
    Unreachable(String),
    /// The identity provider refused (a code used twice, a wrong PKCE verifier, …).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The ID token does not hold.
    #[error("the identity provider's answer was not accepted: {0}")]
    BadToken(String),
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ProviderError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// What an accepted ID token says of the person.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// The identity provider and what headcount knows of it.
pub struct Provider {
    pub settings: Oidc,
    http: reqwest::Client,
    discovery: RwLock<Option<(Instant, Arc<Discovery>)>>,
    keys: RwLock<Option<(Instant, Arc<JwkSet>)>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// Where the identity provider sends a person back: this headcount's callback.
pub fn redirect_uri(settings: &Oidc) -> String {
    format!("{}/auth/callback", settings.public_url)
}

impl Provider {
    pub fn new(settings: Oidc, http: reqwest::Client) -> Self {
        Self {
            settings,
            http,
            discovery: RwLock::new(None),
            keys: RwLock::new(None),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, SignInError> {
        let answer = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| SignInError::Unreachable(format!("{url}: {e}")))?;
        if !answer.status().is_success() {
            return Err(SignInError::Unreachable(format!(
                "{url} answered {}",
                answer.status()
            )));
        }
        answer
            .json()
            .await
            .map_err(|e| SignInError::Unreachable(format!("{url}: {e}")))
    }

    async fn discovery(&self) -> Result<Arc<Discovery>, SignInError> {
        if let Some((at, d)) = &*self.discovery.read().await
            && at.elapsed() < CACHE
        {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer != self.settings.issuer {
            return Err(SignInError::Unreachable(format!(
                "the discovery document names the issuer {:?}, not {:?} \
                 (HEADCOUNT_OIDC_ISSUER must be the issuer exactly)",
                d.issuer, self.settings.issuer
            )));
        }
        let d = Arc::new(d);
        *self.discovery.write().await = Some((Instant::now(), d.clone()));
        Ok(d)
    }

    /// The provider's keys; read again when `kid` is not among the cached ones.
    async fn keys(&self, kid: Option<&str>) -> Result<Arc<JwkSet>, SignInError> {
        if let Some((at, set)) = &*self.keys.read().await
            && at.elapsed() < CACHE
            && kid.is_none_or(|k| set.find(k).is_some())
        {
            return Ok(set.clone());
        }
        let uri = self.discovery().await?.jwks_uri.clone();
        let set: Arc<JwkSet> = Arc::new(self.get_json(&uri).await?);
        *self.keys.write().await = Some((Instant::now(), set.clone()));
        Ok(set)
    }

    /// Where to send a person to sign in.
    pub async fn authorization_url(
        &self, state: &str, nonce: &str, challenge: &str,
    ) -> Result<String, SignInError> {
        let d = self.discovery().await?;
        let mut url = url::Url::parse(&d.authorization_endpoint)
            .map_err(|e| SignInError::Unreachable(format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &redirect_uri(&self.settings))
            .append_pair("scope", "openid email profile")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// The code of a callback exchanged for the ID token, proving the sign-in's start
    /// with its PKCE verifier.
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<String, SignInError> {
        let d = self.discovery().await?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &redirect_uri(&self.settings))
            .append_pair("code_verifier", verifier)
            .finish();
        let answer = self
            .http
            .post(&d.token_endpoint)
            .basic_auth(
                form_encoded(&self.settings.client_id),
                Some(form_encoded(self.settings.client_secret.expose())),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SignInError::Unreachable(format!("token endpoint: {e}")))?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| SignInError::Unreachable(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            let why = serde_json::from_str::<ProviderError>(&text).map_or_else(
                |_| format!("the token endpoint answered {status}"),
                |e| match e.error_description {
                    Some(d) => format!("{} ({d})", e.error),
                    None => e.error,
                },
            );
            return Err(SignInError::Refused(why));
        }
        serde_json::from_str::<TokenAnswer>(&text)
            .ok()
            .and_then(|t| t.id_token)
            .ok_or_else(|| SignInError::Unreachable("the token answer has no id_token".into()))
    }

    /// Checks an ID token: its signature by one of the provider's keys, its issuer,
    /// its audience (this client), its expiry by headcount's clock (`now_ms`) and the
    /// sign-in's `nonce`; then what it says of the person.
    pub async fn verify(
        &self, id_token: &str, nonce: &str, now_ms: i64,
    ) -> Result<Identity, SignInError> {
        let bad = |m: &str| SignInError::BadToken(m.to_owned());
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| bad("not a JWT"))?;
        // Asymmetric algorithms only: the client secret is not a signing key here.
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(bad("its signature algorithm is not accepted"));
        }
        let keys = self.keys(header.kid.as_deref()).await?;
        let jwk = match header.kid.as_deref() {
            Some(kid) => keys.find(kid),
            None => keys.keys.first(),
        }
        .ok_or_else(|| bad("it is signed by a key the identity provider does not publish"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("the provider's key is unusable"))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[&self.settings.client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is judged below by headcount's clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        let claims = jsonwebtoken::decode::<IdClaims>(id_token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                bad(match e.kind() {
                    K::InvalidIssuer => "it comes from an unknown issuer",
                    K::InvalidAudience => "it is meant for another application (audience)",
                    K::InvalidSignature => "its signature does not hold",
                    K::MissingRequiredClaim(_) => "a required claim is missing",
                    _ => "it could not be read",
                })
            })?
            .claims;
        if now_ms / 1000 > claims.exp + CLOCK_SKEW_SECONDS {
            return Err(bad("it has expired"));
        }
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(bad("it does not belong to this sign-in (nonce)"));
        }
        let groups = match claims.other.get(&self.settings.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            subject: claims.sub,
            email: claims.email,
            name: claims.name.or(claims.preferred_username),
            groups,
        })
    }

    /// Where to send a person signing out so that the provider ends its session too,
    /// when it offers that (RP-initiated logout).
    pub async fn end_session_url(&self, id_token: &str) -> Option<String> {
        let d = self.discovery().await.ok()?;
        let mut url = url::Url::parse(d.end_session_endpoint.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &self.settings.client_id)
            .append_pair(
                "post_logout_redirect_uri",
                &format!("{}/ui/", self.settings.public_url),
            );
        Some(url.into())
    }
}

/// Client credentials in HTTP Basic are form-encoded first (RFC 6749, 2.3.1).
fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
