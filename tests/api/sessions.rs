use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn;

fn states(body: &Value) -> Vec<(String, String)> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["session"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn login_activity_logout_flow() {
    let app = spawn().await;
    let t = app.site_with("www", json!({"session_limit": 10})).await;
    let r = app
        .events("www", &t, json!([{"type": "session.started", "session": "s1", "at": app.at(-60), "user": "ann", "ip": "10.0.0.1", "user_agent": "Firefox"}]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["accepted"], 1);
    let u = app.usage("www").await;
    assert_eq!(
        (u["active"].as_i64(), u["live"].as_i64()),
        (Some(1), Some(1))
    );
    app.events(
        "www",
        &t,
        json!([{"type": "session.activity", "session": "s1", "at": app.at(-10)}]),
    )
    .await;
    let r = app.get("/v1/sites/www/sessions", &app.admin).await;
    let row = &r.body["items"][0];
    assert_eq!(row["user"], "ann");
    assert_eq!(row["ip"], "10.0.0.1");
    assert_eq!(row["state"], "live");
    assert_eq!(row["idle_seconds"], 10);
    app.events(
        "www",
        &t,
        json!([{"type": "session.ended", "session": "s1", "at": app.at(0)}]),
    )
    .await;
    let u = app.usage("www").await;
    assert_eq!(u["active"], 0);
    let r = app
        .get("/v1/sites/www/sessions?state=ended", &app.admin)
        .await;
    assert_eq!(r.body["items"][0]["end_reason"], "logout");
    // An ended session never reopens.
    app.events(
        "www",
        &t,
        json!([{"type": "session.activity", "session": "s1", "at": app.at(1)}]),
    )
    .await;
    assert_eq!(app.usage("www").await["active"], 0);
}

#[tokio::test]
async fn idle_sessions_turn_dangling_and_expired_ones_stop_counting() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 10, "idle_timeout_seconds": 3600}),
        )
        .await;
    app.events(
        "www",
        &t,
        json!([
            {"type": "session.started", "session": "a", "at": app.at(0), "user": "u1"},
            {"type": "session.started", "session": "b", "at": app.at(0), "user": "u1", "expires_at": app.at(7000)},
            {"type": "session.started", "session": "c", "at": app.at(0), "user": "u2"},
        ]),
    )
    .await;
    app.advance(3000);
    app.events(
        "www",
        &t,
        json!([{"type": "session.activity", "session": "c", "at": app.at(0)}]),
    )
    .await;
    app.advance(600);
    let u = app.usage("www").await;
    assert_eq!(
        (
            u["active"].as_i64(),
            u["live"].as_i64(),
            u["dangling"].as_i64()
        ),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(u["counted"], 3);
    let r = app
        .get("/v1/sites/www/sessions?state=dangling", &app.admin)
        .await;
    let mut s = states(&r.body);
    s.sort();
    assert_eq!(
        s,
        vec![
            ("a".into(), "dangling".into()),
            ("b".into(), "dangling".into())
        ]
    );
    let r = app.get("/v1/sites/www/users", &app.admin).await;
    assert_eq!(r.body["items"][0]["user"], "u1");
    assert_eq!(r.body["items"][0]["dangling"], 2);
    assert_eq!(r.body["items"][1]["live"], 1);
    // b expires at +7000 s.
    app.advance(3500);
    let u = app.usage("www").await;
    assert_eq!(u["active"], 2);
    let r = app
        .get("/v1/sites/www/sessions?state=expired", &app.admin)
        .await;
    assert_eq!(states(&r.body), vec![("b".into(), "expired".into())]);
    let r = app
        .get("/v1/sites/www/sessions?state=bogus", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn dump(app: &crate::helpers::TestApp) -> Value {
    let r = app
        .get("/v1/sites/www/sessions?state=all&limit=500", &app.admin)
        .await;
    let mut items = r.body["items"].as_array().unwrap().clone();
    for i in &mut items {
        i.as_object_mut().unwrap().remove("idle_seconds");
    }
    items.sort_by_key(|i| i["session"].as_str().unwrap().to_owned());
    Value::Array(items)
}

#[tokio::test]
async fn duplicated_and_shuffled_batches_give_identical_state() {
    let events = |app: &crate::helpers::TestApp| {
        let mut v = Vec::new();
        for i in 0..20 {
            let s = format!("s{}", i % 7);
            let kind = match i % 5 {
                0 => "session.started",
                4 => "session.ended",
                _ => "session.activity",
            };
            v.push(json!({"type": kind, "session": s, "at": app.at(-1000 + i * 37), "user": format!("u{}", i % 3)}));
        }
        v
    };
    let a = spawn().await;
    let ta = a.site_with("www", json!({"session_limit": 100})).await;
    let ev = events(&a);
    a.events("www", &ta, Value::Array(ev.clone())).await;
    let first = dump(&a).await;
    // Replaying changes nothing.
    a.events("www", &ta, Value::Array(ev.clone())).await;
    assert_eq!(dump(&a).await, first);

    let b = spawn().await;
    b.clock.set(headcount::clock::to_datetime(
        headcount::clock::Clock::now_ms(&a.clock),
    ));
    let tb = b.site_with("www", json!({"session_limit": 100})).await;
    let mut shuffled = ev.clone();
    shuffled.reverse();
    shuffled.rotate_left(7);
    let mut doubled = shuffled.clone();
    doubled.extend(ev.iter().step_by(3).cloned());
    // Sent as several batches, one event at a time for some.
    for chunk in doubled.chunks(4) {
        b.events("www", &tb, Value::Array(chunk.to_vec())).await;
    }
    assert_eq!(dump(&b).await, first);
}

#[tokio::test]
async fn mixed_batches_apply_the_good_events_and_name_the_bad() {
    let app = spawn().await;
    let t = app.site_with("www", json!({"session_limit": 10})).await;
    let r = app
        .events(
            "www",
            &t,
            json!([
                {"type": "session.started", "session": "ok1", "at": app.at(0)},
                {"type": "session.exploded", "session": "bad1", "at": app.at(0)},
                {"type": "session.started", "session": "bad2", "at": app.at(-40 * 86400)},
                {"type": "session.started", "session": "bad3", "at": app.at(600)},
                {"type": "session.started", "session": "has space", "at": app.at(0)},
                {"type": "session.started", "session": "bad5", "at": app.at(0), "colour": "red"},
                {"type": "session.ended", "session": "bad6", "at": app.at(0), "reason": "bored"},
                {"type": "session.started", "session": "ok2", "at": app.at(-10)},
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["accepted"], 2);
    let idx: Vec<i64> = r.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["index"].as_i64().unwrap())
        .collect();
    assert_eq!(idx, vec![1, 2, 3, 4, 5, 6]);
    assert!(
        r.body["rejected"][5]["error"]
            .as_str()
            .unwrap()
            .contains("reason")
    );
    assert!(
        r.body["rejected"][4]["error"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    assert_eq!(app.usage("www").await["active"], 2);
    // Not a batch at all: 400 and nothing applied.
    let r = app
        .post("/v1/sites/www/events", &t, json!({"events": "nope"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.post("/v1/sites/www/events", &t, json!([1, 2])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Too many events: 413.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"type": "session.started", "session": format!("m{i}"), "at": app.at(0)}))
        .collect();
    let r = app.events("www", &t, Value::Array(many)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.usage("www").await["active"], 2);
}

#[tokio::test]
async fn a_snapshot_ends_what_it_does_not_list() {
    let app = spawn().await;
    let t = app.site_with("www", json!({"session_limit": 10})).await;
    app.events(
        "www",
        &t,
        json!([
            {"type": "session.started", "session": "a", "at": app.at(-100)},
            {"type": "session.started", "session": "b", "at": app.at(-100)},
            {"type": "session.started", "session": "c", "at": app.at(-100)},
        ]),
    )
    .await;
    let r = app
        .put(
            "/v1/sites/www/sessions",
            &t,
            json!({"as_of": app.at(0), "sessions": [
                {"session": "a", "last_activity_at": app.at(-5), "user": "ann"},
                {"session": "d", "started_at": app.at(-50), "last_activity_at": app.at(-1)},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"created": 1, "updated": 1, "ended": 2}));
    let r = app
        .get("/v1/sites/www/sessions?state=ended", &app.admin)
        .await;
    let ended: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["end_reason"].as_str().unwrap())
        .collect();
    assert_eq!(ended, vec!["reconciled", "reconciled"]);
    assert_eq!(app.usage("www").await["active"], 2);
    let r = app
        .put(
            "/v1/sites/www/sessions",
            &t,
            json!({"sessions": [{"session": "", "last_activity_at": app.at(0)}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "sessions[0].session");
}

#[tokio::test]
async fn kills_end_sessions_and_record_their_push() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 10, "idle_timeout_seconds": 600}),
        )
        .await;
    app.events(
        "www",
        &t,
        json!([
            {"type": "session.started", "session": "a", "at": app.at(-3000), "user": "bob"},
            {"type": "session.started", "session": "b", "at": app.at(-3000), "user": "bob"},
            {"type": "session.started", "session": "c", "at": app.at(-2000), "user": "eve"},
            {"type": "session.started", "session": "d", "at": app.at(-10), "user": "bob"},
        ]),
    )
    .await;
    let r = app.delete("/v1/sites/www/sessions/c", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["killed"], 1);
    assert_eq!(
        app.delete("/v1/sites/www/sessions/nope", &app.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let tenant = app.token("tenant", Some("www-tenant"), None).await;
    let r = app
        .post(
            "/v1/sites/www/sessions/kill",
            &tenant,
            json!({"state": "dangling", "user": "bob"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["killed"], 2);
    let u = app.usage("www").await;
    assert_eq!(u["active"], 1);
    let r = app.get("/v1/sites/www/deliveries", &app.admin).await;
    let kills: Vec<&Value> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["type"] == "session.kill")
        .collect();
    assert_eq!(kills.len(), 2, "{}", r.text);
    let mut all: Vec<String> = kills
        .iter()
        .flat_map(|k| {
            k["payload"]["data"]["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
        })
        .collect();
    all.sort();
    assert_eq!(all, vec!["a", "b", "c"]);
    assert_eq!(kills[0]["payload"]["data"]["reason"], "killed");
    let r = app
        .post(
            "/v1/sites/www/sessions/kill",
            &app.admin,
            json!({"state": "ended"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn tenant_usage_is_the_sum_of_its_sites() {
    let app = spawn().await;
    app.create_plan(
        "p",
        json!({"session_limit": 10, "idle_timeout_seconds": 600}),
    )
    .await;
    app.create_plan(
        "q",
        json!({"session_limit": 4, "count_mode": "live", "idle_timeout_seconds": 600}),
    )
    .await;
    app.create_tenant("t").await;
    app.create_tenant("u").await;
    app.create_site("s1", "t", "p", json!({})).await;
    app.create_site("s2", "t", "q", json!({})).await;
    app.create_site("s3", "u", "p", json!({})).await;
    for (site, n, old) in [("s1", 3, 1), ("s2", 2, 1), ("s3", 5, 0)] {
        let tok = app.token("site", None, Some(site)).await;
        let mut ev = Vec::new();
        for i in 0..n {
            let at = if i < old { app.at(-1200) } else { app.at(-5) };
            ev.push(json!({"type": "session.started", "session": format!("{site}-{i}"), "at": at}));
        }
        app.events(site, &tok, Value::Array(ev)).await;
    }
    let r = app.get("/v1/tenants/t/usage", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["active"], 5);
    assert_eq!(b["dangling"], 2);
    assert_eq!(b["live"], 3);
    // s1 counts active (3), s2 counts live (1).
    assert_eq!(b["counted"], 4);
    assert_eq!(b["session_limit"], 14);
    let sites = b["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2);
    let sum: i64 = sites.iter().map(|s| s["active"].as_i64().unwrap()).sum();
    assert_eq!(sum, 5);
    let r = app.get("/v1/usage", &app.admin).await;
    assert_eq!(r.body["active"], 10);
    assert_eq!(r.body["tenants"].as_array().unwrap().len(), 2);
}

/// `session.refused`: a refusal the site made itself counts as a denial (usage,
/// history, billing, alerts), once per event id, and creates no session.
#[tokio::test]
async fn site_refusals_are_recorded_as_denials_once() {
    let app = crate::helpers::spawn().await;
    let token = app
        .site_with("r", serde_json::json!({"session_limit": 1}))
        .await;
    let r = app
        .events(
            "r",
            &token,
            serde_json::json!([
                {"type": "session.started", "session": "a", "at": app.at(0), "user": "u1"},
                {"id": "ref-1", "type": "session.refused", "at": app.at(0), "user": "u2"},
                {"id": "ref-2", "type": "session.refused", "at": app.at(0), "session": "b"},
                {"type": "session.refused", "at": app.at(0), "reason": "logout"},
                {"type": "session.activity", "at": app.at(0)},
            ]),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["accepted"], 3, "{}", r.text);
    let errors: Vec<_> = r.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].1.starts_with("reason:"), "{errors:?}");
    assert!(errors[1].1.starts_with("session:"), "{errors:?}");
    // The same refusal sent again (a retry) does not count twice.
    let again = serde_json::json!([{"id": "ref-1", "type": "session.refused", "at": app.at(0), "user": "u2"}]);
    assert_eq!(
        app.events("r", &token, again).await.status,
        reqwest::StatusCode::OK
    );
    let u = app.usage("r").await;
    assert_eq!(u["denied_last_24h"], 2, "{u}");
    assert_eq!(u["active"], 1, "a refusal creates no session: {u}");
    let period = app.now().format("%Y-%m").to_string();
    let b = app
        .get(
            &format!("/v1/billing/export?period={period}&format=json"),
            &app.admin,
        )
        .await;
    assert_eq!(b.status, reqwest::StatusCode::OK, "{}", b.text);
    let line = b.body["rows"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["site"] == "r"))
        .unwrap_or_else(|| panic!("no billing line for r: {}", b.text));
    assert_eq!(line["denied_admissions"], 2, "{line}");
}

/// A big snapshot is written in parts; the counts and the reconciliation are those of
/// the whole, sent again it changes nothing, and a session active after `as_of`
/// stays open.
#[tokio::test]
async fn a_big_snapshot_in_parts_counts_and_reconciles_as_a_whole() {
    let app = spawn().await;
    let t = app.site_with("big", json!({"session_limit": 100})).await;
    let old: Vec<Value> = (0..7_000)
        .map(|i| json!({"type": "session.started", "session": format!("old{i}"), "at": app.at(-600)}))
        .collect();
    for part in old.chunks(1000) {
        let r = app.events("big", &t, Value::Array(part.to_vec())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // Active after the snapshot's as_of: not the snapshot's to end.
    app.events(
        "big",
        &t,
        json!([{"type": "session.started", "session": "fresh", "at": app.at(0)}]),
    )
    .await;
    // Lists 3,000 of the old ones and 9,000 new ones: 12,000 in three parts.
    let listed: Vec<Value> = (4_000..7_000)
        .map(|i| format!("old{i}"))
        .chain((0..9_000).map(|i| format!("new{i}")))
        .map(|s| json!({"session": s, "last_activity_at": app.at(-60)}))
        .collect();
    let body = json!({"as_of": app.at(-30), "sessions": listed});
    let r = app.put("/v1/sites/big/sessions", &t, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"created": 9000, "updated": 3000, "ended": 4000})
    );
    assert_eq!(app.usage("big").await["active"], 12_001);
    let r = app.put("/v1/sites/big/sessions", &t, body).await;
    assert_eq!(r.body, json!({"created": 0, "updated": 12000, "ended": 0}));
    assert_eq!(app.usage("big").await["active"], 12_001);
}

/// A snapshot's `as_of` ahead of now reconciles as of now: a session whose activity
/// lies after now (events may be up to 5 minutes ahead) is not ended by it.
#[tokio::test]
async fn a_future_as_of_does_not_end_sessions_active_after_now() {
    let app = spawn().await;
    let t = app.site_with("fut", json!({"session_limit": 10})).await;
    let r = app
        .events(
            "fut",
            &t,
            json!([{"type": "session.started", "session": "soon", "at": app.at(60)}]),
        )
        .await;
    assert_eq!(r.body["accepted"], 1, "{}", r.text);
    let r = app
        .put(
            "/v1/sites/fut/sessions",
            &t,
            json!({"as_of": app.at(240), "sessions": [
                {"session": "known", "last_activity_at": app.at(-10)},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["ended"], 0, "{}", r.text);
    assert_eq!(app.usage("fut").await["active"], 2);
}
