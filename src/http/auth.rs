//! The credential of a chat request (docs/protocol.md#authentication): a
//! [`Caller`] extractor that `POST /chat` and `GET /ws` take first, so a request
//! without a valid credential is answered 401 before anything else happens — for
//! `/ws`, before the upgrade. The A2A routes take it too.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, UPGRADE, WWW_AUTHENTICATE};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::{LocalBoxFuture, ready};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{AuthError, Authenticator, Caller};

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // Each group of routes that authenticates registers its checker.
        let Some(auth) = request.app_data::<web::Data<Authenticator>>().cloned() else {
            return Box::pin(ready(Err(actix_web::error::ErrorInternalServerError(
                "no application state",
            ))));
        };
        if !auth.is_on() {
            // Off: no header is even read, so nothing changes for any client.
            return Box::pin(ready(Ok(Caller::Anyone)));
        }
        let token = match presented_token(request) {
            Ok(token) => token,
            Err(error) => return Box::pin(ready(Err(Refused(error).into()))),
        };
        Box::pin(async move {
            let caller = auth.authenticate(token.as_deref()).await;
            caller.map_err(|error| {
                tracing::debug!(%error, "a request was refused for its credential");
                Refused(error).into()
            })
        })
    }
}

/// The bearer token a request carries: in its `Authorization` header, or — for a
/// WebSocket upgrade only, since browsers cannot set headers on one — in the
/// `access_token` query parameter. Elsewhere a token in the URL is not read: URLs
/// end up in logs and browser histories.
fn presented_token(request: &HttpRequest) -> Result<Option<String>, AuthError> {
    if let Some(value) = request.headers().get(AUTHORIZATION) {
        let token = value.to_str().ok().and_then(bearer_token);
        return token.map(|token| Some(token.to_owned())).ok_or_else(|| {
            AuthError::invalid("the Authorization header must be `Bearer <token>`")
        });
    }
    let upgrade = request.headers().get(UPGRADE);
    if !upgrade.is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket")) {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct AccessToken {
        access_token: Option<String>,
    }
    let query = web::Query::<AccessToken>::from_query(request.query_string());
    Ok(query.ok().and_then(|query| query.into_inner().access_token))
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 9110, section 11.1), so `bearer` works as well.
pub(super) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// A request refused for its credential: 401 with a `WWW-Authenticate: Bearer`
/// challenge (RFC 6750), or 503 when it cannot be checked now.
#[derive(Debug)]
struct Refused(AuthError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for Refused {
    fn status_code(&self) -> StatusCode {
        match self.0 {
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Missing | AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self.0 {
            AuthError::Missing => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            AuthError::Invalid(_) => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""));
            }
            AuthError::Unavailable(_) => {}
        }
        response.json(json!({ "detail": self.0.to_string() }))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc"] {
            assert_eq!(bearer_token(value), Some("abc"), "{value}");
        }
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn the_header_comes_first_and_the_query_only_for_websockets() {
        let token = |request: TestRequest| presented_token(&request.to_http_request());
        let header = TestRequest::get()
            .uri("/ws?access_token=from-query")
            .insert_header((UPGRADE, "websocket"))
            .insert_header((AUTHORIZATION, "bearer from-header"));
        assert_eq!(token(header), Ok(Some("from-header".into())));
        let query = TestRequest::get()
            .uri("/ws?session_id=x&access_token=from%20query")
            .insert_header((UPGRADE, "WebSocket"));
        assert_eq!(token(query), Ok(Some("from query".into())));
        let not_upgrading = TestRequest::post().uri("/chat?access_token=from-query");
        assert_eq!(token(not_upgrading), Ok(None));
        let basic = TestRequest::post().insert_header((AUTHORIZATION, "Basic YTpi"));
        assert!(matches!(token(basic), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn refusals_are_401_with_a_bearer_challenge_or_503() {
        let response = Refused(AuthError::Missing).error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers().get(WWW_AUTHENTICATE).unwrap(), "Bearer");
        let response = Refused(AuthError::invalid("expired")).error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(WWW_AUTHENTICATE).unwrap(),
            "Bearer error=\"invalid_token\""
        );
        let response = Refused(AuthError::Unavailable("later".into())).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
