//! MCP tools seen from outside (docs/mcp.md): a real `parlor serve` (or gateway and
//! worker over RabbitMQ) connected to the test MCP server of
//! `examples/mcp_test_server.rs` over streamable HTTP and over stdio, driven by the
//! mock model calling the tools its `[mock:tool=NAME]` markers name.

mod common;

use std::time::Duration;

use common::deployment::{Deployment, wait_for_readiness};
use common::mcp::{
    McpHttpServer, config_file, config_path, http_server_table, is_running, serve_with_config,
    stdio_server_table, wait_for_pid,
};
use common::sse::post_chat;
use common::{Client, Process, Turn, WAIT, mock_llm};
use parlor::conversation::{ErrorCode, ToolActivity, ToolStatus};
use parlor::protocol::ServerFrame;
use serde_json::{Value, json};

/// The answer of the test server's `lookup` to `query`.
fn lookup_answer(query: &str) -> String {
    format!("Ticket 42 is about {query:?} and it is open.")
}

/// The `tool` frames of a turn, in order.
fn activities(turn: &Turn) -> Vec<&ToolActivity> {
    turn.events
        .iter()
        .filter_map(|event| match event {
            ServerFrame::Tool { activity, .. } => Some(activity),
            _ => None,
        })
        .collect()
}

/// The frame that ended the call to `tool` in `turn`.
fn ended<'a>(turn: &'a Turn, tool: &str) -> &'a ToolActivity {
    let calls = activities(turn);
    let mut of_tool = calls.iter().filter(|activity| activity.name == tool);
    let working = of_tool
        .next()
        .unwrap_or_else(|| panic!("{tool} was not called: {turn:?}"));
    assert_eq!(working.status, ToolStatus::Working);
    of_tool
        .next()
        .unwrap_or_else(|| panic!("{tool} never ended: {turn:?}"))
}

/// Waits until `/readyz` shows every MCP server named in `names` connected.
async fn wait_for_connected(process: &Process, names: &[&str]) -> Value {
    wait_for_servers(process, names, "connected").await
}

/// Waits until `/readyz` shows each server of `names` in `state`.
async fn wait_for_servers(process: &Process, names: &[&str], state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body: Value = reqwest::get(process.http("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed = body["mcp_servers"].as_array().cloned().unwrap_or_default();
        let all = names.iter().all(|name| {
            listed
                .iter()
                .any(|server| server["name"] == *name && server["state"] == state)
        });
        if all {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "MCP servers {names:?} never {state}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_stats(server: &Process) -> Value {
    reqwest::Client::new()
        .get(server.http("/admin/stats"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn tools(server: &Process) -> Vec<String> {
    let listed: Value = reqwest::get(server.http("/tools"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tools_of_http_and_stdio_servers_answer_on_the_websocket_and_post_chat() {
    let model = mock_llm(0, 0);
    let http = McpHttpServer::start();
    let pids = tempfile::tempdir().unwrap();
    // The stdio server speaks only the first MCP version, as a server built on an
    // old SDK does; the HTTP one the newest it knows.
    let config = config_file(&format!(
        "{}{}",
        http_server_table("tickets", &http.url()),
        stdio_server_table("old", Some("2024-11-05"), &pids.path().join("old.pid")),
    ));
    let server = serve_with_config(&model, &config, &[("PARLOR_ADMIN__TOKEN", "admin-secret")]);
    wait_for_connected(&server, &["tickets", "old"]).await;

    let stats = admin_stats(&server).await;
    let servers = stats["mcp_servers"].as_array().unwrap();
    let old = servers.iter().find(|s| s["name"] == "old").unwrap();
    assert_eq!(old["protocol_version"], "2024-11-05", "{stats}");
    assert_eq!(old["transport"], "stdio");
    let tickets = servers.iter().find(|s| s["name"] == "tickets").unwrap();
    assert!(
        tickets["protocol_version"].as_str().unwrap() > "2025",
        "{stats}"
    );
    assert_eq!(tickets["tools"], 5);

    // GET /tools: the built-in source, then each server's tools under its name.
    let listed: Value = reqwest::get(server.http("/tools"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lookup = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["name"] == "tickets__lookup")
        .expect("tickets__lookup is listed");
    assert_eq!(lookup["kind"], "mcp");
    assert_eq!(lookup["server"], "tickets");
    assert_eq!(
        lookup["description"],
        "Looks up a support ticket by what it is about."
    );
    let names = tools(&server).await;
    assert_eq!(names[0], "parlor_docs");
    assert!(names.contains(&"old__picture".to_owned()), "{names:?}");
    assert_eq!(names.len(), 11, "{names:?}");

    // A WebSocket turn calling a tool of each server.
    let question = "[mock:tool=tickets__lookup] [mock:tool=old__picture] printer";
    let mut client = Client::connect(&server).await;
    let turn = client.chat(question).await;
    assert_eq!(turn.ending, "stop", "{turn:?}");
    let looked_up = ended(&turn, "tickets__lookup");
    assert_eq!(looked_up.status, ToolStatus::Done);
    assert_eq!(looked_up.label, "tickets: lookup");
    assert_eq!(looked_up.arguments["query"], question);
    assert_eq!(
        looked_up.output.as_deref(),
        Some(lookup_answer(question).as_str())
    );
    let picture = ended(&turn, "old__picture");
    assert_eq!(picture.status, ToolStatus::Done);
    let output = picture.output.as_deref().unwrap();
    assert!(
        output.ends_with("\n[an image (image/png), not shown]"),
        "{output}"
    );
    assert!(!turn.answer.is_empty());

    // POST /chat: the same calls as type 5 events, as the original frontend reads them.
    let question = "[mock:tool=old__lookup] toner";
    let body = json!({"messages": [{"role": "user", "content": question}]});
    let (status, events, _) = post_chat(&server.http("/chat"), body).await;
    assert_eq!(status, 200);
    let steps: Vec<Value> = events
        .iter()
        .filter(|event| event.data["type"] == 5)
        .map(|event| serde_json::from_str::<Value>(event.data["message"].as_str().unwrap()))
        .map(|parsed| parsed.unwrap()[0].clone())
        .collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0]["status"], "Working");
    assert_eq!(steps[0]["func_name"], "old__lookup");
    assert_eq!(steps[1]["status"], "Done");
    assert_eq!(steps[1]["func_output"], lookup_answer(question));
    assert_eq!(events.last().unwrap().name.as_deref(), Some("end"));
}

#[tokio::test]
async fn a_failing_tool_and_a_hanging_tool_are_errors_the_model_sees() {
    let model = mock_llm(0, 0);
    let http = McpHttpServer::start();
    let pids = tempfile::tempdir().unwrap();
    let config = config_file(&format!(
        "{}{}",
        http_server_table("tickets", &http.url()),
        stdio_server_table("local", None, &pids.path().join("local.pid")),
    ));
    let server = serve_with_config(
        &model,
        &config,
        &[("PARLOR_AGENT__TOOL_TIMEOUT_MS", "1000")],
    );
    wait_for_connected(&server, &["tickets", "local"]).await;

    let mut client = Client::connect(&server).await;
    let started = tokio::time::Instant::now();
    let turn = client
        .chat("[mock:tool=tickets__fail] [mock:tool=tickets__hang] [mock:tool=local__hang] x")
        .await;
    assert_eq!(
        turn.ending, "stop",
        "the turn goes on to an answer: {turn:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the hang was cut at 1 s"
    );
    let failed = ended(&turn, "tickets__fail");
    assert_eq!(failed.status, ToolStatus::Error);
    assert_eq!(
        failed.output.as_deref(),
        Some("the ticket system is read-only")
    );
    for hung in ["tickets__hang", "local__hang"] {
        let hung = ended(&turn, hung);
        assert_eq!(hung.status, ToolStatus::Error);
        assert_eq!(
            hung.output.as_deref(),
            Some("the tool did not answer within 1000 ms")
        );
    }
    // The servers were told the calls are cancelled (the stdio one says so on
    // its stderr, which parlor logs).
    http.wait_for_log_line("hang: cancelled by the client")
        .await;
    server
        .wait_for_log_line("hang: cancelled by the client")
        .await;

    // The session and the servers go on.
    let turn = client.chat("[mock:tool=tickets__lookup] again").await;
    assert_eq!(ended(&turn, "tickets__lookup").status, ToolStatus::Done);
}

#[tokio::test]
async fn killed_servers_are_reconnected_and_their_tools_work_again() {
    let model = mock_llm(0, 0);
    let mut http = McpHttpServer::start();
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("local.pid");
    let config = config_file(&format!(
        "{}{}",
        http_server_table("tickets", &http.url()),
        stdio_server_table("local", None, &pid_file),
    ));
    let server = serve_with_config(
        &model,
        &config,
        &[("PARLOR_AGENT__TOOL_TIMEOUT_MS", "3000")],
    );
    wait_for_connected(&server, &["tickets", "local"]).await;
    let first_pid = wait_for_pid(&pid_file, None).await;
    let mut client = Client::connect(&server).await;

    // The stdio server dies: parlor starts it again.
    std::process::Command::new("kill")
        .args(["-KILL", &first_pid.to_string()])
        .status()
        .unwrap();
    let second_pid = wait_for_pid(&pid_file, Some(first_pid)).await;
    assert!(is_running(second_pid));
    wait_for_connected(&server, &["local"]).await;
    let turn = client.chat("[mock:tool=local__lookup] after a crash").await;
    assert_eq!(
        ended(&turn, "local__lookup").status,
        ToolStatus::Done,
        "{turn:?}"
    );

    // The HTTP server dies: its tool fails plainly while it is away...
    let address = http.address.clone();
    http.kill();
    let turn = client.chat("[mock:tool=tickets__lookup] while away").await;
    assert_eq!(turn.ending, "stop", "{turn:?}");
    let away = ended(&turn, "tickets__lookup");
    assert_eq!(away.status, ToolStatus::Error, "{turn:?}");
    let output = away.output.as_deref().unwrap();
    assert!(
        !output.contains("127.0.0.1"),
        "no address reaches the user: {output}"
    );
    // ...and works again once it is back.
    let _http = McpHttpServer::start_at(&address);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let turn = client.chat("[mock:tool=tickets__lookup] back").await;
        if ended(&turn, "tickets__lookup").status == ToolStatus::Done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_connected(&server, &["tickets", "local"]).await;
}

#[tokio::test]
async fn a_server_that_changes_its_tools_is_listed_again() {
    let model = mock_llm(0, 0);
    let http = McpHttpServer::start();
    let config = config_file(&http_server_table("tickets", &http.url()));
    let server = serve_with_config(&model, &config, &[]);
    wait_for_connected(&server, &["tickets"]).await;
    assert!(!tools(&server).await.contains(&"tickets__extra".to_owned()));

    let mut client = Client::connect(&server).await;
    let turn = client.chat("[mock:tool=tickets__add_tool] more").await;
    assert_eq!(ended(&turn, "tickets__add_tool").status, ToolStatus::Done);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !tools(&server).await.contains(&"tickets__extra".to_owned()) {
        assert!(tokio::time::Instant::now() < deadline, "never listed again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let turn = client.chat("[mock:tool=tickets__extra] new").await;
    let extra = ended(&turn, "tickets__extra");
    assert_eq!(extra.status, ToolStatus::Done);
    assert_eq!(
        extra.output.as_deref(),
        Some("extra: [mock:tool=tickets__extra] new")
    );
}

#[tokio::test]
async fn a_turn_chooses_mcp_tools_by_name_and_unknown_servers_are_refused() {
    let model = mock_llm(0, 0);
    let http = McpHttpServer::start();
    let config = config_file(&http_server_table("tickets", &http.url()));
    let server = serve_with_config(&model, &config, &[]);
    wait_for_connected(&server, &["tickets"]).await;
    let mut client = Client::connect(&server).await;

    // Chosen: offered. Not chosen: the model's call to it is an error it sees.
    client
        .send_json(json!({"type": "message", "text": "[mock:tool=tickets__lookup] [mock:tool=tickets__fail] q",
                          "tools": ["tickets__lookup"]}))
        .await;
    let turn_id = client.expect_accepted().await;
    let turn = client.read_turn(turn_id).await;
    assert_eq!(ended(&turn, "tickets__lookup").status, ToolStatus::Done);
    let not_offered = ended(&turn, "tickets__fail");
    assert_eq!(not_offered.status, ToolStatus::Error);
    assert!(
        not_offered
            .output
            .as_deref()
            .unwrap()
            .contains("there is no tool"),
        "{not_offered:?}"
    );

    // A server that is not configured: refused before the turn starts.
    client
        .send_json(json!({"type": "message", "text": "q", "tools": ["files__read"]}))
        .await;
    match client.next_frame().await {
        ServerFrame::Error { turn_id, error } => {
            assert_eq!(turn_id, None);
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert!(
                error.message.contains("tickets__<tool>"),
                "{}",
                error.message
            );
        }
        other => panic!("expected bad_request, got {other:?}"),
    }
    let body = json!({
        "messages": [{"role": "user", "content": "[mock:tool=tickets__lookup] q"}],
        "attachment": {"tools": ["tickets__lookup"]},
    });
    let (status, events, _) = post_chat(&server.http("/chat"), body).await;
    assert_eq!(status, 200);
    assert!(events.iter().any(|event| event.data["type"] == 5));
}

async fn validate(server: &Process, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.http("/validate_mcp"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn validate_mcp_lists_the_tools_of_an_allowed_host_only() {
    let model = mock_llm(0, 0);
    let http = McpHttpServer::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/mcp", closed.local_addr().unwrap());
    drop(closed);

    // By default no host is allowed, and the answer says how to allow one.
    let config = config_file("");
    let server = serve_with_config(&model, &config, &[]);
    let (status, body) = validate(&server, json!({"url": http.url()})).await;
    assert_eq!(status, 403);
    assert_eq!(body["status"], "error");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("mcp.validate_allowed_hosts"), "{message}");
    drop(server);

    let config = config_file("[mcp]\nvalidate_allowed_hosts = [\"127.0.0.1\"]\n");
    let server = serve_with_config(&model, &config, &[]);
    let (status, body) = validate(&server, json!({"url": http.url()})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let names: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lookup", "fail", "hang", "picture", "add_tool"]);
    assert_eq!(
        body["tools"][0]["description"],
        "Looks up a support ticket by what it is about."
    );

    // Another host, even the same machine by another name: refused.
    let other = http.url().replace("127.0.0.1", "localhost");
    let (status, body) = validate(&server, json!({"url": other})).await;
    assert_eq!((status, &body["status"]), (403, &json!("error")), "{body}");
    // Nothing listening: an error, quickly.
    let (status, body) = validate(&server, json!({"url": closed_url})).await;
    assert_eq!((status, &body["status"]), (200, &json!("error")), "{body}");
    // Not a request at all.
    let (status, body) = validate(&server, json!({"link": "x"})).await;
    assert_eq!((status, &body["status"]), (400, &json!("error")), "{body}");
    let (status, _) = validate(&server, json!({"url": "file:///etc/passwd"})).await;
    assert_eq!(status, 400);

    // A browser page of another origin may call it (CORS, as for /chat).
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, server.http("/validate_mcp"))
        .header("Origin", "http://localhost:5173")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert!(
        preflight
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn a_server_down_at_start_leaves_out_its_tools_and_nothing_else() {
    let model = mock_llm(0, 0);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let config = config_file(&http_server_table(
        "tickets",
        &format!("http://{address}/mcp"),
    ));
    let server = serve_with_config(&model, &config, &[]);
    let body = wait_for_servers(&server, &["tickets"], "down").await;
    assert_eq!(
        body["status"], "ready",
        "a server that is down is not fatal"
    );
    assert_eq!(tools(&server).await, ["parlor_docs"]);
    let mut client = Client::connect(&server).await;
    let turn = client.chat("[mock:tool=tickets__lookup] q").await;
    assert_eq!(turn.ending, "stop");
    assert_eq!(ended(&turn, "tickets__lookup").status, ToolStatus::Error);

    // It comes up: parlor connects without being asked.
    let _http = McpHttpServer::start_at(&address);
    wait_for_connected(&server, &["tickets"]).await;
    let turn = client.chat("[mock:tool=tickets__lookup] now").await;
    assert_eq!(ended(&turn, "tickets__lookup").status, ToolStatus::Done);
}

#[tokio::test]
async fn stopping_parlor_stops_its_stdio_servers() {
    let model = mock_llm(0, 0);
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("local.pid");
    let config = config_file(&stdio_server_table("local", None, &pid_file));
    let mut server = serve_with_config(&model, &config, &[]);
    wait_for_connected(&server, &["local"]).await;
    let pid = wait_for_pid(&pid_file, None).await;
    assert!(is_running(pid));
    server.terminate();
    assert!(server.wait_exit(WAIT).is_some(), "parlor did not stop");
    assert!(!is_running(pid), "the stdio server outlived parlor");
}

#[tokio::test]
async fn through_rabbitmq_the_worker_calls_the_tools_and_the_gateway_lists_them() {
    let http = McpHttpServer::start();
    let config = config_file(&http_server_table("tickets", &http.url()));
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 0), &[]);
    let path = config_path(&config);
    let gateway = deployment.gateway_in(&["--config", &path]);
    let worker = deployment.worker_in(&["--config", &path]);
    let readiness = wait_for_readiness(&worker, 200).await;
    assert!(readiness["mcp_servers"].is_array(), "{readiness}");
    wait_for_connected(&worker, &["tickets"]).await;
    wait_for_connected(&gateway, &["tickets"]).await;
    assert!(
        tools(&gateway)
            .await
            .contains(&"tickets__lookup".to_owned())
    );

    let question = "[mock:tool=tickets__lookup] through the queue";
    let mut client = Client::connect(&gateway).await;
    let turn = client.chat(question).await;
    assert_eq!(turn.ending, "stop", "{turn:?}");
    let looked_up = ended(&turn, "tickets__lookup");
    assert_eq!(looked_up.status, ToolStatus::Done);
    assert_eq!(
        looked_up.output.as_deref(),
        Some(lookup_answer(question).as_str())
    );

    let body = json!({"messages": [{"role": "user", "content": question}]});
    let (status, events, _) = post_chat(&gateway.http("/chat"), body).await;
    assert_eq!(status, 200);
    let done = events
        .iter()
        .filter(|event| event.data["type"] == 5)
        .filter_map(|event| serde_json::from_str::<Value>(event.data["message"].as_str()?).ok())
        .any(|steps| steps[0]["status"] == "Done" && steps[0]["func_name"] == "tickets__lookup");
    assert!(done, "{events:?}");
}
