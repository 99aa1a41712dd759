//! `parlor stats`: the admin stats of a running `parlor serve` as a table.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Client, WAIT, mock_llm, serve};

fn parlor_stats(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parlor"))
        .arg("stats")
        .args(args)
        .env_remove("PARLOR_ADMIN__TOKEN")
        .output()
        .expect("run parlor stats")
}

#[tokio::test]
async fn stats_prints_what_the_server_counted() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_ADMIN__TOKEN", "s3cret")]);
    let mut client = Client::connect(&server).await;
    client.chat("count me").await;

    let url = server.http("");
    let output = parlor_stats(&["--url", &url, "--token", "s3cret"]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(table.contains("sessions   1 active, 1 created"), "{table}");
    assert!(
        table.contains("turns      0 running, 1 started, 1 completed, 0 failed"),
        "{table}"
    );
    assert!(
        table.contains("broker     embedded connected, 1 published"),
        "{table}"
    );
    assert!(table.contains("session_registry"), "{table}");

    let refused = parlor_stats(&["--url", &url, "--token", "wrong"]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("refused the admin token"), "{message}");
}

#[tokio::test]
async fn stats_watch_redraws_with_rates() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_ADMIN__TOKEN", "s3cret")]);
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["stats", "--url", &server.http(""), "--watch", "0.2"])
        .env("PARLOR_ADMIN__TOKEN", "s3cret")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run parlor stats --watch");
    let mut stdout = watcher.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0; 4096];
        while let Ok(read @ 1..) = stdout.read(&mut buffer) {
            seen.extend_from_slice(&buffer[..read]);
            if String::from_utf8_lossy(&seen).matches("rates").count() >= 2 {
                break;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let deadline = std::time::Instant::now() + WAIT;
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let screen = reader.join().unwrap();
    assert!(
        screen.contains("\x1b[2J"),
        "the screen is redrawn: {screen}"
    );
    assert!(screen.matches("rates").count() >= 2, "{screen}");
}
