//! `parlor loadtest` as a process against real `parlor mock-llm` and `parlor
//! serve` processes: a CI smoke test of every mode, and of the thresholds.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Process, mock_llm, run_to_end, serve};
use serde_json::{Value, json};

/// How long one load-test run may take (they take about a second).
const RUN_LIMIT: Duration = Duration::from_secs(60);
const SESSIONS: u64 = 20;
const TURNS: u64 = 3;

/// Runs `parlor loadtest` with `args` plus `--json`, returning whether it exited
/// 0, its report and its output.
fn loadtest(args: &[&str]) -> (bool, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let json_arg = json.to_str().unwrap();
    let mut all = vec!["loadtest", "--json", json_arg];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = run_to_end(&all, RUN_LIMIT);
    let output = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    (status.success(), read_report(&json, &output), output)
}

fn read_report(path: &Path, output: &str) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no JSON report ({e}); {output}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON report ({e}): {text}"))
}

/// A smoke run of `mode` at `url`: every turn must succeed with the right answer.
fn smoke(mode: &str, url: &str) {
    let (sessions, turns) = (SESSIONS.to_string(), TURNS.to_string());
    let (passed, report, output) = loadtest(&[
        "--mode",
        mode,
        "--url",
        url,
        "--sessions",
        &sessions,
        "--turns",
        &turns,
        "--concurrency",
        "10",
        "--max-error-rate",
        "0",
        "--max-ttft-p99-ms",
        "10000",
        "--turn-timeout-s",
        "20",
    ]);
    assert!(passed, "the {mode} run failed; {output}");
    assert_eq!(report["sessions"], SESSIONS, "{report}");
    assert_eq!(report["turns_ok"], SESSIONS * TURNS, "{report}");
    assert_eq!(report["turns_failed"], 0, "{report}");
    assert_eq!(report["isolation_violations"], 0, "{report}");
    assert_eq!(report["wrong_answers"], 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    for key in ["ttft_ms", "itl_ms", "turn_ms"] {
        for p in ["p50", "p90", "p99", "max"] {
            assert!(report[key][p].is_number(), "{key}.{p}: {report}");
        }
    }
    assert!(report["ttft_ms"]["p50"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["turns_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["chunks_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        output.contains("turns ok/failed"),
        "no summary table; {output}"
    );
}

fn gateway() -> (Process, Process) {
    let model = mock_llm(0, 1);
    let gateway = serve(&model, &[]);
    (model, gateway)
}

#[test]
fn ws_mode_passes_its_checks() {
    let (_model, gateway) = gateway();
    smoke("ws", &gateway.ws_url(""));
}

#[test]
fn sse_mode_passes_its_checks() {
    let (_model, gateway) = gateway();
    smoke("sse", &gateway.http("/chat"));
}

#[test]
fn openai_mode_passes_its_checks() {
    let model = mock_llm(0, 1);
    smoke("openai", &model.http("/v1"));
}

#[test]
fn a_missed_ttft_threshold_exits_non_zero() {
    let model = mock_llm(50, 0);
    let url = model.http("/v1");
    let (passed, report, output) = loadtest(&[
        "--mode",
        "openai",
        "--url",
        &url,
        "--sessions",
        "4",
        "--turns",
        "1",
        "--concurrency",
        "4",
        "--max-ttft-p99-ms",
        "0.001",
    ]);
    assert!(
        !passed,
        "a TTFT p99 over 0.001 ms must fail the run; {output}"
    );
    assert!(output.contains("--max-ttft-p99-ms"), "{output}");
    assert_eq!(report["turns_ok"], 4, "{report}");
    assert!(
        report["ttft_ms"]["p99"].as_f64().unwrap() >= 50.0,
        "{report}"
    );
    assert_eq!(report["failures"].as_array().unwrap().len(), 1, "{report}");
}

#[test]
fn an_unreachable_gateway_counts_connect_errors_and_fails_the_error_rate() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (passed, report, output) = loadtest(&[
        "--url",
        &url,
        "--sessions",
        "3",
        "--turns",
        "2",
        "--max-error-rate",
        "0.5",
    ]);
    assert!(!passed, "{output}");
    assert!(output.contains("--max-error-rate"), "{output}");
    assert_eq!(report["turns_ok"], 0, "{report}");
    assert_eq!(report["turns_failed"], 6, "{report}");
    assert_eq!(report["errors"]["connect"], 3, "{report}");
}

/// A WebSocket server that gets the protocol right but routes badly: it answers
/// session `i`'s message with session `i + 1`'s token (a chunk of another session,
/// and so a wrong answer too).
fn start_misrouting_server() -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let session = uuid::Uuid::new_v4();
                    let hello = format!(r#"{{"type":"session","session_id":"{session}"}}"#);
                    let _ = socket.send(Message::text(hello)).await;
                    let mut turn = 0;
                    while let Some(Ok(Message::Text(frame))) = socket.next().await {
                        turn += 1;
                        let frame: Value = serde_json::from_str(&frame).unwrap();
                        let text = frame["text"].as_str().unwrap();
                        // "lt<run>s<i> turn N" → the same message of session i + 1.
                        let (token, rest) = text.split_once(' ').unwrap();
                        let (prefix, index) = token.rsplit_once('s').unwrap();
                        let index: u64 = index.parse().unwrap();
                        let stranger = format!("{prefix}s{} {rest}", index + 1);
                        let answer = common::expected_answer(&stranger, turn);
                        let id = uuid::Uuid::new_v4();
                        let mut frames = vec![json!({"type": "accepted", "turn_id": id})];
                        for (seq, word) in answer.split_inclusive(' ').enumerate() {
                            frames.push(
                                json!({"type": "chunk", "turn_id": id, "seq": seq, "text": word}),
                            );
                        }
                        frames
                            .push(json!({"type": "done", "turn_id": id, "finish_reason": "stop"}));
                        for frame in frames {
                            let _ = socket.send(Message::text(frame.to_string())).await;
                        }
                    }
                });
            }
        });
    });
    format!("ws://{addr}/ws")
}

#[test]
fn chunks_of_another_session_and_wrong_answers_fail_the_run() {
    let url = start_misrouting_server();
    let (passed, report, output) = loadtest(&[
        "--url",
        &url,
        "--sessions",
        "4",
        "--turns",
        "2",
        "--concurrency",
        "2",
    ]);
    assert!(!passed, "a misrouting server must fail the run; {output}");
    assert_eq!(report["turns_ok"], 8, "{report}");
    assert_eq!(report["isolation_violations"], 8, "{report}");
    assert_eq!(report["wrong_answers"], 8, "{report}");
    assert!(output.contains("isolation violations"), "{output}");
}
