//! Private targets: a tenant's URLs never reach loopback or link-local addresses, in
//! any spelling and through any host name; with HEADCOUNT_WEBHOOK_DENY_PRIVATE no URL
//! reaches a reserved address.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, spawn_with};
use crate::receiver::Receiver;

/// A host name other than `localhost` that this machine resolves to loopback: its
/// own host name (the test fails loudly where it does not).
async fn loopback_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_owned();
    let addrs: Vec<_> = tokio::net::lookup_host((name.as_str(), 80))
        .await
        .expect("the host name resolves")
        .collect();
    assert!(
        !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()),
        "this test needs a host name that resolves to loopback; {name} resolves to {addrs:?}"
    );
    name
}

async fn deliveries(app: &TestApp, site: &str) -> Vec<Value> {
    app.get(&format!("/v1/sites/{site}/deliveries"), &app.admin)
        .await
        .body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits for the first attempt of the newest config push, and returns its error.
async fn first_error(app: &TestApp, site: &str, version: i64) -> String {
    for _ in 0..400 {
        let items = deliveries(app, site).await;
        if let Some(d) = items.iter().find(|d| {
            d["type"] == "site.config_changed"
                && d["payload"]["data"]["config_version"]
                    .as_i64()
                    .unwrap_or(version)
                    >= version
                && !d["attempts"].as_array().is_none_or(Vec::is_empty)
        }) {
            return d["attempts"][0]["error"].as_str().unwrap_or("").to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no attempt recorded: {:?}", deliveries(app, site).await);
}

#[tokio::test]
async fn a_tenant_cannot_point_pushes_at_loopback_or_link_local() {
    let app = spawn_with(Options::default()).await;
    let receiver = Receiver::start().await;
    let port = url::Url::parse(&receiver.url).unwrap().port().unwrap();
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    app.create_site("s", "t", "p", json!({})).await;
    let tenant = app.token("tenant", Some("t"), None).await;

    for url in [
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::ffff:7f00:1]:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[fe80::1]:{port}/"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://0.0.0.0:{port}/"),
    ] {
        let r = app
            .patch("/v1/sites/s", &tenant, json!({"webhook_url": url}))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            r.text
        );
        assert_eq!(r.body["errors"][0]["field"], "webhook_url", "{}", r.text);
        let r = app
            .patch("/v1/tenants/t", &tenant, json!({"notify_url": url}))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            r.text
        );
        assert_eq!(r.body["errors"][0]["field"], "notify_url", "{}", r.text);
    }

    // A name that resolves to loopback passes at set time and is refused at send
    // time, with the reason in the log and nothing received.
    let name = loopback_name().await;
    let r = app
        .patch(
            "/v1/sites/s",
            &tenant,
            json!({"webhook_url": format!("http://{name}:{port}/hook"), "limit_message": "full"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let version = r.body["config"]["config_version"]
        .as_i64()
        .or_else(|| r.body["config_version"].as_i64())
        .unwrap_or(0);
    let error = first_error(&app, "s", version).await;
    assert!(
        error.contains("refused") && error.contains("loopback"),
        "{error}"
    );
    assert!(receiver.received().is_empty(), "the receiver got a push");

    // The provider may point the same site at loopback (sites on its own network).
    let r = app
        .patch(
            "/v1/sites/s",
            &app.admin,
            json!({"webhook_url": format!("http://{name}:{port}/hook"), "limit_message": "full again"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    receiver
        .wait_for("a config push", |m| {
            m.iter().any(|x| x.body["type"] == "site.config_changed")
        })
        .await;
}

#[tokio::test]
async fn with_deny_private_no_url_reaches_a_reserved_address() {
    let app = spawn_with(Options {
        deny_private: true,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let port = url::Url::parse(&receiver.url).unwrap().port().unwrap();
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://10.1.2.3/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://[fd00::1]/".to_owned(),
    ] {
        let r = app
            .post(
                "/v1/sites",
                &app.admin,
                json!({"slug": "s", "tenant": "t", "name": "s", "plan": "p", "webhook_url": url}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            r.text
        );
        assert_eq!(r.body["errors"][0]["field"], "webhook_url");
    }
    let name = loopback_name().await;
    app.create_site(
        "s",
        "t",
        "p",
        json!({"webhook_url": format!("http://{name}:{port}/")}),
    )
    .await;
    let error = first_error(&app, "s", 1).await;
    assert!(
        error.contains("refused") && error.contains("loopback"),
        "{error}"
    );
    assert!(receiver.received().is_empty());
}
