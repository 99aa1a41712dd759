//! A reply sent whole (a request without `stream`): the message its streamed
//! deltas would have made, after as long as streaming them would have taken.

use actix_web::HttpResponse;
use serde_json::{Value, json};

use crate::MockLlmOptions;
use crate::events::{Delta, deltas};
use crate::more_words::ENDLESS_WORD;
use crate::plan::{End, LENGTH, Plan};
use crate::reply::{Reply, ReplyBody};
use crate::tools::MockToolCall;

/// The response to a request without `stream` that `reply` and `plan` answer.
pub(crate) async fn complete(
    id: String,
    created: u64,
    model: String,
    reply: &Reply,
    plan: Plan,
    options: MockLlmOptions,
) -> HttpResponse {
    let (more_words, finish_reason) = match plan.end {
        // Nothing complete ever comes (hang, stall, no end); the client gives up.
        End::Silence | End::MoreWords(None) => return std::future::pending().await,
        End::MoreWords(Some(words)) => (words, LENGTH),
        End::Finish(finish_reason) => (0, finish_reason),
    };
    let deltas = deltas(reply);
    let sent = &deltas[..plan.deltas];
    let tokens = sent.len() + more_words;
    let delay = options.ttft + options.token_interval * (tokens.saturating_sub(1) as u32);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    HttpResponse::Ok().json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message(reply, sent, more_words),
            "finish_reason": finish_reason,
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
    }))
}

/// The `message` the `sent` deltas of `reply` make, joined as a client joins
/// them from the stream, and `more_words` of an endless answer after them.
fn message(reply: &Reply, sent: &[Delta], more_words: usize) -> Value {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<(&MockToolCall, String)> = Vec::new();
    for delta in sent {
        match delta {
            Delta::Reasoning(word) => reasoning.push_str(word),
            Delta::Content(word) => content.push_str(word),
            Delta::CallStart { call, .. } => calls.push((call, String::new())),
            // A call's fragments follow its start, before the next call's.
            Delta::CallArguments { fragment, .. } => {
                if let Some((_, arguments)) = calls.last_mut() {
                    arguments.push_str(fragment);
                }
            }
        }
    }
    content.push_str(&ENDLESS_WORD.repeat(more_words));
    let mut message = json!({"role": "assistant", "content": null});
    match &reply.body {
        ReplyBody::Text(_) => message["content"] = content.into(),
        ReplyBody::ToolCalls(_) if calls.is_empty() => {}
        ReplyBody::ToolCalls(_) => {
            let calls: Vec<Value> = calls
                .into_iter()
                .map(|(call, arguments)| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": arguments},
                    })
                })
                .collect();
            message["tool_calls"] = calls.into();
        }
    }
    if reply.reasoning.is_some() {
        message["reasoning_content"] = reasoning.into();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::mock_tool_call;

    fn message_of(reply: &Reply, sent: usize, more_words: usize) -> Value {
        message(reply, &deltas(reply)[..sent], more_words)
    }

    #[test]
    fn all_deltas_make_the_whole_reply() {
        let calls = vec![
            mock_tool_call(0, "docs", "tides", 1),
            mock_tool_call(1, "web", "tides", 1),
        ];
        let reply = Reply {
            reasoning: Some("Hm, well.".into()),
            body: ReplyBody::ToolCalls(calls.clone()),
        };
        let whole = message_of(&reply, deltas(&reply).len(), 0);
        assert_eq!(whole["content"], Value::Null);
        assert_eq!(whole["reasoning_content"], "Hm, well.");
        assert_eq!(whole["tool_calls"][1]["id"], calls[1].id.as_str());
        assert_eq!(whole["tool_calls"][0]["function"]["name"], "docs");
        assert_eq!(
            whole["tool_calls"][0]["function"]["arguments"],
            calls[0].arguments.as_str()
        );
        assert_eq!(
            whole["tool_calls"][1]["function"]["arguments"],
            calls[1].arguments.as_str()
        );
    }

    #[test]
    fn a_cut_reply_keeps_its_first_words() {
        let reply = Reply {
            reasoning: Some("Hm, well.".into()),
            body: ReplyBody::Text("a b c".into()),
        };
        // Two reasoning words, then one of the answer.
        let cut = message_of(&reply, 3, 0);
        assert_eq!(cut["reasoning_content"], "Hm, well.");
        assert_eq!(cut["content"], "a ");
        assert_eq!(message_of(&reply, 5, 2)["content"], "a b cmore more ");
    }
}
