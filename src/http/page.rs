//! The chat page (docs/page.md): `GET /` and its files under `/static/`, all
//! compiled into the binary from `static/`, so the page needs no build step and
//! nothing from elsewhere. Every answer carries a Content-Security-Policy that
//! lets the page run only its own scripts and talk only to its own origin.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, ETAG, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use actix_web::{HttpRequest, HttpResponse, web};

/// A file of the page: its path under `/static/`, its media type and content.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    content: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $media_type:expr) => {
        Asset {
            path: $path,
            media_type: $media_type,
            content: include_bytes!(concat!("../../static/", $path)),
        }
    };
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

const ASSETS: &[Asset] = &[
    asset!("app.js", JAVASCRIPT),
    asset!("connection.js", JAVASCRIPT),
    asset!("conversation.js", JAVASCRIPT),
    asset!("render.js", JAVASCRIPT),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("vendor/marked.esm.js", JAVASCRIPT),
    asset!("vendor/purify.es.mjs", JAVASCRIPT),
    asset!("vendor/LICENSE-marked.md", "text/plain; charset=utf-8"),
    asset!("vendor/LICENSE-dompurify", "text/plain; charset=utf-8"),
];

/// Scripts and styles from this origin only, no inline script, no plugin, no
/// frame; connections (`fetch`, the WebSocket) to this origin only. `'self'`
/// covers `ws:`/`wss:` to the same host in current browsers; the explicit
/// WebSocket origins are for older ones, named only for a `Host` that is a plain
/// host name or address (a header is the client's: it never adds to the policy).
fn content_security_policy(request: &HttpRequest) -> String {
    let info = request.connection_info();
    let host = info.host();
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    let websockets = if plain {
        format!(" ws://{host} wss://{host}")
    } else {
        String::new()
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{websockets}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(index))
        .route("/static/{path:.*}", web::get().to(static_file));
}

async fn index(request: HttpRequest) -> HttpResponse {
    serve(&request, &INDEX)
}

async fn static_file(request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|asset| asset.path == path.as_str()) {
        Some(asset) => serve(&request, asset),
        None => HttpResponse::NotFound()
            .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .json(serde_json::json!({"detail": "no such file"})),
    }
}

/// `asset`, revalidated by its ETag on every use (304 when unchanged), so a new
/// binary's page is never mixed with the old one's files.
fn serve(request: &HttpRequest, asset: &Asset) -> HttpResponse {
    let etag = etag(asset);
    let unchanged = super::etag::already_has(request, &etag);
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header((ETAG, etag.clone()))
        .insert_header((CONTENT_SECURITY_POLICY, content_security_policy(request)))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((X_FRAME_OPTIONS, "DENY"))
        .insert_header((REFERRER_POLICY, "no-referrer"));
    if unchanged {
        return response.finish();
    }
    response.content_type(asset.media_type).body(asset.content)
}

/// The ETag of `asset`: a hash of the binary's whole page, computed once.
fn etag(asset: &Asset) -> String {
    static VERSION: OnceLock<u64> = OnceLock::new();
    let version = VERSION.get_or_init(|| {
        let mut hasher = std::hash::DefaultHasher::new();
        for asset in ASSETS.iter().chain([&INDEX]) {
            asset.content.hash(&mut hasher);
        }
        hasher.finish()
    });
    format!("\"{version:016x}-{}\"", asset.content.len())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_strange_host_adds_nothing_to_the_policy() {
        let policy = |host: &str| {
            content_security_policy(
                &TestRequest::get()
                    .insert_header(("Host", host))
                    .to_http_request(),
            )
        };
        assert!(
            policy("127.0.0.1:8080")
                .contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;")
        );
        let injected = policy("x; script-src *");
        assert!(injected.contains("connect-src 'self';"), "{injected}");
        assert!(!injected.contains('*'), "{injected}");
    }

    #[test]
    fn every_file_the_page_loads_is_served() {
        let html = std::str::from_utf8(INDEX.content).unwrap();
        let mut loaded: Vec<String> = html
            .split("/static/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().to_owned())
            .collect();
        for asset in ASSETS.iter().filter(|asset| asset.media_type == JAVASCRIPT) {
            let script = std::str::from_utf8(asset.content).unwrap();
            let folder = asset.path.rsplit_once('/').map_or("", |(folder, _)| folder);
            for line in script.lines().filter(|line| line.starts_with("import ")) {
                let target = line.split('\'').nth(1).unwrap().trim_start_matches("./");
                loaded.push(if folder.is_empty() {
                    target.to_owned()
                } else {
                    format!("{folder}/{target}")
                });
            }
        }
        for path in loaded {
            assert!(
                ASSETS.iter().any(|asset| asset.path == path),
                "{path} is loaded but not served"
            );
        }
    }
}
