//! The command line and configuration layering (docs/protocol.md#commands-and-configuration), from outside the process.

mod common;

use std::process::Command;

use common::{Client, Process, expected_answer};

/// `parlor` in an empty working directory (so no `config.toml` is read).
fn parlor(workdir: &tempfile::TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parlor"));
    command.current_dir(workdir.path()).env("RUST_LOG", "error");
    command
}

#[test]
fn an_unknown_config_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parlor.toml");
    std::fs::write(
        &path,
        "[http]\nbind = \"127.0.0.1:0\"\nmax_mesage_bytes = 10\n",
    )
    .unwrap();

    let output = parlor(&dir)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown key `http.max_mesage_bytes`"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_environment_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = parlor(&dir)
        .arg("serve")
        .env("PARLOR_WORKERS__COUNTT", "3")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown key `workers.countt`"), "{stderr}");
}

#[test]
fn an_invalid_value_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = parlor(&dir)
        .args(["serve", "--workers", "0"])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("workers.count"), "{stderr}");
}

#[test]
fn a_listen_address_that_is_not_ip_and_port_is_an_error_naming_the_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let output = parlor(&dir)
        .args(["serve", "--bind", "localhost:0"])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`http.bind`: \"localhost:0\" is not an IP:PORT address"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_answers_out_of_the_box_with_the_demo_model() {
    // No config file, no model URL: the built-in demo model answers. Asked with no
    // tools it answers plainly (its searching is tested in knowledge_agent.rs).
    let server = Process::start(&["serve", "--bind", "127.0.0.1:0"], &[]);
    let mut client = Client::connect(&server).await;

    client
        .send_json(serde_json::json!({"type": "message", "text": "hello demo", "tools": []}))
        .await;
    let turn_id = client.expect_accepted().await;
    let turn = client.read_turn(turn_id).await;

    assert_eq!(turn.ending, "stop");
    assert_eq!(turn.answer, expected_answer("hello demo", 1));
}
