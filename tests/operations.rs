//! The operator's routes (docs/protocol.md#operations): `/admin/stats` behind its token, `/metrics`.

mod common;

use common::{Client, mock_llm, serve};
use serde_json::Value;

async fn admin_stats(server: &common::Process, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(server.http("/admin/stats"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn admin_stats_needs_the_token_and_counts_what_happened() {
    let model = mock_llm(0, 0);
    let server = serve(
        &model,
        &[
            ("PARLOR_ADMIN__TOKEN", "s3cret"),
            ("PARLOR_WORKERS__COUNT", "4"),
        ],
    );
    assert_eq!(admin_stats(&server, None).await.status(), 401);
    assert_eq!(admin_stats(&server, Some("wrong")).await.status(), 401);
    // The scheme is case-insensitive.
    let lower_case = reqwest::Client::new()
        .get(server.http("/admin/stats"))
        .header("Authorization", "bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(lower_case.status(), 200);

    let mut client = Client::connect(&server).await;
    client.chat("count me").await;

    let stats: Value = admin_stats(&server, Some("s3cret"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["sessions"]["active"], 1);
    assert_eq!(stats["sessions"]["created_total"], 1);
    assert_eq!(stats["turns"]["started_total"], 1);
    assert_eq!(stats["turns"]["completed_total"], 1);
    assert_eq!(stats["turns"]["failed_total"], 0);
    assert_eq!(stats["turns"]["cancelled_total"], 0);
    assert_eq!(stats["workers"]["size"], 4);
    assert_eq!(stats["workers"]["restarts_total"], 0);
    assert_eq!(stats["broker"]["kind"], "embedded");
    assert_eq!(stats["broker"]["connected"], true);
    assert_eq!(stats["broker"]["published_total"], 1);
    assert_eq!(stats["broker"]["consumed_total"], 1);
    assert_eq!(stats["broker"]["redelivered_total"], 0);

    let actors = stats["actors"].as_array().unwrap();
    let of_kind = |kind: &str| {
        actors
            .iter()
            .filter(|a| a["kind"] == kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(of_kind("session_registry").len(), 1);
    assert_eq!(of_kind("agent_pool").len(), 1);
    assert_eq!(of_kind("agent_worker").len(), 4);
    let broker = of_kind("broker");
    assert_eq!(broker.len(), 1);
    // One question asked; at least one answer chunk and `done` routed.
    let handled = broker[0]["handled_total"].as_u64().unwrap();
    assert!(handled >= 3, "{}", broker[0]);
    for actor in actors {
        assert!(
            actor["mailbox_len"].is_u64() && actor["id"].is_string(),
            "{actor}"
        );
    }
}

#[tokio::test]
async fn a_generated_admin_token_is_logged_once_and_works() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[]);

    let log = server.log();
    let token = log
        .lines()
        .find_map(|line| line.split("token=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no generated token in the log:\n{log}"))
        .to_owned();
    assert_eq!(log.matches("token=").count(), 1);
    assert_eq!(admin_stats(&server, Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn metrics_are_prometheus_text_without_session_labels() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[]);
    let mut client = Client::connect(&server).await;
    client.chat("measure me").await;

    let response = reqwest::get(server.http("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();

    assert!(text.contains("parlor_turns_completed_total 1"), "{text}");
    assert!(text.contains("parlor_sessions_active 1"), "{text}");
    assert!(
        text.contains("parlor_turn_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("parlor_turn_first_chunk_seconds_count 1"),
        "{text}"
    );
    assert!(!text.contains(&client.session_id.to_string()));
    for line in text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        assert!(line.starts_with("parlor_"), "{line}");
    }
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    // Started with a soft limit of 256, as under a default service manager.
    let mut child = Command::new("sh")
        .args(["-c", r#"ulimit -Sn 256 && exec "$0" "$@""#])
        .arg(env!("CARGO_BIN_EXE_parlor"))
        .args(["mock-llm", "--bind", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parlor");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    while !log
        .iter()
        .any(|line: &String| line.contains("listening on"))
    {
        match lines.recv_timeout(common::WAIT) {
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a limit on open files");
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft = hard: {open_files}");
    assert_ne!(numbers[0], "256", "{open_files}");
    assert!(
        log.iter()
            .any(|line| line.contains("raised the open file limit")),
        "{log:?}"
    );
}
