//! Tool calls, answers from tool results and reasoning over HTTP, read the way a
//! streaming client reads them: fragments assembled by index.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use parlor_mock_llm::{
    MockLlmOptions, MockLlmServer, expected_answer, expected_cited_answer, expected_reasoning,
    mock_tool_call, start, tool_call_arguments,
};
use serde_json::{Value, json};

/// Upper bound for every wait in these tests.
const BOUND: Duration = Duration::from_secs(10);

fn start_mock(options: MockLlmOptions) -> MockLlmServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    start(listener, options).unwrap()
}

fn with_tools() -> MockLlmOptions {
    MockLlmOptions {
        call_tools: true,
        ..MockLlmOptions::default()
    }
}

/// A tool that takes a query, as parlor offers a knowledge source.
fn search_tool(name: &str) -> Value {
    json!({"type": "function", "function": {
        "name": name,
        "description": "Searches some notes",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}, "top_k": {"type": "integer"}}, "required": ["query"]},
    }})
}

fn clock_tool() -> Value {
    json!({"type": "function", "function": {"name": "clock", "parameters": {"type": "object", "properties": {}}}})
}

async fn post(server: &MockLlmServer, body: &Value) -> reqwest::Response {
    let url = format!("{}/chat/completions", server.base_url());
    tokio::time::timeout(BOUND, reqwest::Client::new().post(url).json(body).send())
        .await
        .unwrap()
        .unwrap()
}

/// A streamed reply, assembled.
#[derive(Debug, Default)]
struct Streamed {
    content: Vec<String>,
    reasoning: Vec<String>,
    /// (id, name, argument fragments) by call index.
    calls: Vec<(String, String, Vec<String>)>,
    finish_reason: Option<String>,
    done: bool,
}

impl Streamed {
    fn arguments(&self, index: usize) -> String {
        self.calls[index].2.concat()
    }
}

async fn stream(server: &MockLlmServer, body: Value) -> Streamed {
    let mut body = body;
    body["stream"] = true.into();
    let response = post(server, &body).await;
    assert_eq!(response.status(), 200);
    let text = tokio::time::timeout(BOUND, response.text())
        .await
        .unwrap()
        .unwrap();
    let mut streamed = Streamed::default();
    for data in text.lines().filter_map(|line| line.strip_prefix("data: ")) {
        if data == "[DONE]" {
            streamed.done = true;
            continue;
        }
        let event: Value = serde_json::from_str(data).unwrap();
        let choice = &event["choices"][0];
        let delta = &choice["delta"];
        if let Some(word) = delta["content"].as_str() {
            streamed.content.push(word.to_owned());
        }
        if let Some(word) = delta["reasoning_content"].as_str() {
            streamed.reasoning.push(word.to_owned());
        }
        for fragment in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = fragment["index"].as_u64().unwrap() as usize;
            if let Some(id) = fragment["id"].as_str() {
                // A call's first fragment: it names the call, in index order.
                assert_eq!(index, streamed.calls.len(), "{data}");
                assert_eq!(fragment["type"], "function");
                let name = fragment["function"]["name"].as_str().unwrap();
                streamed
                    .calls
                    .push((id.to_owned(), name.to_owned(), Vec::new()));
            }
            let arguments = fragment["function"]["arguments"].as_str().unwrap();
            streamed.calls[index].2.push(arguments.to_owned());
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            streamed.finish_reason = Some(reason.to_owned());
        }
    }
    streamed
}

#[actix_web::test]
async fn calls_the_query_tools_then_answers_from_their_results() {
    let server = start_mock(with_tools());
    let question = "Why are there \"tides\"?";
    let tools = json!([search_tool("ocean"), clock_tool(), search_tool("moon")]);
    let calls = stream(
        &server,
        json!({"messages": [{"role": "user", "content": question}], "tools": tools}),
    )
    .await;
    assert!(calls.done && calls.content.is_empty(), "{calls:?}");
    assert_eq!(calls.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(calls.calls.len(), 2, "{calls:?}");
    for (index, name) in ["ocean", "moon"].into_iter().enumerate() {
        let expected = mock_tool_call(index, name, question, 1);
        let (id, called, fragments) = &calls.calls[index];
        assert_eq!((id, called), (&expected.id, &expected.name));
        assert_eq!(fragments[0], "", "the first fragment only names the call");
        assert!(fragments.len() > 3, "{fragments:?}");
        let arguments: Value = serde_json::from_str(&calls.arguments(index)).unwrap();
        assert_eq!(arguments, json!({"query": question, "top_k": 3}));
        assert_eq!(calls.arguments(index), tool_call_arguments(question));
    }

    // The results go back; the answer quotes them.
    let ocean = "Results in Ocean notes:\n\n[^ocean/1] Tides\nThe Moon pulls the sea. It bulges.\n\n\
                 [^ocean/2] Waves\nWind raises waves.";
    let moon = "[^moon/7] Orbit\nThe Moon circles the Earth every month.";
    let results = json!([
        {"role": "user", "content": question},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": calls.calls[0].0, "type": "function", "function": {"name": "ocean", "arguments": calls.arguments(0)}},
            {"id": calls.calls[1].0, "type": "function", "function": {"name": "moon", "arguments": calls.arguments(1)}}]},
        {"role": "tool", "tool_call_id": calls.calls[0].0, "content": ocean},
        {"role": "tool", "tool_call_id": calls.calls[1].0, "content": moon},
    ]);
    let answer = stream(&server, json!({"messages": results, "tools": tools})).await;
    assert!(answer.done && answer.calls.is_empty(), "{answer:?}");
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    let expected = expected_cited_answer(question, &[ocean, moon]);
    assert_eq!(
        expected,
        "Here is what I found. The Moon pulls the sea. [^ocean/1] Wind raises waves. [^ocean/2] \
         The Moon circles the Earth every month. [^moon/7]"
    );
    assert_eq!(answer.content.concat(), expected);
    assert!(
        answer.content.len() > 10,
        "word by word: {:?}",
        answer.content
    );
    server.stop().await;
}

#[actix_web::test]
async fn plain_answer_unchanged_unless_tools_are_asked_for() {
    let server = start_mock(with_tools());
    let messages = json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"},
                          {"role": "user", "content": "b c"}]);
    let plain = stream(&server, json!({"messages": messages})).await;
    assert_eq!(
        plain.content,
        ["You ", "said: ", "\"b ", "c\" ", "(turn ", "2)"]
    );
    assert_eq!(plain.finish_reason.as_deref(), Some("stop"));
    assert!(plain.calls.is_empty() && plain.reasoning.is_empty());
    // Only tools without a query: nothing to call.
    let clock = stream(
        &server,
        json!({"messages": messages, "tools": [clock_tool()]}),
    )
    .await;
    assert_eq!(clock.content.concat(), expected_answer("b c", 2));
    server.stop().await;

    // Without --tools, offered tools are not called.
    let server = start_mock(MockLlmOptions::default());
    let offered = stream(
        &server,
        json!({"messages": messages, "tools": [search_tool("ocean")]}),
    )
    .await;
    assert_eq!(offered.content.concat(), expected_answer("b c", 2));
    assert!(offered.calls.is_empty());
    server.stop().await;
}

#[actix_web::test]
async fn markers_call_unknown_tools_and_break_arguments_without_the_flag() {
    let server = start_mock(MockLlmOptions::default());
    let tools = json!([search_tool("ocean")]);
    let question = "[mock:tool=nope] [mock:tool=ocean] [mock:tool-args=broken] q";
    let reply = stream(
        &server,
        json!({"messages": [{"role": "user", "content": question}], "tools": tools}),
    )
    .await;
    let names: Vec<&str> = reply.calls.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(names, ["nope", "ocean"]);
    assert!(serde_json::from_str::<Value>(&reply.arguments(0)).is_err());
    assert_eq!(reply.arguments(1), tool_call_arguments(question));
    assert_eq!(reply.calls[0].0, mock_tool_call(0, "nope", question, 1).id);

    // No tool offered: markers asking for calls change nothing.
    let bare = stream(
        &server,
        json!({"messages": [{"role": "user", "content": question}]}),
    )
    .await;
    assert_eq!(bare.content.concat(), expected_answer(question, 1));

    // After the results, the markers are ignored: the answer comes.
    let after = stream(
        &server,
        json!({"messages": [{"role": "user", "content": question},
                            {"role": "tool", "tool_call_id": "x", "content": "error: unknown tool"}],
               "tools": tools}),
    )
    .await;
    assert!(after.calls.is_empty());
    assert_eq!(
        after.content.concat(),
        expected_cited_answer("", &["error: unknown tool"])
    );
    server.stop().await;
}

#[actix_web::test]
async fn reasoning_comes_first_and_apart_from_the_answer() {
    let server = start_mock(with_tools());
    let question = "[mock:reasoning] why";
    let plain = stream(
        &server,
        json!({"messages": [{"role": "user", "content": question}]}),
    )
    .await;
    assert!(plain.reasoning.len() >= 3, "{plain:?}");
    assert_eq!(plain.reasoning.concat(), expected_reasoning(question));
    assert_eq!(plain.content.concat(), expected_answer(question, 1));

    let calls = stream(
        &server,
        json!({"messages": [{"role": "user", "content": question}], "tools": [search_tool("ocean")]}),
    )
    .await;
    assert_eq!(calls.reasoning.concat(), expected_reasoning(question));
    assert_eq!(calls.calls.len(), 1);
    assert!(calls.content.is_empty());
    server.stop().await;
}

#[actix_web::test]
async fn non_streamed_tool_calls_and_reasoning() {
    let server = start_mock(with_tools());
    let question = "[mock:reasoning] q";
    let body = json!({"messages": [{"role": "user", "content": question}],
                      "tools": [search_tool("ocean")]});
    let value: Value = post(&server, &body).await.json().await.unwrap();
    let choice = &value["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["reasoning_content"], expected_reasoning(question));
    let expected = mock_tool_call(0, "ocean", question, 1);
    assert_eq!(
        message["tool_calls"],
        json!([{"id": expected.id, "type": "function",
                "function": {"name": "ocean", "arguments": expected.arguments}}])
    );
    server.stop().await;
}

#[actix_web::test]
async fn tool_calls_keep_the_pacing() {
    let ttft = Duration::from_millis(60);
    let server = start_mock(MockLlmOptions {
        ttft,
        token_interval: Duration::from_millis(2),
        call_tools: true,
    });
    let started = Instant::now();
    let reply = stream(
        &server,
        json!({"messages": [{"role": "user", "content": "q"}], "tools": [search_tool("ocean")]}),
    )
    .await;
    assert_eq!(reply.calls.len(), 1);
    let fragments = reply.calls[0].2.len() as u32;
    // The first fragment after ttft, each next one a token interval later.
    assert!(started.elapsed() >= ttft + Duration::from_millis(2) * (fragments - 1));
    server.stop().await;
}
