//! The uploader page `prism dev` serves at `/upload`: the reference browser integration.
//!
//! One static page (its HTML, script, style and the vendored ThumbHash decoder compiled into
//! the binary) that drives the public API exactly as an app would: create a batch, upload each
//! file straight to storage by its presigned instructions (POST form or PUT, with progress per
//! file), long-poll the batch, then show the ThumbHash placeholder until the variant has loaded,
//! the variants and a copyable `<picture>`/`srcset` snippet.
//!
//! The page holds no secret: the bearer token reaches it in the URL fragment
//! (`/upload#token=…`, which `prism dev` prints and which browsers never send to a server) or
//! is pasted into it, and lives in the tab's sessionStorage.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const THUMBHASH_JS: &str = include_str!("assets/thumbhash.js");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // The page runs only its own scripts and talks only to this origin and the upload
            // URLs the API hands out (which may be another origin: S3, or a public media base).
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data: blob: https: http:; \
                 connect-src 'self' https: http:; style-src 'self' 'unsafe-inline'; \
                 script-src 'self'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}

/// `/upload` and its assets.
pub fn router() -> Router {
    Router::new()
        .route("/upload", get(|| async { asset(HTML, INDEX_HTML) }))
        .route("/upload/app.js", get(|| async { asset(JS, APP_JS) }))
        .route("/upload/style.css", get(|| async { asset(CSS, STYLE_CSS) }))
        .route(
            "/upload/thumbhash.js",
            get(|| async { asset(JS, THUMBHASH_JS) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_reference_each_other() {
        assert!(INDEX_HTML.contains("/upload/app.js"));
        assert!(INDEX_HTML.contains("/upload/style.css"));
        assert!(APP_JS.contains("/upload/thumbhash.js"));
        assert!(APP_JS.contains("/v1/batches"));
        assert!(THUMBHASH_JS.contains("export function thumbHashToDataURL"));
        // Nothing is loaded from outside prism (the only URLs are in comments of the vendored
        // decoder's header).
        for a in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(
                !a.contains("http://") && !a.contains("https://"),
                "an asset refers to another origin"
            );
        }
    }
}
