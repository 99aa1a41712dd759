//! Short, readable explanations of a model server's failures, from its error
//! responses and from the transport's chain of causes.

use std::error::Error as StdError;

/// How much of an error response body is read to explain the failure.
const ERROR_BODY_LIMIT: usize = 2048;
/// How many characters of an error explanation are kept.
const ERROR_EXCERPT_CHARS: usize = 300;

/// `": <explanation>"` from the start of an error response body, or `""`. OpenAI-style
/// bodies (`{"error":{"message":...}}`) give their message; others a text excerpt.
pub(super) async fn error_detail(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => error_message(&value),
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    let text = excerpt(text.trim());
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// The message of an OpenAI-style error value: `{"error":{"message":...}}`,
/// `{"error":"..."}` or `{"message":...}`; otherwise the JSON itself.
pub(super) fn error_message(value: &serde_json::Value) -> String {
    let error = value.get("error").unwrap_or(value);
    match error {
        serde_json::Value::String(message) => message.clone(),
        other => match other.get("message").and_then(|m| m.as_str()) {
            Some(message) => message.to_owned(),
            None => other.to_string(),
        },
    }
}

pub(super) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(ERROR_EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An error with its chain of causes, which is where reqwest keeps the useful part
/// ("connection refused", "dns error", ...).
pub(crate) fn describe(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_extracted_and_cut() {
        let value = serde_json::json!({"error": {"message": "bad key", "type": "auth"}});
        assert_eq!(error_message(&value), "bad key");
        assert_eq!(
            error_message(&serde_json::json!({"error": "plain"})),
            "plain"
        );
        let long = "x".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), ERROR_EXCERPT_CHARS + 1);
    }
}
