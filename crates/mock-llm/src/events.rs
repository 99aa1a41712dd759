//! A reply as streamed events: the deltas it is made of, and the server-sent
//! events carrying them, batched by send time.

use std::io::Write;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use crate::MockLlmOptions;
use crate::answer::answer_chunks;
use crate::plan::{End, Plan};
use crate::reply::{Reply, ReplyBody};
use crate::tools::{MockToolCall, argument_fragments};

/// One streamed piece of a reply (the `delta` of one event).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delta<'a> {
    /// A word of reasoning: `{"reasoning_content":...}`.
    Reasoning(&'a str),
    /// A word of the answer: `{"content":...}`.
    Content(&'a str),
    /// The first fragment of a call: its index, id, type, name and empty arguments.
    CallStart {
        index: usize,
        call: &'a MockToolCall,
    },
    /// The next piece of a call's arguments.
    CallArguments { index: usize, fragment: &'a str },
}

/// The deltas of `reply`, in the order they are sent: reasoning words, then the
/// answer's words or each call (its start, then its argument fragments) in turn.
pub(crate) fn deltas(reply: &Reply) -> Vec<Delta<'_>> {
    let mut deltas: Vec<Delta> = reply
        .reasoning
        .iter()
        .flat_map(|text| answer_chunks(text))
        .map(Delta::Reasoning)
        .collect();
    match &reply.body {
        ReplyBody::Text(answer) => deltas.extend(answer_chunks(answer).map(Delta::Content)),
        ReplyBody::ToolCalls(calls) => {
            for (index, call) in calls.iter().enumerate() {
                deltas.push(Delta::CallStart { index, call });
                deltas.extend(
                    argument_fragments(&call.arguments)
                        .into_iter()
                        .map(|fragment| Delta::CallArguments { index, fragment }),
                );
            }
        }
    }
    deltas
}

/// What every event of a reply starts with: `data: {...,"delta":`, up to the
/// delta's JSON; [`OPEN_TAIL`] or [`write_finish`]'s tail closes it.
pub(crate) fn event_head(id: &str, created: u64, model: &str) -> String {
    let model_json = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
    format!(
        "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":{model_json},\"choices\":[{{\"index\":0,\"delta\":"
    )
}

/// Closes an event that is not the last one.
pub(crate) const OPEN_TAIL: &[u8] = b",\"finish_reason\":null}]}\n\n";

/// Writes the final event's delta and tail (after its [`event_head`]), and `[DONE]`.
pub(crate) fn write_finish(b: &mut Vec<u8>, finish_reason: &str) {
    b.extend_from_slice(b"{},\"finish_reason\":\"");
    b.extend_from_slice(finish_reason.as_bytes());
    b.extend_from_slice(b"\"}]}\n\ndata: [DONE]\n\n");
}

/// The streamed reply as body chunks, each with its send time (an offset from the
/// request's arrival): the role event at once, the first delta after `ttft`, one
/// more every `token_interval`, the finish with the last. Events due at the same
/// time share one chunk. Of the deltas, `plan` says how many go out, and whether
/// the finish follows them (anything else after them is not sent from here).
pub(crate) fn stream_batches(
    head: &str,
    reply: &Reply,
    plan: &Plan,
    options: MockLlmOptions,
) -> Vec<(Duration, Bytes)> {
    // Every event is `data: {head}{delta}{tail}\n\n`.
    let deltas = deltas(reply);
    let mut buffer = Vec::with_capacity((head.len() + 64) * (deltas.len() + 3));
    let mut events: Vec<(Duration, Range<usize>)> = Vec::new();
    let mut push = |buffer: &mut Vec<u8>, due: Duration, write: &dyn Fn(&mut Vec<u8>)| {
        let start = buffer.len();
        buffer.extend_from_slice(head.as_bytes());
        write(buffer);
        match events.last_mut() {
            Some((last_due, range)) if *last_due == due => range.end = buffer.len(),
            _ => events.push((due, start..buffer.len())),
        }
    };

    push(&mut buffer, Duration::ZERO, &|b| {
        b.extend_from_slice(b"{\"role\":\"assistant\"}");
        b.extend_from_slice(OPEN_TAIL);
    });
    let mut due = options.ttft;
    for (index, delta) in deltas.iter().take(plan.deltas).enumerate() {
        due = options.ttft + options.token_interval * (index as u32);
        push(&mut buffer, due, &|b| {
            write_delta(b, delta);
            b.extend_from_slice(OPEN_TAIL);
        });
    }
    if let End::Finish(finish) = plan.end {
        push(&mut buffer, due, &|b| write_finish(b, finish));
    }
    let buffer = Bytes::from(buffer);
    events
        .into_iter()
        .map(|(due, range)| (due, buffer.slice(range)))
        .collect()
}

/// Writes `delta` as the JSON of an event's `delta`. (Writing into a Vec cannot
/// fail, hence the ignored results.)
fn write_delta(b: &mut Vec<u8>, delta: &Delta) {
    fn string(b: &mut Vec<u8>, text: &str) {
        let _ = serde_json::to_writer(&mut *b, text);
    }
    match delta {
        Delta::Content(word) => {
            b.extend_from_slice(b"{\"content\":");
            string(b, word);
            b.push(b'}');
        }
        Delta::Reasoning(word) => {
            b.extend_from_slice(b"{\"reasoning_content\":");
            string(b, word);
            b.push(b'}');
        }
        Delta::CallStart { index, call } => {
            let _ = write!(b, "{{\"tool_calls\":[{{\"index\":{index},\"id\":");
            string(b, &call.id);
            b.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            string(b, &call.name);
            b.extend_from_slice(b",\"arguments\":\"\"}}]}");
        }
        Delta::CallArguments { index, fragment } => {
            let _ = write!(
                b,
                "{{\"tool_calls\":[{{\"index\":{index},\"function\":{{\"arguments\":"
            );
            string(b, fragment);
            b.extend_from_slice(b"}}]}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::fault::InjectedFault;
    use crate::tools::mock_tool_call;

    fn text(answer: &str) -> Reply {
        Reply {
            reasoning: None,
            body: ReplyBody::Text(answer.into()),
        }
    }

    fn batches(options: MockLlmOptions, fault: Option<InjectedFault>) -> Vec<(Duration, Bytes)> {
        let reply = text("a b c");
        let plan = Plan::new(&reply, 3, fault, None);
        stream_batches(&event_head("chatcmpl-1", 0, "m"), &reply, &plan, options)
    }

    /// The `choices[0]` of every event, and whether `[DONE]` ended them.
    fn parse_events(batches: &[(Duration, Bytes)]) -> (Vec<Value>, bool) {
        let body: String = batches
            .iter()
            .map(|(_, bytes)| std::str::from_utf8(bytes).unwrap())
            .collect();
        let data: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        let done = data.last() == Some(&"[DONE]");
        let events = data
            .iter()
            .filter(|d| **d != "[DONE]")
            .map(|d| serde_json::from_str::<Value>(d).unwrap()["choices"][0].clone())
            .collect();
        (events, done)
    }

    #[test]
    fn zero_pacing_sends_one_chunk() {
        let all = batches(MockLlmOptions::default(), None);
        assert_eq!(all.len(), 1);
        let text = std::str::from_utf8(&all[0].1).unwrap();
        assert_eq!(
            text.matches("data: ").count(),
            6,
            "role, 3 words, finish, [DONE]: {text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn paced_batches_follow_the_schedule() {
        let ms = Duration::from_millis;
        let options = MockLlmOptions {
            ttft: ms(100),
            token_interval: ms(10),
            ..MockLlmOptions::default()
        };
        let dues: Vec<Duration> = batches(options, None).iter().map(|b| b.0).collect();
        // Role at once; words at 100, 110, 120 (the finish shares the last word's chunk).
        assert_eq!(dues, [ms(0), ms(100), ms(110), ms(120)]);
        let stalled = batches(options, Some(InjectedFault::StallAfter(2)));
        assert_eq!(stalled.len(), 3);
        assert!(
            !std::str::from_utf8(&stalled[2].1)
                .unwrap()
                .contains("finish_reason\":\"stop")
        );
        assert_eq!(batches(options, Some(InjectedFault::Hang)).len(), 1);
    }

    #[test]
    fn a_cut_reply_ends_with_length_after_its_first_deltas() {
        let reply = text("a b c");
        let plan = Plan::new(&reply, 3, None, Some(2));
        let head = event_head("c", 0, "m");
        let all = stream_batches(&head, &reply, &plan, MockLlmOptions::default());
        let (events, done) = parse_events(&all);
        assert!(done);
        let words: Vec<&str> = events[1..3]
            .iter()
            .map(|e| e["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(words, ["a ", "b "]);
        assert_eq!(events.len(), 4, "role, 2 words, finish");
        assert_eq!(events[3]["finish_reason"], "length");
        // An endless answer's words are not sent from here: no finish.
        let plan = Plan::new(&reply, 3, Some(InjectedFault::Endless), None);
        let all = stream_batches(&head, &reply, &plan, MockLlmOptions::default());
        let (events, done) = parse_events(&all);
        assert_eq!((events.len(), done), (4, false));
    }

    #[test]
    fn tool_calls_stream_as_fragments_after_the_reasoning() {
        let calls = vec![
            mock_tool_call(0, "docs", "tides and moon", 1),
            mock_tool_call(1, "web", "tides and moon", 1),
        ];
        let reply = Reply {
            reasoning: Some("Thinking hard.".into()),
            body: ReplyBody::ToolCalls(calls.clone()),
        };
        let options = MockLlmOptions::default();
        let plan = Plan::new(&reply, super::deltas(&reply).len(), None, None);
        let head = event_head("c", 0, "m");
        let (events, done) = parse_events(&stream_batches(&head, &reply, &plan, options));
        assert!(done);
        let deltas: Vec<&Value> = events.iter().map(|e| &e["delta"]).collect();
        assert_eq!(deltas[1]["reasoning_content"], "Thinking ");
        assert_eq!(deltas[2]["reasoning_content"], "hard.");
        // The first fragment of each call names it; the rest carry arguments.
        let start = deltas[3]["tool_calls"][0].clone();
        assert_eq!(start["index"], 0);
        assert_eq!(start["id"], calls[0].id.as_str());
        assert_eq!(start["type"], "function");
        assert_eq!(start["function"]["name"], "docs");
        assert_eq!(start["function"]["arguments"], "");
        for (index, call) in calls.iter().enumerate() {
            let fragments: Vec<&str> = deltas[3..]
                .iter()
                .map(|d| &d["tool_calls"][0])
                .filter(|c| c["index"] == index)
                .map(|c| c["function"]["arguments"].as_str().unwrap())
                .collect();
            assert!(fragments.len() > 3, "{fragments:?}");
            assert_eq!(fragments.concat(), call.arguments);
        }
        assert_eq!(events.last().unwrap()["finish_reason"], "tool_calls");
        // Role, every delta, finish.
        assert_eq!(events.len(), super::deltas(&reply).len() + 2);
    }
}
