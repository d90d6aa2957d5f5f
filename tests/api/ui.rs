//! The dashboard's files: served from the binary under a strict policy.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};

use crate::helpers::spawn;

#[tokio::test]
async fn the_dashboard_is_html_under_a_strict_policy() {
    let app = spawn().await;
    let r = app.call("GET", "/ui/", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = r.headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["referrer-policy"], "no-referrer");
    assert!(r.text.starts_with("<!doctype html>"));
    assert!(r.text.contains(r#"<script src="app.js" defer></script>"#));
    // Nothing inline: every script and style comes from a file the policy allows.
    assert_eq!(r.text.matches("<script").count(), 1);
    assert!(!r.text.contains("<style") && !r.text.contains("style="));
}

#[tokio::test]
async fn the_dashboard_assets_have_their_types() {
    let app = spawn().await;
    for (path, content_type) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let r = app.call("GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers[CONTENT_TYPE], content_type, "{path}");
        assert!(r.headers.contains_key(CONTENT_SECURITY_POLICY), "{path}");
        assert!(!r.text.is_empty(), "{path}");
    }
    let js = app.call("GET", "/ui/app.js", None, None).await.text;
    assert!(js.contains("sessionStorage") && !js.contains("innerHTML"));
    // `/ui` sends the browser to the folder, where the relative asset links resolve.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(format!("{}/ui", app.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()[LOCATION], "/ui/");
    // Not a file of the dashboard: the API's ordinary 404.
    let r = app.call("GET", "/ui/nope.js", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
