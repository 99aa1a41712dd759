//! The knowledge agent seen from outside (docs/protocol.md#knowledge-agent): a real
//! `parlor serve` (or gateway and worker over RabbitMQ) searching real knowledge
//! sources, driven by the mock model in its tool-calling mode.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::deployment::Deployment;
use common::sse::{Event, post_chat};
use common::{Client, Process, Turn, expected_answer};
use parlor::conversation::{ErrorCode, ToolStatus};
use parlor::protocol::ServerFrame;
use serde_json::{Value, json};

/// The two sources every test here configures, over the retrieval test corpus.
const SOURCES: [&str; 2] = ["search_corpus", "search_hobbies"];

const QUESTION: &str = "How warm are the glimmerfin ponds kept?";

/// A configuration file naming two sources: the corpus, and its `hobbies` folder.
fn sources_config() -> tempfile::TempDir {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/knowledge/corpus");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[[knowledge.sources]]
id = "search_corpus"
name = "Test corpus"
description = "Farms, railways, libraries and tea"
type = "literature"
path = "{corpus}"

[[knowledge.sources]]
id = "search_hobbies"
name = "Hobbies"
description = "Notes on hobbies"
type = "knowledge_base"
path = "{corpus}/hobbies"
"#,
        corpus = corpus.display()
    );
    std::fs::write(dir.path().join("parlor.toml"), config).unwrap();
    dir
}

fn config_path(dir: &tempfile::TempDir) -> String {
    dir.path().join("parlor.toml").display().to_string()
}

/// The mock model, calling the tools it is offered.
fn tool_calling_model() -> Process {
    Process::start(&["mock-llm", "--bind", "127.0.0.1:0", "--tools"], &[])
}

fn serve_with_sources(model: &Process, config: &tempfile::TempDir) -> Process {
    let env = [
        ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
    ];
    Process::start(&["--config", &config_path(config), "serve"], &env)
}

/// What a turn that searched shows: each call `working` then `done`, then one
/// `references` frame, all before the first chunk; answers the references' passage ids.
fn check_searched(turn: &Turn) -> HashSet<String> {
    let mut working = HashSet::new();
    let mut done = HashSet::new();
    let mut passages = HashSet::new();
    for event in &turn.events {
        match event {
            ServerFrame::Tool { activity, .. } => {
                assert!(SOURCES.contains(&activity.name.as_str()), "{activity:?}");
                match activity.status {
                    ToolStatus::Working => {
                        assert_eq!(activity.arguments["query"], QUESTION);
                        assert!(activity.output.is_none());
                        assert!(working.insert(activity.call_id.clone()));
                    }
                    ToolStatus::Done => {
                        assert!(working.contains(&activity.call_id), "done before working");
                        assert!(!activity.output.as_deref().unwrap().is_empty());
                        assert!(done.insert(activity.call_id.clone()));
                    }
                    ToolStatus::Error => panic!("a search failed: {activity:?}"),
                }
            }
            ServerFrame::References { sources, .. } => {
                assert_eq!(done, working, "references come after every call ended");
                for source in sources {
                    assert!(SOURCES.contains(&source.id.as_str()));
                    passages.extend(source.items.iter().map(|item| item.id.clone()));
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(working.len(), SOURCES.len(), "one call per source");
    assert!(!passages.is_empty(), "the searches found passages");
    passages
}

/// The `[^id]` citations in an answer.
fn citations(answer: &str) -> HashSet<String> {
    answer
        .split("[^")
        .skip(1)
        .filter_map(|rest| rest.split_once(']').map(|(id, _)| id.to_owned()))
        .collect()
}

async fn ask_and_check(server: &Process) {
    let mut client = Client::connect(server).await;
    let turn = client.chat(QUESTION).await;
    assert_eq!(turn.ending, "stop", "{turn:?}");
    let passages = check_searched(&turn);
    let cited = citations(&turn.answer);
    assert!(!cited.is_empty(), "the answer cites: {}", turn.answer);
    assert!(cited.is_subset(&passages), "{cited:?} ⊄ {passages:?}");
    assert!(
        turn.answer.contains("18 and 22 degrees"),
        "the answer is made from the passage: {}",
        turn.answer
    );
}

#[tokio::test]
async fn a_question_searches_the_sources_and_the_answer_cites_them() {
    let model = tool_calling_model();
    let config = sources_config();
    let server = serve_with_sources(&model, &config);
    ask_and_check(&server).await;
}

#[tokio::test]
async fn the_sources_are_listed_and_a_turn_chooses_among_them() {
    let model = tool_calling_model();
    let config = sources_config();
    let server = serve_with_sources(&model, &config);

    let listed: Value = reqwest::get(server.http("/get_data_source"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed,
        json!([
            {"id": "search_corpus", "name": "Test corpus",
             "description": "Farms, railways, libraries and tea", "type": "literature"},
            {"id": "search_hobbies", "name": "Hobbies",
             "description": "Notes on hobbies", "type": "knowledge_base"},
        ])
    );

    let mut client = Client::connect(&server).await;
    // No tools: the model answers alone, plainly.
    client
        .send_json(json!({"type": "message", "text": "hello", "tools": []}))
        .await;
    let turn_id = client.expect_accepted().await;
    let turn = client.read_turn(turn_id).await;
    assert!(turn.events.is_empty(), "{:?}", turn.events);
    assert_eq!(turn.answer, expected_answer("hello", 1));

    // One tool: only it is called.
    client
        .send_json(json!({"type": "message", "text": QUESTION, "tools": ["search_hobbies"]}))
        .await;
    let turn_id = client.expect_accepted().await;
    let turn = client.read_turn(turn_id).await;
    let called: HashSet<&str> = turn
        .events
        .iter()
        .filter_map(|event| match event {
            ServerFrame::Tool { activity, .. } => Some(activity.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(called, HashSet::from(["search_hobbies"]));

    // An unknown one: refused, named, and the session goes on.
    client
        .send_json(json!({"type": "message", "text": "hi", "tools": ["search_corpus", "nope"]}))
        .await;
    match client.next_frame().await {
        ServerFrame::Error { turn_id, error } => {
            assert_eq!(turn_id, None);
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert!(error.message.contains("\"nope\""), "{}", error.message);
        }
        other => panic!("expected bad_request, got {other:?}"),
    }
    let body = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "attachment": {"tools": ["nope"]},
    });
    let (status, _, text) = post_chat(&server.http("/chat"), body).await;
    assert_eq!(status, 400);
    assert!(text.contains("nope"), "{text}");
    assert_eq!(client.chat("still here").await.ending, "stop");
}

#[tokio::test]
async fn a_bad_tool_call_is_an_error_event_and_the_turn_goes_on() {
    let model = tool_calling_model();
    let config = sources_config();
    let server = serve_with_sources(&model, &config);
    let mut client = Client::connect(&server).await;

    for text in ["[mock:tool=no_such_tool] hi", "[mock:tool-args=broken] hi"] {
        let turn = client.chat(text).await;
        assert_eq!(turn.ending, "stop", "{turn:?}");
        let failed = turn.events.iter().any(|event| {
            matches!(event, ServerFrame::Tool { activity, .. }
                if activity.status == ToolStatus::Error && activity.output.is_some())
        });
        assert!(failed, "{text}: {:?}", turn.events);
        assert!(!turn.answer.is_empty());
    }
}

#[tokio::test]
async fn reasoning_is_shown_apart_from_the_answer() {
    let model = tool_calling_model();
    let config = sources_config();
    let server = serve_with_sources(&model, &config);
    let mut client = Client::connect(&server).await;

    client
        .send_json(json!({"type": "message", "text": "[mock:reasoning] hi", "tools": []}))
        .await;
    let turn_id = client.expect_accepted().await;
    let turn = client.read_turn(turn_id).await;
    let thinking: String = turn
        .events
        .iter()
        .map(|event| match event {
            ServerFrame::Reasoning { text, .. } => text.as_str(),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(
        thinking,
        parlor_mock_llm::expected_reasoning("[mock:reasoning] hi")
    );
    assert_eq!(turn.answer, expected_answer("[mock:reasoning] hi", 1));
    assert!(!turn.answer.contains(&thinking));
}

/// The type 5 and type 6 events of a `POST /chat` answer, and its text.
fn seed_parts(events: &[Event]) -> (Vec<Value>, Vec<Value>, String) {
    let (mut statuses, mut references, mut text) = (Vec::new(), Vec::new(), String::new());
    for event in events.iter().filter(|event| event.name.is_none()) {
        let message = event.data["message"].as_str().unwrap();
        match event.data["type"].as_u64().unwrap() {
            4 => text.push_str(message),
            5 => statuses.extend(parse_list(message)),
            6 => references.extend(parse_list(message)),
            other => panic!("unexpected type {other}"),
        }
    }
    (statuses, references, text)
}

fn parse_list(message: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(message).expect("the message is JSON");
    list.as_array().expect("a list").clone()
}

async fn post_and_check(server: &Process) {
    let body = json!({
        "userId": "u1",
        "messages": [{"role": "user", "content": QUESTION}],
        "attachment": {"tools": SOURCES},
    });
    let (status, events, _) = post_chat(&server.http("/chat"), body).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap().name.as_deref(), Some("end"));
    let (statuses, references, text) = seed_parts(&events);

    let working: Vec<&Value> = statuses
        .iter()
        .filter(|s| s["status"] == "Working")
        .collect();
    let done: Vec<&Value> = statuses.iter().filter(|s| s["status"] == "Done").collect();
    assert_eq!((working.len(), done.len()), (2, 2), "{statuses:?}");
    for status in &working {
        assert_eq!(status["arguments"]["query"], QUESTION);
        assert!(SOURCES.contains(&status["func_name"].as_str().unwrap()));
        assert!(
            status["display"]
                .as_str()
                .unwrap()
                .contains(status["name"].as_str().unwrap())
        );
    }
    for status in &done {
        assert!(!status["func_output"].as_str().unwrap().is_empty());
        assert!(working.iter().any(|w| w["id"] == status["id"]));
    }
    let mut passages = HashSet::new();
    for source in &references {
        assert!(SOURCES.contains(&source["id"].as_str().unwrap()));
        for item in source["data"].as_array().unwrap() {
            assert!(item["title"].is_string() && item["match_sentence"].is_string());
            assert!(item["score"].is_number());
            passages.insert(item["id"].as_str().unwrap().to_owned());
        }
    }
    assert!(citations(&text).is_subset(&passages) && !citations(&text).is_empty());
}

#[tokio::test]
async fn post_chat_carries_tool_status_and_references_as_the_original_frontend_reads_them() {
    let model = tool_calling_model();
    let config = sources_config();
    let server = serve_with_sources(&model, &config);
    post_and_check(&server).await;
}

#[tokio::test]
async fn through_rabbitmq_the_gateway_and_worker_carry_the_same() {
    let config = sources_config();
    let (deployment, _cleanup) = Deployment::new(tool_calling_model(), &[]);
    let args = ["--config", &config_path(&config)];
    let _worker = deployment.worker_in(&args);
    let gateway = deployment.gateway_in(&args);
    ask_and_check(&gateway).await;
    post_and_check(&gateway).await;
}

#[tokio::test]
async fn the_demo_answers_questions_about_parlor_from_its_own_docs() {
    // No model URL, no sources: the built-in demo model and documentation.
    let server = Process::start(
        &["serve"],
        &[("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned())],
    );
    let mut client = Client::connect(&server).await;
    let turn = client.chat("How do I run the load tester?").await;
    assert_eq!(turn.ending, "stop", "{turn:?}");
    let referenced: HashSet<String> = turn
        .events
        .iter()
        .filter_map(|event| match event {
            ServerFrame::References { sources, .. } => Some(sources),
            _ => None,
        })
        .flatten()
        .flat_map(|source| source.items.iter().map(|item| item.id.clone()))
        .collect();
    assert!(!referenced.is_empty(), "{:?}", turn.events);
    let cited = citations(&turn.answer);
    assert!(
        !cited.is_empty() && cited.is_subset(&referenced),
        "{}",
        turn.answer
    );
}
