//! What the resource modules share: request bodies, JSON parsing with field-named
//! errors, paging, path slugs and field checks.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use diesel::Connection as _;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::db::{self, DbConn, audit};
use crate::domain::patch::Patch;
use crate::error::{Error, FieldError, Result};
use crate::state::AppState;

/// Default body limit for control-plane requests.
pub const SMALL_BODY: usize = 64 * 1024;
/// Event batches: at most 1 MiB.
pub const EVENTS_BODY: usize = 1024 * 1024;
/// How long a client may take to send its whole body: a slow or stalled sender
/// must not hold a worker's connection (and the data behind it) for long.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Snapshots of up to 100,000 sessions.
pub const SNAPSHOT_BODY: usize = 32 * 1024 * 1024;

/// A JSON body of at most `LIMIT` bytes, read by the extractor but parsed only when
/// the handler asks, so that the caller's right is decided before the body is judged.
/// Malformed JSON, unknown fields and wrong types are a 400 naming the field; a
/// larger body is a 413; another content type a 415.
#[derive(Debug)]
pub struct Body<const LIMIT: usize = SMALL_BODY>(Result<web::Bytes>);

impl<const LIMIT: usize> Body<LIMIT> {
    pub fn json<T: DeserializeOwned>(self) -> Result<T> {
        parse_json(&self.0?)
    }

    /// For a PATCH: the body, and a validation error for each top-level field sent as
    /// `null` that cannot be cleared (`null` would otherwise read as "unchanged").
    pub fn json_patch<T: DeserializeOwned>(self, nullable: &[&str]) -> Result<(T, Checks)> {
        let bytes = self.0?;
        let v = parse_json(&bytes)?;
        let mut checks = Checks::default();
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&bytes) {
            for (k, val) in map {
                if val.is_null() && !nullable.contains(&k.as_str()) {
                    checks
                        .0
                        .push(FieldError::new(&k, "must not be null".to_owned()));
                }
            }
        }
        Ok((v, checks))
    }
}

impl<const LIMIT: usize> FromRequest for Body<LIMIT> {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let payload = payload.take();
        Box::pin(async move {
            let read = async {
                match content_type.as_deref() {
                    Some(ct) if ct == "application/json" || ct.ends_with("+json") => {}
                    _ => {
                        return Err(Error::UnsupportedMediaType(
                            "send the body as Content-Type: application/json".to_owned(),
                        ));
                    }
                }
                if declared.is_some_and(|n| n > LIMIT) {
                    return Err(too_large(LIMIT));
                }
                read_limited(payload, LIMIT).await
            };
            Ok(Body(read.await))
        })
    }
}

/// Reads a body of at most `limit` bytes, all of it within [`BODY_TIMEOUT`], so that
/// a client that sends slowly holds no worker for long.
pub async fn read_limited(mut payload: Payload, limit: usize) -> Result<web::Bytes> {
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| Error::bad_request(format!("cannot read the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(Error::RequestTimeout(format!(
                "the body was not received within {} s",
                BODY_TIMEOUT.as_secs()
            )))
        })
}

fn too_large(limit: usize) -> Error {
    Error::PayloadTooLarge(format!("the body may be at most {limit} bytes"))
}

/// A push URL set through the API by `origin`, judged by the private-target rule.
pub fn push_url(
    state: &crate::state::AppState, url: &str, origin: crate::domain::targets::Origin,
) -> std::result::Result<String, String> {
    crate::domain::targets::parse_push_url(url, origin, state.config.webhook_deny_private)
}

/// Parses JSON and names the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    // The plain parse is the fast path; a body that fails is parsed again with the
    // path tracking that names the field.
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let v = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let mut msg = inner.to_string();
        let field = if path == "." || path.is_empty() {
            match flattened_field(&msg, body) {
                Some((field, rest)) => {
                    msg = rest;
                    field
                }
                None => unknown_field_name(&msg).unwrap_or_else(|| "body".to_owned()),
            }
        } else {
            path
        };
        Error::BadRequest {
            detail: format!("{field}: {msg}"),
            errors: vec![FieldError::new(field, msg)],
        }
    })?;
    // The fast path refused the body, yet it parsed: what follows the value is the fault.
    de.end().map_err(|_| Error::BadRequest {
        detail: "body: trailing characters after the JSON value".to_owned(),
        errors: vec![FieldError::new(
            "body",
            "trailing characters after the JSON value".to_owned(),
        )],
    })?;
    Ok(v)
}

/// A parse error's message without serde_json's " at line L column C": the field path
/// says where, and within one event of a batch the position would mislead.
pub fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) if e.line() > 0 => msg[..i].to_owned(),
        _ => msg,
    }
}

/// A struct flattened into a request body: `#[serde(flatten, deserialize_with =
/// "flattened")]`. serde reads a flattened struct from a copy of the fields the outer
/// struct left, out of reach of the path tracking that names the field of a parse
/// error, and would answer "invalid type" for the whole body. This reads the struct's
/// own fields (leaving the rest for the outer struct's unknown-field check) with path
/// tracking, and puts the field's name before the message (`field: message`), where
/// [`parse_json`] finds it again.
pub fn flattened<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error as _;
    let entries = d.deserialize_struct("flattened", struct_fields::<T>(), Entries)?;
    serde_path_to_error::deserialize(serde_json::Value::Object(entries))
        .map_err(|e| D::Error::custom(format_args!("{}: {}", e.path(), e.inner())))
}

/// A map's entries as JSON values.
struct Entries;

impl<'de> serde::de::Visitor<'de> for Entries {
    type Value = serde_json::Map<String, serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self, mut a: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut entries = serde_json::Map::new();
        while let Some((k, v)) = a.next_entry()? {
            entries.insert(k, v);
        }
        Ok(entries)
    }
}

/// The field names a derived `Deserialize` of a struct asks for, read by asking it to
/// deserialize from a deserializer that only notes them.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::value::Error;
    struct Names<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self, _: V,
        ) -> std::result::Result<V::Value, Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self, _: &'static str, fields: &'static [&'static str], _: V,
        ) -> std::result::Result<V::Value, Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("noted"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut fields));
    fields
}

/// A root-level parse error of a flattened field (see [`flattened`]): the field, as
/// long as the body has it, and the message.
fn flattened_field(msg: &str, body: &[u8]) -> Option<(String, String)> {
    let (path, rest) = msg.split_once(": ")?;
    let key = path.split(['[', '.']).next()?;
    let sent = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .is_ok_and(|m| m.contains_key(key));
    sent.then(|| (path.to_owned(), rest.to_owned()))
}

fn unknown_field_name(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// `?limit=&cursor=` for lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64> {
        page_limit(self.limit)
    }
}

pub fn page_limit(limit: Option<i64>) -> Result<i64> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(_) => Err(Error::bad_field("limit", "must be between 1 and 500")),
    }
}

pub fn encode_cursor(parts: &[i64]) -> String {
    let text = parts
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(":");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

pub fn decode_cursor(cursor: Option<&str>, n: usize) -> Result<Option<Vec<i64>>> {
    let Some(c) = cursor else { return Ok(None) };
    let bad = || Error::bad_field("cursor", "not a cursor this list returned");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let parts = text
        .split(':')
        .map(str::parse::<i64>)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad())?;
    if parts.len() != n {
        return Err(bad());
    }
    Ok(Some(parts))
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Builds a page from `limit + 1` fetched rows (the extra row says there is more).
pub fn page<R, T>(
    mut rows: Vec<R>, limit: i64, key: impl Fn(&R) -> Vec<i64>, view: impl Fn(R) -> T,
) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(&key(r)))
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(view).collect(),
        next_cursor,
    }
}

/// One page of a list kept in id order (either way): `read(conn, the cursor's id,
/// limit + 1)` reads one row past the page, so that the page knows whether another
/// follows and `next_cursor` names the last id on it.
pub async fn id_page<R, T, F>(
    state: &AppState, limit: Option<i64>, cursor: Option<&str>, mut read: F, id: fn(&R) -> i64,
    view: impl Fn(R) -> T,
) -> Result<Page<T>>
where
    F: FnMut(&mut DbConn, Option<i64>, i64) -> db::Result<Vec<R>> + Send + 'static,
    R: Send + 'static,
{
    let limit = page_limit(limit)?;
    let from = decode_cursor(cursor, 1)?.map(|v| v[0]);
    let rows = state.db.run(move |c| read(c, from, limit + 1)).await?;
    Ok(page(rows, limit, |r| vec![id(r)], view))
}

/// Deletes (admin only) what `key` names, in one transaction with its audit record:
/// `delete` finds and removes it, or fails as not found. Returns the key, for the
/// caller to forget what it caches of it.
pub async fn delete_audited<F>(
    state: &AppState, caller: &Caller, entity: &'static str, key: &str, mut delete: F,
) -> Result<String>
where
    F: FnMut(&mut DbConn, &str) -> db::Result<()> + Send + 'static,
{
    caller.require_admin()?;
    let key = path_slug(entity, key)?;
    let (now, actor, gone) = (state.now(), caller.actor(), key.clone());
    let detail = serde_json::json!({});
    state
        .db
        .run(move |c| {
            c.transaction(|c| {
                delete(c, &key)?;
                audit::record(c, now, &actor, "delete", entity, &key, &detail)
            })
        })
        .await?;
    Ok(gone)
}

/// Parses a path slug; a malformed slug cannot name anything, so it is "not found".
pub fn path_slug(what: &str, s: &str) -> Result<String> {
    crate::domain::ids::Slug::parse(s)
        .map(|s| s.as_str().to_owned())
        .map_err(|_| Error::not_found(format!("{what} {s:?}")))
}

/// Collects validation errors of one request body.
#[derive(Debug, Default)]
pub struct Checks(pub Vec<FieldError>);

impl Checks {
    pub fn check<T>(&mut self, field: &str, r: std::result::Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(m) => {
                self.0.push(FieldError::new(field, m));
                None
            }
        }
    }

    /// A field of a change that cannot be cleared: its checked value if one was sent,
    /// and an error for `null`.
    pub fn not_null<T, U>(
        &mut self, field: &str, p: Patch<T>,
        check: impl FnOnce(T) -> std::result::Result<U, String>,
    ) -> Option<U> {
        match p.not_null() {
            Ok(v) => v.and_then(|v| self.check(field, check(v))),
            Err(m) => self.check(field, Err(m.to_owned())),
        }
    }

    /// A field of a change that may be cleared: `Some(None)` clears it, `Some(Some)`
    /// is its checked value; `None` leaves it (also when the check failed).
    pub fn clearable<T, U>(
        &mut self, field: &str, p: Patch<T>,
        check: impl FnOnce(T) -> std::result::Result<U, String>,
    ) -> Option<Option<U>> {
        match p.and_then(check) {
            Ok(p) => p.into_change(),
            Err(m) => self.check(field, Err(m)),
        }
    }

    /// The fields a domain rule found invalid (see [`crate::domain::config::Invalid`]).
    pub fn extend(&mut self, bad: crate::domain::config::Invalid) {
        self.0
            .extend(bad.into_iter().map(|(f, m)| FieldError::new(f, m)));
    }

    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(self.0))
        }
    }
}
