//! Calls that cannot be made, fail, or never end: each becomes an error the model
//! reads, and the turn goes on; dropping the turn abandons them.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// Sets its flag when dropped: tells a test that a call was abandoned.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A tool that never answers; `started` is set once a call runs, `dropped` once it
/// is abandoned.
fn hanging(started: &Arc<AtomicBool>, dropped: &Arc<AtomicBool>) -> Arc<dyn Tool> {
    let (started, dropped) = (started.clone(), dropped.clone());
    ScriptedTool::doing("birds", move |_| {
        let started = started.clone();
        let guard = DropFlag(dropped.clone());
        async move {
            let _guard = guard;
            started.store(true, Ordering::SeqCst);
            future::pending::<Result<ToolOutput, ToolError>>().await
        }
        .boxed()
    })
}

/// Runs one call the tool cannot make; answers the events and the result the
/// model was given.
async fn failed_call(
    call: (&str, &str, &str),
    tools: Vec<Arc<dyn Tool>>,
) -> (Vec<Result<AgentEvent, AgentError>>, PromptMessage) {
    let model = ScriptedModel::new([calling(&[call]), answer("anyway")]);
    let events = collect(start(&model, tools, 4)).await;
    let requests = model.requests();
    assert_eq!(requests.len(), 2, "the turn went on after the failed call");
    (events, requests[1].messages[2].clone())
}

fn untouchable(name: &str) -> Arc<dyn Tool> {
    ScriptedTool::doing(name, |arguments| panic!("called with {arguments}"))
}

#[tokio::test]
async fn a_tool_not_offered_is_an_error_the_model_reads() {
    let (events, result) = failed_call(
        ("c1", "nope", r#"{"query":"x"}"#),
        vec![untouchable("birds")],
    )
    .await;
    let problem = "there is no tool \"nope\" (the tools here: birds)";
    let arguments = json!({"query": "x"});
    assert_eq!(
        events,
        [
            tool_event("c1", "nope", ToolStatus::Working, arguments.clone(), None),
            tool_event("c1", "nope", ToolStatus::Error, arguments, Some(problem)),
            text("anyway"),
            finished(FinishReason::Stop),
        ]
    );
    assert_eq!(
        result,
        PromptMessage::ToolResult {
            call_id: "c1".into(),
            content: format!("error: {problem}"),
        }
    );
}

#[tokio::test]
async fn arguments_that_are_not_json_are_an_error_and_shown_as_empty() {
    let (events, result) =
        failed_call(("c1", "birds", r#"{"query":"#), vec![untouchable("birds")]).await;
    let Ok(AgentEvent::Event(TurnEvent::Tool(error))) = &events[1] else {
        panic!("{events:?}");
    };
    assert_eq!(error.status, ToolStatus::Error);
    let problem = error.output.clone().unwrap();
    assert!(
        problem.starts_with("invalid arguments: they are not JSON ("),
        "{problem}"
    );
    assert_eq!(
        events[0],
        tool_event("c1", "birds", ToolStatus::Working, json!({}), None)
    );
    assert_eq!(error.arguments, json!({}));
    assert_eq!(
        result,
        PromptMessage::ToolResult {
            call_id: "c1".into(),
            content: format!("error: {problem}"),
        }
    );
    assert_eq!(events.last(), Some(&finished(FinishReason::Stop)));
}

#[tokio::test]
async fn a_failing_tool_is_an_error_and_the_turn_goes_on() {
    let broken = ScriptedTool::doing("birds", |_| {
        future::ready(Err(ToolError::InvalidArguments(
            "\"query\" is missing".into(),
        )))
        .boxed()
    });
    let (events, result) = failed_call(("c1", "birds", "{}"), vec![broken]).await;
    let problem = "invalid arguments: \"query\" is missing";
    assert_eq!(
        events[1],
        tool_event("c1", "birds", ToolStatus::Error, json!({}), Some(problem))
    );
    assert_eq!(
        result,
        PromptMessage::ToolResult {
            call_id: "c1".into(),
            content: format!("error: {problem}"),
        }
    );
    assert_eq!(events.last(), Some(&finished(FinishReason::Stop)));
}

#[tokio::test(start_paused = true)]
async fn a_tool_that_hangs_times_out_into_an_error() {
    let (started, dropped) = (Arc::default(), Arc::default());
    let begun = Instant::now();
    let (events, result) = failed_call(
        ("c1", "birds", r#"{"query":"owls"}"#),
        vec![hanging(&started, &dropped)],
    )
    .await;
    let elapsed = begun.elapsed();
    assert!(
        elapsed >= TOOL_TIMEOUT && elapsed < TOOL_TIMEOUT + Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert!(started.load(Ordering::SeqCst));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the late call was abandoned"
    );
    let problem = "the tool did not answer within 10000 ms";
    assert_eq!(
        events[1],
        tool_event(
            "c1",
            "birds",
            ToolStatus::Error,
            json!({"query": "owls"}),
            Some(problem)
        )
    );
    assert_eq!(
        result,
        PromptMessage::ToolResult {
            call_id: "c1".into(),
            content: format!("error: {problem}"),
        }
    );
    assert_eq!(events.last(), Some(&finished(FinishReason::Stop)));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_abandons_running_calls() {
    let (started, dropped) = (Arc::<AtomicBool>::default(), Arc::<AtomicBool>::default());
    let model = ScriptedModel::new([calling(&[("c1", "birds", r#"{"query":"owls"}"#)])]);
    let mut stream = start(&model, vec![hanging(&started, &dropped)], 4);
    let first = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(
        matches!(&first, Ok(Some(Ok(AgentEvent::Event(TurnEvent::Tool(_)))))),
        "{first:?}"
    );
    // Polls the turn on until the call runs; the tool timeout is far off.
    let next = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(next.is_err(), "nothing more while the call runs: {next:?}");
    assert!(started.load(Ordering::SeqCst));
    assert!(!dropped.load(Ordering::SeqCst));
    drop(stream);
    assert!(dropped.load(Ordering::SeqCst));
}
