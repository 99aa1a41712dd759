//! Conditional requests: whether a request already has the representation an
//! `ETag` names, so it is answered 304 Not Modified.

use actix_web::HttpRequest;
use actix_web::http::header::IF_NONE_MATCH;

/// Whether `request`'s `If-None-Match` names `etag` (or is `*`).
pub fn already_has(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(str::trim)
                .any(|tag| tag == etag || tag == "*")
        })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_listed_tag_or_a_star_matches() {
        let with = |value: &str| {
            TestRequest::get()
                .insert_header((IF_NONE_MATCH, value))
                .to_http_request()
        };
        assert!(already_has(&with("\"a\", \"b\""), "\"b\""));
        assert!(already_has(&with("*"), "\"b\""));
        assert!(!already_has(&with("\"a\""), "\"b\""));
        assert!(!already_has(&TestRequest::get().to_http_request(), "\"b\""));
    }
}
