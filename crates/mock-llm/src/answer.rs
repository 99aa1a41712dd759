//! What the mock answers: the request it reads and the answer it derives from it.

use serde::Deserialize;

/// The part of a chat completion request the mock reads.
#[derive(Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) messages: Vec<RequestMessage>,
    #[serde(default)]
    pub(crate) stream: bool,
}

#[derive(Deserialize)]
pub(crate) struct RequestMessage {
    role: String,
    #[serde(default)]
    content: Option<MessageContent>,
}

/// A message's content: a string, or a list of parts of which the text parts count.
#[derive(Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(default)]
    text: Option<String>,
}

impl MessageContent {
    fn text(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => {
                parts.iter().filter_map(|p| p.text.as_deref()).collect()
            }
        }
    }
}

/// The mock's answer to a conversation whose last user message is
/// `last_user_message` and which holds `turn` user messages.
pub fn expected_answer(last_user_message: &str, turn: usize) -> String {
    format!("You said: \"{last_user_message}\" (turn {turn})")
}

/// How the mock splits an answer into streamed chunks: one word with its trailing
/// space per chunk; their concatenation is the answer.
pub fn answer_chunks(answer: &str) -> impl Iterator<Item = &str> {
    answer.split_inclusive(' ')
}

/// The last user message's text and the number of user messages.
pub(crate) fn last_user_and_turn(messages: &[RequestMessage]) -> (String, usize) {
    let mut users = messages.iter().filter(|m| m.role == "user");
    let turn = users.clone().count();
    let last = users
        .next_back()
        .and_then(|m| m.content.as_ref())
        .map(MessageContent::text);
    (last.unwrap_or_default(), turn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: &str) -> RequestMessage {
        RequestMessage {
            role: role.into(),
            content: Some(MessageContent::Text(content.into())),
        }
    }

    #[test]
    fn answer_names_the_last_user_message_and_the_turn() {
        let messages = [
            message("system", "be nice"),
            message("user", "first"),
            message("assistant", "You said: \"first\" (turn 1)"),
            message("user", "second one"),
        ];
        let (last, turn) = last_user_and_turn(&messages);
        assert_eq!((last.as_str(), turn), ("second one", 2));
        assert_eq!(
            expected_answer(&last, turn),
            "You said: \"second one\" (turn 2)"
        );
        assert_eq!(last_user_and_turn(&[]), (String::new(), 0));
    }

    #[test]
    fn content_parts_count_as_text() {
        let request: CompletionRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(last_user_and_turn(&request.messages), ("ab".into(), 1));
    }

    #[test]
    fn chunks_are_words_with_their_space() {
        let answer = expected_answer("hello  big world", 3);
        let chunks: Vec<&str> = answer_chunks(&answer).collect();
        assert_eq!(chunks[..3], ["You ", "said: ", "\"hello "]);
        assert_eq!(chunks.concat(), answer);
    }
}
