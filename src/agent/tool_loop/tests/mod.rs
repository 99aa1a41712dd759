//! The tool loop against a scripted model and scripted tools.

mod failed_calls;

use std::sync::{Arc, Mutex};

use futures_util::future::{self, FutureExt};
use futures_util::stream::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::agent::testing::{
    Script, ScriptedModel, ScriptedTool, answer, calling, collect, found, tool_calls,
};
use crate::agent::tools::{Tool, ToolError, ToolOutput};
use crate::conversation::{ChatMessage, ToolActivity, ToolStatus};

const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

fn question() -> PromptMessage {
    PromptMessage::Chat(ChatMessage::user("when do owls hunt?"))
}

fn start(model: &ScriptedModel, tools: Vec<Arc<dyn Tool>>, max_rounds: usize) -> AgentStream {
    let limits = ToolLimits {
        tool_timeout: TOOL_TIMEOUT,
        max_rounds,
    };
    ToolLoop::new(Arc::new(model.clone()), limits).answer(vec![question()], Toolbox::new(tools))
}

fn tool_event(
    call_id: &str,
    name: &str,
    status: ToolStatus,
    arguments: Value,
    output: Option<&str>,
) -> Result<AgentEvent, AgentError> {
    Ok(AgentEvent::Event(TurnEvent::Tool(ToolActivity {
        call_id: call_id.into(),
        name: name.into(),
        // Scripted tools are labelled with their name in capitals.
        label: if name == "nope" {
            name.into()
        } else {
            name.to_uppercase()
        },
        status,
        arguments,
        output: output.map(str::to_owned),
    })))
}

fn references(outputs: &[ToolOutput]) -> Result<AgentEvent, AgentError> {
    Ok(AgentEvent::Event(TurnEvent::References {
        sources: outputs
            .iter()
            .map(|output| output.references.clone().unwrap())
            .collect(),
    }))
}

fn text(text: &str) -> Result<AgentEvent, AgentError> {
    Ok(AgentEvent::Text(text.into()))
}

fn finished(reason: FinishReason) -> Result<AgentEvent, AgentError> {
    Ok(AgentEvent::Finished(reason))
}

/// A tool answering `output` after `delay`.
fn answering(name: &str, output: ToolOutput, delay: Duration) -> Arc<dyn Tool> {
    ScriptedTool::doing(name, move |_| {
        let output = output.clone();
        async move {
            tokio::time::sleep(delay).await;
            Ok(output)
        }
        .boxed()
    })
}

#[tokio::test]
async fn a_tool_call_is_shown_run_and_its_result_given_to_the_model() {
    let mut first: Script = vec![Ok(LlmEvent::Delta("Let me look. ".into()))];
    first.extend(calling(&[("c1", "birds", r#"{"query":"owls"}"#)]));
    let model = ScriptedModel::new([first, answer("At night [^p1].")]);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let output = found("birds", &["p1", "p2"]);
    let birds = ScriptedTool::doing("birds", {
        let (asked, output) = (asked.clone(), output.clone());
        move |arguments| {
            asked.lock().unwrap().push(arguments);
            future::ready(Ok(output.clone())).boxed()
        }
    });

    let events = collect(start(&model, vec![birds], 4)).await;

    let arguments = json!({"query": "owls"});
    assert_eq!(
        events,
        [
            text("Let me look. "),
            tool_event("c1", "birds", ToolStatus::Working, arguments.clone(), None),
            tool_event(
                "c1",
                "birds",
                ToolStatus::Done,
                arguments.clone(),
                Some(&output.text)
            ),
            references(std::slice::from_ref(&output)),
            text("At night [^p1]."),
            finished(FinishReason::Stop),
        ]
    );
    assert_eq!(*asked.lock().unwrap(), [arguments]);
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].messages, [question()]);
    assert_eq!(requests[0].tools.len(), 1);
    assert_eq!(requests[0].tools[0].name, "birds");
    assert_eq!(
        requests[1].messages,
        [
            question(),
            PromptMessage::ToolCalls {
                text: "Let me look. ".into(),
                calls: tool_calls(&[("c1", "birds", r#"{"query":"owls"}"#)]),
            },
            PromptMessage::ToolResult {
                call_id: "c1".into(),
                content: output.text.clone(),
            },
        ]
    );
    assert_eq!(requests[1].tools, requests[0].tools);
}

#[tokio::test(start_paused = true)]
async fn the_calls_of_a_round_run_at_once_and_report_as_they_end() {
    let model = ScriptedModel::new([
        calling(&[
            ("slow", "birds", r#"{"query":"owls"}"#),
            ("fast", "fish", r#"{"query":"trout"}"#),
        ]),
        answer("done"),
    ]);
    let birds_found = found("birds", &["b1"]);
    let fish_found = found("fish", &["f1"]);
    let tools = vec![
        answering("birds", birds_found.clone(), Duration::from_secs(5)),
        answering("fish", fish_found.clone(), Duration::from_secs(1)),
    ];

    let started = Instant::now();
    let events = collect(start(&model, tools, 4)).await;
    let elapsed = started.elapsed();

    // One after the other they would take 6 s.
    assert!(
        elapsed >= Duration::from_secs(5) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    let (owls, trout) = (json!({"query": "owls"}), json!({"query": "trout"}));
    assert_eq!(
        events,
        [
            tool_event("slow", "birds", ToolStatus::Working, owls.clone(), None),
            tool_event("fast", "fish", ToolStatus::Working, trout.clone(), None),
            tool_event(
                "fast",
                "fish",
                ToolStatus::Done,
                trout,
                Some(&fish_found.text)
            ),
            tool_event(
                "slow",
                "birds",
                ToolStatus::Done,
                owls,
                Some(&birds_found.text)
            ),
            // In the order of the calls, not of their ends.
            references(&[birds_found.clone(), fish_found.clone()]),
            text("done"),
            finished(FinishReason::Stop),
        ]
    );
    let results = &model.requests()[1].messages[2..];
    assert_eq!(
        results,
        [
            PromptMessage::ToolResult {
                call_id: "slow".into(),
                content: birds_found.text,
            },
            PromptMessage::ToolResult {
                call_id: "fast".into(),
                content: fish_found.text,
            },
        ]
    );
}

#[tokio::test]
async fn a_round_merges_its_references_per_source() {
    let model = ScriptedModel::new([
        calling(&[
            ("c1", "birds", r#"{"query":"owls"}"#),
            ("c2", "birds", r#"{"query":"barns"}"#),
        ]),
        answer("ok"),
    ]);
    let birds = ScriptedTool::doing("birds", |arguments| {
        let passages: &[&str] = if arguments["query"] == "owls" {
            &["p1", "p2"]
        } else {
            &["p2", "p3"]
        };
        future::ready(Ok(found("birds", passages))).boxed()
    });
    let events = collect(start(&model, vec![birds], 4)).await;
    let merged: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            Ok(AgentEvent::Event(TurnEvent::References { sources })) => Some(sources.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        merged,
        [vec![
            found("birds", &["p1", "p2", "p3"]).references.unwrap()
        ]]
    );
}

#[tokio::test]
async fn after_the_last_round_the_model_is_offered_no_tools() {
    let model = ScriptedModel::new([
        calling(&[("c1", "birds", r#"{"query":"a"}"#)]),
        calling(&[("c2", "birds", r#"{"query":"b"}"#)]),
        answer("enough"),
    ]);
    let tools = vec![answering("birds", found("birds", &["p1"]), Duration::ZERO)];
    let events = collect(start(&model, tools, 2)).await;
    assert_eq!(
        events[events.len() - 2..],
        [text("enough"), finished(FinishReason::Stop)]
    );
    let offered: Vec<usize> = model.requests().iter().map(|r| r.tools.len()).collect();
    assert_eq!(offered, [1, 1, 0]);
    // Each round's calls and results stay in the prompt.
    assert_eq!(model.requests()[2].messages.len(), 5);
}

#[tokio::test]
async fn calls_made_when_no_tools_were_offered_are_ignored() {
    let mut last: Script = vec![Ok(LlmEvent::Delta("my answer".into()))];
    last.extend(calling(&[("c2", "birds", r#"{"query":"b"}"#)]));
    let model = ScriptedModel::new([calling(&[("c1", "birds", r#"{"query":"a"}"#)]), last]);
    let calls = Arc::new(Mutex::new(0));
    let birds = ScriptedTool::doing("birds", {
        let calls = calls.clone();
        move |_| {
            *calls.lock().unwrap() += 1;
            future::ready(Ok(found("birds", &["p1"]))).boxed()
        }
    });
    let events = collect(start(&model, vec![birds], 1)).await;
    assert_eq!(*calls.lock().unwrap(), 1);
    assert_eq!(model.requests().len(), 2);
    assert_eq!(
        events[events.len() - 2..],
        [text("my answer"), finished(FinishReason::Stop)]
    );
}

#[tokio::test]
async fn without_tools_the_model_is_asked_once_with_none() {
    let model = ScriptedModel::new([answer("plain")]);
    let events = collect(start(&model, Vec::new(), 4)).await;
    assert_eq!(events, [text("plain"), finished(FinishReason::Stop)]);
    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].tools.is_empty());
}

#[tokio::test]
async fn reasoning_passes_as_an_event_never_as_text() {
    let model = ScriptedModel::new([vec![
        Ok(LlmEvent::Reasoning("owls are nocturnal".into())),
        Ok(LlmEvent::Delta("At night.".into())),
        Ok(LlmEvent::Finished(FinishReason::Stop)),
    ]]);
    let events = collect(start(&model, Vec::new(), 4)).await;
    assert_eq!(
        events,
        [
            Ok(AgentEvent::Event(TurnEvent::Reasoning {
                text: "owls are nocturnal".into()
            })),
            text("At night."),
            finished(FinishReason::Stop),
        ]
    );
}

#[tokio::test]
async fn the_finish_is_the_last_model_calls() {
    let model = ScriptedModel::new([
        calling(&[("c1", "birds", r#"{"query":"a"}"#)]),
        vec![
            Ok(LlmEvent::Delta("cut".into())),
            Ok(LlmEvent::Finished(FinishReason::Length)),
        ],
    ]);
    let tools = vec![answering("birds", found("birds", &["p1"]), Duration::ZERO)];
    let events = collect(start(&model, tools, 4)).await;
    assert_eq!(events.last(), Some(&finished(FinishReason::Length)));
    let finishes = events
        .iter()
        .filter(|event| matches!(event, Ok(AgentEvent::Finished(_))))
        .count();
    assert_eq!(finishes, 1);
}

#[tokio::test]
async fn a_model_error_ends_the_turn() {
    let model = ScriptedModel::new([
        calling(&[("c1", "birds", r#"{"query":"a"}"#)]),
        vec![
            Ok(LlmEvent::Delta("partial".into())),
            Err(AgentError::Upstream("boom".into())),
            Ok(LlmEvent::Finished(FinishReason::Stop)),
        ],
    ]);
    let tools = vec![answering("birds", found("birds", &["p1"]), Duration::ZERO)];
    let events = collect(start(&model, tools, 4)).await;
    assert_eq!(
        events[events.len() - 2..],
        [text("partial"), Err(AgentError::Upstream("boom".into()))]
    );
}

#[tokio::test]
async fn a_model_stream_that_stops_short_is_an_error() {
    let model = ScriptedModel::new([vec![Ok(LlmEvent::Delta("half".into()))]]);
    let events = collect(start(&model, Vec::new(), 4)).await;
    assert!(
        matches!(
            &events[..],
            [Ok(AgentEvent::Text(_)), Err(AgentError::Upstream(_))]
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_event_carries_the_start_of_a_long_output_and_the_model_all_of_it() {
    let long = ToolOutput {
        text: "é".repeat(3_000),
        references: None,
    };
    let model = ScriptedModel::new([
        calling(&[("c1", "birds", r#"{"query":"a"}"#)]),
        answer("ok"),
    ]);
    let tools = vec![answering("birds", long.clone(), Duration::ZERO)];
    let events = collect(start(&model, tools, 4)).await;
    let Ok(AgentEvent::Event(TurnEvent::Tool(done))) = &events[1] else {
        panic!("{events:?}");
    };
    let shown = done.output.as_deref().unwrap();
    assert_eq!(shown.len(), ToolActivity::MAX_OUTPUT_BYTES);
    assert!(long.text.starts_with(shown));
    // No references: the events go straight from the tool to the answer.
    assert_eq!(events[2], text("ok"));
    assert_eq!(
        model.requests()[1].messages[2],
        PromptMessage::ToolResult {
            call_id: "c1".into(),
            content: long.text,
        }
    );
}
