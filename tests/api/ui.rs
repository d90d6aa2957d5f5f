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
    // A module: deferred like before, and its imports fetched under the same policy.
    assert!(
        r.text
            .contains(r#"<script type="module" src="main.js"></script>"#)
    );
    // Nothing inline: every script and style comes from a file the policy allows.
    assert_eq!(r.text.matches("<script").count(), 1);
    assert!(!r.text.contains("<style") && !r.text.contains("style="));
}

#[tokio::test]
async fn the_dashboard_assets_have_their_types() {
    let app = spawn().await;
    for (path, content_type) in [
        ("/ui/main.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let r = app.call("GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers[CONTENT_TYPE], content_type, "{path}");
        assert!(r.headers.contains_key(CONTENT_SECURITY_POLICY), "{path}");
        assert!(!r.text.is_empty(), "{path}");
    }
    // `/ui` sends the browser to the folder, where the relative asset links resolve.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(format!("{}/ui", app.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()[LOCATION], "/ui/");
    // Not a file of the dashboard, or not spelled as one: the API's ordinary 404.
    for path in [
        "/ui/nope.js",
        "/ui/site/",
        "/ui/site",
        "/ui//main.js",
        "/ui/site%2f..%2fmain.js",
        "/ui/..%2fCargo.toml",
    ] {
        let r = app.call("GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            r.headers[CONTENT_TYPE], "application/problem+json",
            "{path}"
        );
    }
}

/// The static imports of a module (`import … from '…'` and `import '…'`, one per
/// declaration, as the dashboard writes them), resolved against the module's path.
fn imports(module: &str, text: &str) -> Vec<String> {
    let dir = &module[..module.rfind('/').unwrap() + 1];
    text.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("import ") || l.starts_with("} from "))
        .filter_map(|l| {
            let spec = l.rsplit_once(" from ").map_or(&l[7..], |(_, s)| s);
            let spec = spec.trim().trim_end_matches(';');
            spec.strip_prefix('\'')?
                .strip_suffix('\'')
                .map(str::to_owned)
        })
        .map(|spec| {
            assert!(
                spec.starts_with("./") || spec.starts_with("../"),
                "{module}: {spec}"
            );
            let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
            for s in spec.split('/') {
                match s {
                    "." => {}
                    ".." => assert!(parts.pop().is_some(), "{module}: {spec}"),
                    s => parts.push(s),
                }
            }
            format!("/{}", parts.join("/"))
        })
        .collect()
}

#[tokio::test]
async fn every_module_the_entry_imports_is_javascript() {
    let app = spawn().await;
    let mut seen = vec!["/ui/main.js".to_owned()];
    let mut next = 0;
    let mut keeps_token = false;
    while let Some(path) = seen.get(next).cloned() {
        next += 1;
        let r = app.call("GET", &path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        // Browsers run a module only when it is served as JavaScript.
        assert_eq!(
            r.headers[CONTENT_TYPE], "text/javascript; charset=utf-8",
            "{path}"
        );
        assert!(r.headers.contains_key(CONTENT_SECURITY_POLICY), "{path}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
        // Site data is put on the page as text, never parsed as markup.
        assert!(!r.text.contains("innerHTML"), "{path}");
        keeps_token |= r.text.contains("sessionStorage");
        for import in imports(&path, &r.text) {
            if !seen.contains(&import) {
                seen.push(import);
            }
        }
    }
    assert!(seen.len() > 1, "main.js imports nothing: {seen:?}");
    assert!(
        keeps_token,
        "no module keeps the token in sessionStorage: {seen:?}"
    );
}
