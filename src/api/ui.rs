//! The dashboard: the static files of `ui/` embedded in the binary and served under
//! `/ui/`. The page talks to the REST API with the caller's own bearer token, so it
//! shows exactly what that token may see; it is not part of the REST API (not in the
//! spec).

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use include_dir::{Dir, include_dir};

use crate::error::Error;

/// The whole directory, so that a new module of the page needs no line here. Cargo
/// rebuilds when an embedded file changes; a file *added* to `ui/` is picked up by
/// the next build of this crate that happens for another reason (stable Rust cannot
/// watch a directory), which the tests' fetch of every imported module catches.
static UI: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/ui");

/// Only our own files, no inline script or style, no framing, no forms posting away:
/// site-supplied strings shown on the page can never run as code. `script-src 'self'`
/// covers the page's modules and their imports, all from this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_ui_root).service(get_ui_file);
}

/// The type of each kind of file the page is made of; any other file is not served,
/// so nothing reaches the browser with a type it would have to guess. Modules must be
/// JavaScript: browsers refuse to run a module served as anything else.
fn content_type(path: &str) -> Option<&'static str> {
    Some(match path.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

/// A path names a file of the page only as plain names joined by single slashes:
/// no `..`, no hidden files, no empty segments, so no two spellings of one file.
fn plain(path: &str) -> bool {
    path.split('/').all(|s| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    })
}

fn asset(content_type: &str, body: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // The token lives in the fragment and in sessionStorage; no referrer carries
        // even the page's address to another origin.
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // Small files that change with the binary: revalidate rather than go stale.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `/ui` without the slash: the page's relative asset links need the folder form.
#[get("/ui")]
pub async fn get_ui_root() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// `/ui/` is the page itself; any other path a file of `ui/`, or the API's 404.
#[get("/ui/{path:.*}")]
pub async fn get_ui_file(path: web::Path<String>) -> Result<HttpResponse, Error> {
    let path = match path.as_str() {
        "" => "index.html",
        p => p,
    };
    let file = plain(path).then(|| UI.get_file(path)).flatten();
    match (file, content_type(path)) {
        (Some(file), Some(content_type)) => Ok(asset(content_type, file.contents())),
        _ => Err(Error::NotFound("no such endpoint".to_owned())),
    }
}
