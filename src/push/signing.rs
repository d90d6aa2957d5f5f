//! Standard Webhooks signatures over `"{id}.{timestamp}.{body}"`: `v1,<base64
//! HMAC-SHA256>` keyed with the base64-decoded part of a `whsec_` secret, or, for
//! sites that should hold no secret, `v1a,<base64 ed25519 signature>` by a `whsk_`
//! signing key whose public half (`whpk_`) is all the site keeps.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The HMAC key of a `whsec_…` secret.
pub fn key_of(secret: &str) -> Vec<u8> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(b64)
        .unwrap_or_else(|_| b64.as_bytes().to_vec())
}

/// Prefix of an ed25519 signing key (base64 of its 32-byte seed).
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// Prefix of an ed25519 public key (base64 of its 32 bytes).
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// A new `whsk_` signing key and its `whpk_` public key.
pub fn new_v1a_keys() -> (String, String) {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    (
        format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(seed)),
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(key.verifying_key().as_bytes())
        ),
    )
}

fn signing_key(secret: &str) -> Option<ed25519_dalek::SigningKey> {
    let seed: [u8; 32] = STANDARD
        .decode(secret.strip_prefix(SIGNING_KEY_PREFIX)?)
        .ok()?
        .try_into()
        .ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// The `whpk_` public key of a `whsk_` signing key.
pub fn public_key_of(secret: &str) -> Option<String> {
    signing_key(secret).map(|k| {
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(k.verifying_key().as_bytes())
        )
    })
}

/// `v1` or `v1a`, by the kind of secret.
pub fn scheme_of(secret: &str) -> &'static str {
    if secret.starts_with(SIGNING_KEY_PREFIX) {
        "v1a"
    } else {
        "v1"
    }
}

pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    if let Some(key) = signing_key(secret) {
        use ed25519_dalek::Signer as _;
        let mut msg = Vec::with_capacity(msg_id.len() + body.len() + 24);
        msg.extend_from_slice(msg_id.as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(timestamp.to_string().as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(body);
        return format!("v1a,{}", STANDARD.encode(key.sign(&msg).to_bytes()));
    }
    let mac = hmac_over(secret, msg_id, timestamp, body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The HMAC-SHA256 of `"{msg_id}.{timestamp}.{body}"` under a `whsec_` secret.
fn hmac_over(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key_of(secret)).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` header: one signature per secret, space-separated (during
/// a rotation both the new and the previous secret sign).
pub fn signature_header(secrets: &[&str], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a `webhook-signature` header against one secret (constant-time compare).
pub fn verify(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let mac = hmac_over(secret, msg_id, timestamp, body);
    header.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b| STANDARD.decode(b).ok())
            .is_some_and(|bytes| mac.clone().verify_slice(&bytes).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = sign(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
            &format!("v1,bogus {sig}")
        ));
        assert!(!verify(secret, "msg_other", 1614265330, b"{}", &sig));
    }
}
