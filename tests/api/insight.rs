//! Insight: who was on at an instant, where billing's peak was, plan advice from the
//! recorded refusals, and the forecast alert.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn;

fn sessions_of(body: &Value) -> Vec<(String, String)> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|r| {
            (
                r["session"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn sessions_at_an_instant_with_their_state_then() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 10, "idle_timeout_seconds": 3600}),
        )
        .await;
    let h = 3600;
    let r = app
        .events(
            "www",
            &t,
            json!([
                // Idle since 4 h ago, killed now: dangling 2 h ago.
                {"type": "session.started", "session": "a", "at": app.at(-5 * h)},
                {"type": "session.activity", "session": "a", "at": app.at(-4 * h)},
                // Started half an hour before the instant: live then.
                {"type": "session.started", "session": "b", "at": app.at(-5 * h / 2)},
                // Started after the instant.
                {"type": "session.started", "session": "c", "at": app.at(-3 * h / 2)},
                // Ended before it.
                {"type": "session.started", "session": "d", "at": app.at(-6 * h)},
                {"type": "session.ended", "session": "d", "at": app.at(-3 * h)},
                // Expired before it.
                {"type": "session.started", "session": "e", "at": app.at(-3 * h), "expires_at": app.at(-5 * h / 2)},
                // Started at the very instant.
                {"type": "session.started", "session": "f", "at": app.at(-2 * h)},
                // Ended (logged out) after it; its last activity is the logout.
                {"type": "session.started", "session": "g", "at": app.at(-5 * h)},
                {"type": "session.ended", "session": "g", "at": app.at(-h)},
            ]),
        )
        .await;
    assert_eq!(r.body["accepted"], 10, "{}", r.text);
    let r = app.delete("/v1/sites/www/sessions/a", &app.admin).await;
    assert!(r.status.is_success(), "{}", r.text);
    let at = app.at(-2 * h);
    let q = |extra: &str| format!("/v1/sites/www/sessions?at={}{extra}", urlencode(&at));
    let r = app.get(&q(""), &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        sessions_of(&r.body),
        pairs(&[
            ("g", "live"),
            ("f", "live"),
            ("b", "live"),
            ("a", "dangling")
        ])
    );
    let a = &r.body["items"][3];
    assert_eq!(a["idle_seconds"], 2 * h);
    assert_eq!(a["end_reason"], "killed", "the row's stored end is shown");
    let r = app.get(&q("&state=dangling"), &app.admin).await;
    assert_eq!(sessions_of(&r.body), pairs(&[("a", "dangling")]));
    let r = app.get(&q("&state=live&limit=2"), &app.admin).await;
    assert_eq!(sessions_of(&r.body), pairs(&[("g", "live"), ("f", "live")]));
    let cursor = r.body["next_cursor"].as_str().unwrap().to_owned();
    let r = app
        .get(
            &q(&format!("&state=live&limit=2&cursor={cursor}")),
            &app.admin,
        )
        .await;
    assert_eq!(sessions_of(&r.body), pairs(&[("b", "live")]));
    assert!(r.body["next_cursor"].is_null());
    let r = app.get(&q("&state=ended,expired"), &app.admin).await;
    assert_eq!(
        sessions_of(&r.body),
        pairs(&[]),
        "nothing active is ended then"
    );
    // Now, without `at`: only b, c and f are still active.
    let r = app.get("/v1/sites/www/sessions", &app.admin).await;
    assert_eq!(sessions_of(&r.body).len(), 3, "{}", r.text);

    let r = app
        .get("/v1/sites/www/sessions?at=yesterday", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["field"], "at");
    app.create_tenant("other").await;
    let other = app.token("tenant", Some("other"), None).await;
    let r = app.get(&q(""), &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let own = app.token("tenant", Some("www-tenant"), None).await;
    let r = app.get(&q(""), &own).await;
    assert_eq!(sessions_of(&r.body).len(), 4);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
