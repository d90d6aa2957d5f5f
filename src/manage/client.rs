//! A small HTTP client of headcount's API for one command: one request at a time on a
//! single-threaded runtime, every answer read as JSON, every failure turned into the
//! lines an operator reads.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::args::Remote;

pub struct Client {
    base: url::Url,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// Checks the URL and that a token was given before anything is sent.
    pub fn new(remote: &Remote) -> Result<Self, String> {
        let base = base_url(&remote.url)?;
        let token = remote
            .token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or(
                "no token: pass --token or set HEADCOUNT_TOKEN to an admin token \
                 (`headcount token create --role admin` mints one)",
            )?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("headcount-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base,
            token,
            http,
            runtime,
        })
    }

    /// `segments` are joined to the base URL's path, each escaped as one segment.
    pub fn get(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Value, String> {
        self.call(Method::GET, segments, query, None)
    }

    pub fn post(&self, segments: &[&str], body: &Value) -> Result<Value, String> {
        self.call(Method::POST, segments, &[], Some(body))
    }

    pub fn patch(&self, segments: &[&str], body: &Value) -> Result<Value, String> {
        self.call(Method::PATCH, segments, &[], Some(body))
    }

    /// Every item of a list, page after page (`{items, next_cursor}`).
    pub fn get_all(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            q.push(("limit", "500"));
            if let Some(c) = &cursor {
                q.push(("cursor", c));
            }
            let page = self.get(segments, &q)?;
            if let Some(list) = page["items"].as_array() {
                items.extend(list.iter().cloned());
            }
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }

    fn call(
        &self, method: Method, segments: &[&str], query: &[(&str, &str)], body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| format!("{} cannot take a path", self.base))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let what = format!("{method} {}", url.path());
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.runtime.block_on(async {
            let res = req.send().await.map_err(|e| self.unreachable(&e))?;
            let status = res.status();
            let problem = res
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/problem+json"));
            let text = res.text().await.map_err(|e| self.unreachable(&e))?;
            if status.is_success() {
                serde_json::from_str(&text).map_err(|e| format!("{what}: not JSON ({e})"))
            } else {
                Err(failure(&what, status, problem, &text))
            }
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> String {
        let why = if e.is_timeout() {
            "no answer within the time allowed".to_owned()
        } else {
            chain(e)
        };
        format!(
            "cannot reach headcount at {}: {why} (is it running there? set --url or HEADCOUNT_URL)",
            self.base
        )
    }
}

/// The base URL, checked: http or https with a host.
fn base_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("--url {raw:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("--url {raw:?}: must be an http:// or https:// URL"));
    }
    Ok(url)
}

/// An error and its causes on one line (reqwest's own message names only the step).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A failed answer in words: a problem's title, detail and field errors; otherwise
/// the status and the start of the body.
pub fn failure(what: &str, status: StatusCode, problem: bool, text: &str) -> String {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if !problem || !body.is_object() {
        let start: String = text.chars().take(300).collect();
        return format!("{what}: {status}: {}", start.trim());
    }
    let title = body["title"].as_str().unwrap_or("error");
    let mut out = format!("{title} ({}) on {what}", status.as_u16());
    if let Some(detail) = body["detail"].as_str().filter(|d| !d.is_empty()) {
        out.push_str(": ");
        out.push_str(detail);
    }
    for e in body["errors"].as_array().into_iter().flatten() {
        let field = e["field"].as_str().unwrap_or("?");
        let message = e["message"].as_str().unwrap_or("?");
        let line = format!("{field}: {message}");
        // A single field's error is often the detail itself: said once is enough.
        if body["detail"].as_str() != Some(line.as_str()) {
            out.push_str(&format!("\n  {line}"));
        }
    }
    out
}

/// A request body from flags: a flag left out is a field left out.
pub fn body(flags: &impl Serialize) -> Result<Value, String> {
    let mut v = serde_json::to_value(flags).map_err(|e| e.to_string())?;
    if let Value::Object(map) = &mut v {
        map.retain(|_, v| !v.is_null());
    }
    Ok(v)
}

/// A PATCH body: the fields given, and `null` for each one to clear. An empty one
/// is refused here, since the API would answer it with the unchanged object.
pub fn changes(flags: &impl Serialize, clear: &[String]) -> Result<Value, String> {
    let mut v = body(flags)?;
    if let Value::Object(map) = &mut v {
        for field in clear {
            map.insert(field.replace('-', "_"), Value::Null);
        }
        if map.is_empty() {
            return Err("nothing to change: give at least one field to set (see --help)".into());
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_problem_reads_as_its_title_detail_and_fields() {
        let text = r#"{"type":"validation","title":"Invalid request","status":422,
            "detail":"2 fields are invalid","errors":[{"field":"code","message":"must be a slug"},
            {"field":"session_limit","message":"must be at least 1"}]}"#;
        let s = failure(
            "POST /v1/plans",
            StatusCode::UNPROCESSABLE_ENTITY,
            true,
            text,
        );
        assert_eq!(
            s,
            "Invalid request (422) on POST /v1/plans: 2 fields are invalid\n  \
             code: must be a slug\n  session_limit: must be at least 1"
        );
    }

    #[test]
    fn an_answer_that_is_no_problem_shows_its_status_and_start() {
        let s = failure(
            "GET /v1/plans",
            StatusCode::BAD_GATEWAY,
            false,
            "<html>proxy</html>",
        );
        assert_eq!(s, "GET /v1/plans: 502 Bad Gateway: <html>proxy</html>");
    }

    #[test]
    fn a_detail_that_is_the_only_field_error_is_said_once() {
        let text = r#"{"type":"validation","title":"Validation failed","status":422,
            "detail":"plan: no plan nope","errors":[{"field":"plan","message":"no plan nope"}]}"#;
        let s = failure(
            "POST /v1/sites",
            StatusCode::UNPROCESSABLE_ENTITY,
            true,
            text,
        );
        assert_eq!(
            s,
            "Validation failed (422) on POST /v1/sites: plan: no plan nope"
        );
    }

    #[test]
    fn only_web_urls_are_taken() {
        assert!(base_url("http://127.0.0.1:8080").is_ok());
        assert!(base_url("https://hc.example/prefix/").is_ok());
        assert!(base_url("file:///etc/passwd").is_err());
        assert!(base_url("127.0.0.1:8080").is_err());
    }

    #[test]
    fn flags_left_out_are_fields_left_out_and_cleared_ones_are_null() {
        #[derive(Serialize)]
        struct F {
            name: Option<String>,
            session_limit: Option<i64>,
        }
        let f = F {
            name: None,
            session_limit: Some(30),
        };
        assert_eq!(body(&f).unwrap(), json!({"session_limit": 30}));
        let c = changes(&f, &["webhook-url".into()]).unwrap();
        assert_eq!(c, json!({"session_limit": 30, "webhook_url": null}));
        let none = F {
            name: None,
            session_limit: None,
        };
        assert!(changes(&none, &[]).is_err());
    }
}
