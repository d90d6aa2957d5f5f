//! The dashboard: a few static files embedded in the binary and served under `/ui/`.
//! The page talks to the REST API with the caller's own bearer token, so it shows
//! exactly what that token may see; it is not part of the REST API (not in the spec).

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");
const ICON_SVG: &str = include_str!("../../ui/icon.svg");

/// Only our own files, no inline script or style, no framing, no forms posting away:
/// site-supplied strings shown on the page can never run as code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_ui_root)
        .service(get_ui_index)
        .service(get_ui_js)
        .service(get_ui_css)
        .service(get_ui_icon);
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
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

#[get("/ui/")]
pub async fn get_ui_index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

#[get("/ui/app.js")]
pub async fn get_ui_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

#[get("/ui/app.css")]
pub async fn get_ui_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[get("/ui/icon.svg")]
pub async fn get_ui_icon() -> HttpResponse {
    asset("image/svg+xml", ICON_SVG)
}
