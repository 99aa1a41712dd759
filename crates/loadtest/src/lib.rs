//! The load tester behind `parlor loadtest`: drives many chat sessions against a
//! gateway's WebSocket or `POST /chat`, or straight against an OpenAI-compatible
//! model server (the baseline), measures time to first token, inter-chunk latency
//! and turn latency in HDR histograms, checks every answer against the mock model
//! and every chunk for another session's token, and prints (and writes as JSON) a
//! summary. Thresholds make it exit non-zero.
//!
//! It is a client that speaks only the wire protocol (docs/protocol.md): its frames
//! are its own serde types, so it checks the contract independently of the
//! server's code, which it does not depend on. The only import from elsewhere is
//! the mock model's pure `expected_answer`.
//!
//! - [`options`]: flags and the checked [`options::Plan`];
//! - `runner`: closed / open loop, ramp, duration, progress bar, sessions;
//! - `drivers`: one wire client per mode;
//! - `probe`, `checker`: timing a turn, checking its answer and isolation;
//! - `stats`, `report`: histograms and counters, the table, the JSON, the verdict.

mod checker;
mod drivers;
mod limits;
pub mod options;
mod probe;
mod report;
mod runner;
mod stats;

use anyhow::Context as _;

pub use options::{LoadtestArgs, Mode};

/// Runs `parlor loadtest`. The load runs on a multi-threaded Tokio runtime of its
/// own (on a thread of its own, as the caller may be inside a single-threaded
/// runtime); this returns an error when the run failed a check or a threshold.
pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("loadtest".into())
        .spawn(move || {
            let _ = done.send(run_blocking(plan));
        })
        .context("cannot start the load test thread")?;
    outcome
        .await
        .map_err(|_| anyhow::anyhow!("the load test thread panicked"))?
}

fn run_blocking(plan: options::Plan) -> anyhow::Result<()> {
    match limits::raise_open_file_limit() {
        Ok(limit) => {
            let connections = plan.concurrency.unwrap_or(0) as u64;
            if connections + 64 > limit {
                eprintln!(
                    "loadtest: warning: the open-file limit ({limit}) is below --concurrency \
                     {connections} plus a margin: connections may fail with `emfile`"
                );
            }
        }
        Err(error) => eprintln!("loadtest: warning: cannot read the open-file limit: {error}"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadtest-worker")
        .build()
        .context("cannot start the Tokio runtime")?;
    let report = runtime.block_on(runner::run(plan.clone()))?;
    drop(runtime);

    print!("{}", report.table());
    if let Some(path) = &plan.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
    }
    if !report.failures.is_empty() {
        anyhow::bail!("the load test failed: {}", report.failures.join("; "));
    }
    Ok(())
}
