//! How long re-attaching to a session takes, from opening the WebSocket to its
//! `history` frame: for sessions still in memory, for the same sessions loaded
//! back from SQLite after a restart, and for sessions taken over from another
//! gateway (RabbitMQ and PostgreSQL) (docs/benchmarks.md#re-attaching). Ignored by
//! default:
//!
//! ```sh
//! cargo test --release --test reattach_benchmark -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::deployment::Deployment;
use common::postgres::TestDatabase;
use common::{Client, Process, WAIT, mock_llm};
use uuid::Uuid;

const SESSIONS: usize = 1_000;
/// Turns per session before it is left: its history holds twice as many messages.
const TURNS: usize = 5;

fn serve(model: &Process, data_dir: &std::path::Path) -> Process {
    let env = [
        ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
        ("PARLOR_STORAGE__DATA_DIR", data_dir.display().to_string()),
    ];
    Process::start(&["serve"], &env)
}

/// Starts `SESSIONS` sessions of `TURNS` turns each at `server`; answers their ids.
async fn converse(server: &Process) -> Vec<Uuid> {
    let mut sessions = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let mut client = Client::connect(server).await;
        for turn in 0..TURNS {
            client.chat(&format!("question {turn}")).await;
        }
        sessions.push(client.session_id);
        client.close().await;
    }
    sessions
}

/// Re-attaches to every session, one after the other; answers the times to the
/// `history` frame, sorted.
async fn reattach_all(server: &Process, sessions: &[Uuid]) -> Vec<Duration> {
    let mut times = Vec::with_capacity(sessions.len());
    for session_id in sessions {
        let started = Instant::now();
        let mut client =
            Client::connect_url(&server.ws_url(&format!("?session_id={session_id}"))).await;
        let history = client.expect_history().await;
        times.push(started.elapsed());
        assert_eq!(client.session_id, *session_id);
        assert_eq!(history.len(), 2 * TURNS);
        client.close().await;
    }
    times.sort();
    times
}

fn report(what: &str, times: &[Duration]) {
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: {} re-attaches, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        times.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(times[times.len() - 1]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it with --ignored --nocapture, in release"]
async fn reattach_latency() {
    let model = mock_llm(0, 0);
    let data = tempfile::tempdir().unwrap();
    let mut server = serve(&model, data.path());

    let sessions = converse(&server).await;
    let in_memory = reattach_all(&server, &sessions).await;

    server.terminate();
    server.wait_exit(WAIT).expect("parlor exits");
    let server = serve(&model, data.path());
    let from_storage = reattach_all(&server, &sessions).await;

    report("in memory", &in_memory);
    report("from SQLite after a restart", &from_storage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it with --ignored --nocapture, in release"]
async fn takeover_latency() {
    let database = TestDatabase::create().await;
    let (deployment, _cleanup) =
        Deployment::new(mock_llm(0, 0), &[("PARLOR_STORAGE__URL", &database.url())]);
    let _worker = deployment.worker();
    let (first, second) = (deployment.gateway(), deployment.gateway());

    let sessions = converse(&first).await;
    // Each is held by the first gateway (idle in its memory): the second claims it,
    // tells the first, waits for it to let go, and loads it from PostgreSQL.
    let taken_over = reattach_all(&second, &sessions).await;
    report("taken over from another gateway", &taken_over);
}
