use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{is_problem, spawn};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn().await;
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn().await;
    app.call("GET", "/healthz", None, None).await;
    app.call("GET", "/v1/plans", None, None).await;
    let r = app.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.contains(
            "headcount_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{}",
        r.text
    );
    assert!(r.text.contains("route=\"/v1/plans\",status=\"401\""));
    assert!(
        r.text
            .contains("headcount_http_request_duration_seconds_bucket")
    );
}

#[tokio::test]
async fn the_served_spec_is_the_committed_one() {
    let app = spawn().await;
    let r = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let committed =
        std::fs::read_to_string("openapi/openapi.json").expect("openapi/openapi.json is committed");
    assert!(
        committed == r.text,
        "openapi/openapi.json differs from what the code generates; \
         regenerate it with `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn bad_input_is_problem_json_naming_the_field() {
    let app = spawn().await;
    // Malformed JSON.
    let r = app
        .client
        .post(format!("{}/v1/plans", app.url))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Unknown field.
    let r = app
        .post(
            "/v1/plans",
            &app.admin,
            json!({"code": "a", "name": "A", "session_limit": 1, "colour": "red"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(is_problem(&r), "{}", r.text);
    assert_eq!(r.body["errors"][0]["field"], "colour");
    // Wrong type.
    let r = app
        .post(
            "/v1/plans",
            &app.admin,
            json!({"code": "a", "name": "A", "session_limit": "ten"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["field"], "session_limit");
    // Out of range.
    let r = app
        .post(
            "/v1/plans",
            &app.admin,
            json!({"code": "a", "name": "A", "session_limit": 2_000_000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "session_limit");
    // Too large.
    let big = "x".repeat(70 * 1024);
    let r = app
        .post(
            "/v1/plans",
            &app.admin,
            json!({"code": "a", "name": big, "session_limit": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(is_problem(&r));
    // Unknown route.
    let r = app.get("/v1/nothing-here", &app.admin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(is_problem(&r));
    // Nothing was half-applied.
    let r = app.get("/v1/plans", &app.admin).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
}
