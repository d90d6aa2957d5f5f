//! Answers that show a secret or a token once (a new site's or tenant's signing
//! secret, a rotated one, a minted token). A write sent with an `Idempotency-Key` has
//! its answer kept in the database for 24 h to be replayed; what is kept, and what a
//! replay answers, is the same answer without the secret, saying in `withheld` how to
//! get a new one. So no secret or token rests in the database in clear, and nothing
//! needs a key to encrypt stored answers.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// In a replayed answer (`Idempotent-Replayed: true`), in place of the secret or
/// token that only the first answer showed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Withheld {
    /// The field the first answer had and this one leaves out.
    pub field: &'static str,
    /// The request that gets a new one.
    #[schema(example = "POST /v1/sites/shop/webhook-secret")]
    pub renew: String,
    /// What to do, in words.
    pub detail: String,
}

/// What the idempotency middleware keeps of a response, and replays, instead of the
/// body sent: set by [`shown_once`].
#[derive(Debug, Clone)]
pub struct ReplayBody(pub web::Bytes);

/// An answer that shows a secret or token once.
pub trait ShownOnce: Serialize {
    /// Takes the secret out and puts `withheld` in its place; false when the answer
    /// holds none (a `v1a` site's answer has only its public key).
    fn withhold(&mut self, withheld: Withheld) -> bool;
}

/// Answers `body` with `status`; a replay of the request's `Idempotency-Key` answers
/// it without its secret, with `withheld` instead.
pub fn shown_once(
    status: StatusCode, mut body: impl ShownOnce, withheld: Withheld,
) -> Result<HttpResponse> {
    let mut res = HttpResponse::build(status).json(&body);
    if body.withhold(withheld) {
        let replay = serde_json::to_vec(&body).map_err(|e| Error::Internal(e.into()))?;
        res.extensions_mut()
            .insert(ReplayBody(web::Bytes::from(replay)));
    }
    Ok(res)
}

/// Takes `secret` out of an answer, leaving `withheld` in its place; false when there
/// was none. What each [`ShownOnce`] does with its own fields.
pub fn take_secret(
    secret: &mut Option<String>, slot: &mut Option<Withheld>, withheld: Withheld,
) -> bool {
    let had = secret.take().is_some();
    if had {
        *slot = Some(withheld);
    }
    had
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Minted {
        id: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        withheld: Option<Withheld>,
    }

    impl ShownOnce for Minted {
        fn withhold(&mut self, withheld: Withheld) -> bool {
            take_secret(&mut self.token, &mut self.withheld, withheld)
        }
    }

    fn how() -> Withheld {
        Withheld {
            field: "token",
            renew: "POST /v1/tokens".to_owned(),
            detail: "mint another".to_owned(),
        }
    }

    fn replay_of(res: &HttpResponse) -> Option<serde_json::Value> {
        let r = res.extensions().get::<ReplayBody>().cloned()?;
        Some(serde_json::from_slice(&r.0).unwrap())
    }

    #[test]
    fn the_replay_holds_no_secret_and_says_how_to_get_one() {
        let body = Minted {
            id: "j1",
            token: Some("secret-token".to_owned()),
            withheld: None,
        };
        let res = shown_once(StatusCode::CREATED, body, how()).unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let replay = replay_of(&res).unwrap();
        assert_eq!(
            replay,
            serde_json::json!({"id": "j1", "withheld": {"field": "token",
                "renew": "POST /v1/tokens", "detail": "mint another"}})
        );
    }

    #[test]
    fn an_answer_without_a_secret_is_kept_as_it_is() {
        let body = Minted {
            id: "j1",
            token: None,
            withheld: None,
        };
        let res = shown_once(StatusCode::OK, body, how()).unwrap();
        assert!(replay_of(&res).is_none());
    }
}
