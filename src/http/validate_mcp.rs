//! `POST /validate_mcp {"url"}`: connects to the MCP server at `url` and lists its
//! tools, for the original frontend's MCP panel.
//!
//! The route makes the gateway open a URL a browser chose, so it reaches only the
//! hosts of `mcp.validate_allowed_hosts` (none by default), follows no redirect,
//! gives up after [`VALIDATE_TIMEOUT`], and runs at most [`MAX_AT_ONCE`]
//! validations at a time. With `[auth]` on it needs a user's credential, like
//! `POST /chat`. Every answer is `{"status":"ok"|"error","message",...}`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::AppState;
use super::chat::cors;
use crate::agent::mcp;
use crate::auth::Caller;

/// How long connecting to a server and listing its tools may take.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Validations that may run at once; more are answered 429.
pub const MAX_AT_ONCE: usize = 8;
/// The largest request body (a URL and its JSON).
const BODY_LIMIT: usize = 16 * 1024;
/// The longest reason for a failure shown to the user.
const MAX_REASON_CHARS: usize = 300;

/// The permits of the validations running now.
#[derive(Clone)]
struct Slots(Arc<Semaphore>);

pub fn routes(config: &mut web::ServiceConfig, state: &AppState) {
    config.service(
        web::resource("/validate_mcp")
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .app_data(web::Data::new(Slots(Arc::new(Semaphore::new(MAX_AT_ONCE)))))
            .wrap(cors(&state.config.http.cors_origins))
            .route(web::post().to(validate)),
    );
}

#[derive(Deserialize)]
struct ValidateRequest {
    url: String,
}

/// `caller` first: without a valid credential (when one is needed) nothing else
/// happens.
async fn validate(
    _caller: Caller,
    body: Bytes,
    state: web::Data<AppState>,
    slots: web::Data<Slots>,
) -> HttpResponse {
    let request: ValidateRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be JSON: {\"url\": \"http://host:port/mcp\"}".into(),
            );
        }
    };
    let url = match Url::parse(request.url.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => url,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "url must be an http(s) URL of an MCP server's streamable HTTP endpoint".into(),
            );
        }
    };
    if let Err(refusal) = allowed(&url, &state.config.mcp.validate_allowed_hosts) {
        return error(StatusCode::FORBIDDEN, refusal);
    }
    let Ok(_permit) = slots.0.clone().try_acquire_owned() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many validations are running; try again in a moment".into(),
        );
    };
    match tokio::time::timeout(VALIDATE_TIMEOUT, mcp::probe(url.as_str())).await {
        Ok(Ok(tools)) => {
            let listed: Vec<_> = tools
                .iter()
                .map(|tool| json!({"name": tool.name, "description": tool.description}))
                .collect();
            HttpResponse::Ok().json(json!({
                "status": "ok",
                "message": format!(
                    "Connected to the MCP server; it offers {} tool{}.",
                    listed.len(),
                    if listed.len() == 1 { "" } else { "s" }
                ),
                "tools": listed,
            }))
        }
        Ok(Err(reason)) => {
            tracing::info!(%url, reason, "an MCP server did not validate");
            error(
                StatusCode::OK,
                format!(
                    "Could not list the tools of the MCP server: {}",
                    cut(&reason, MAX_REASON_CHARS)
                ),
            )
        }
        Err(_) => error(
            StatusCode::OK,
            format!(
                "The MCP server did not answer within {} s.",
                VALIDATE_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// Whether `url`'s host is one of `allowed` (`name`, any port, or `name:port`),
/// and if not, what to tell the user.
fn allowed(url: &Url, allowed: &[String]) -> Result<(), String> {
    // Url keeps host names in lower case.
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or_default();
    let with_port = format!("{host}:{port}");
    let listed = allowed.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        entry == host || entry == with_port
    });
    if listed {
        return Ok(());
    }
    if allowed.is_empty() {
        return Err(format!(
            "Validating MCP servers is off: this server may connect to no host. To allow \
             {host}, add \"{host}\" to mcp.validate_allowed_hosts in its configuration."
        ));
    }
    Err(format!(
        "This server may not connect to {host}. To allow it, add \"{host}\" to \
         mcp.validate_allowed_hosts in its configuration."
    ))
}

fn error(status: StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "status": "error", "message": message }))
}

fn cut(text: &str, chars: usize) -> &str {
    text.char_indices()
        .nth(chars)
        .map_or(text, |(at, _)| &text[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, hosts: &[&str]) -> Result<(), String> {
        let hosts: Vec<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
        allowed(&Url::parse(url).unwrap(), &hosts)
    }

    #[test]
    fn only_listed_hosts_are_reached() {
        assert_eq!(
            check("http://mcp.example:7003/mcp", &["mcp.example"]),
            Ok(())
        );
        assert_eq!(check("http://MCP.Example/mcp", &["mcp.example:80"]), Ok(()));
        assert_eq!(check("http://127.0.0.1:9/mcp", &["127.0.0.1:9"]), Ok(()));
        assert_eq!(check("http://[::1]:9/mcp", &["[::1]"]), Ok(()));
        let refused = check("http://127.0.0.1:9/mcp", &["127.0.0.1:10"]).unwrap_err();
        assert!(
            refused.contains("may not connect to 127.0.0.1"),
            "{refused}"
        );
        let refused = check("http://other.example/mcp", &["mcp.example"]).unwrap_err();
        assert!(refused.contains("mcp.validate_allowed_hosts"), "{refused}");
    }

    #[test]
    fn with_no_host_allowed_the_refusal_says_how_to_allow_one() {
        let refused = check("http://127.0.0.1:7003/mcp", &[]).unwrap_err();
        assert!(refused.contains("is off"), "{refused}");
        assert!(
            refused.contains("add \"127.0.0.1\" to mcp.validate_allowed_hosts"),
            "{refused}"
        );
    }

    #[test]
    fn reasons_are_cut_on_character_boundaries() {
        assert_eq!(cut("héllo", 2), "hé");
        assert_eq!(cut("hi", 5), "hi");
    }
}
