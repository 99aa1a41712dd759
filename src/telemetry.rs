//! Logs and metrics. Logging: `tracing`, human-readable by default, JSON with `PARLOR_LOG_FORMAT=json`,
//! level from `RUST_LOG` (default `info`). Logs go to stderr. Metrics: one Prometheus recorder per
//! process, which `/metrics` renders; what goes into it is recorded by [`crate::counters`].
//!
//! A turn's work runs inside a `turn` span (fields `session_id`, `turn_id`,
//! `attempt`) in the gateway and in the worker alike, so every line logged for a
//! turn carries its id: the human-readable format prints the span before the
//! message (`turn{session_id=… turn_id=… attempt=1}: …`), the JSON format puts it
//! in `span`. A turn's span is a root, so `span` is the whole context; the JSON
//! span list is left out, as it would show the entered spans, not a line's parent.
//! At `info`, a turn logs a few lines (accepted and ended at the gateway, started
//! and ended at the worker); its chunks log at `debug`. Lines are written by a
//! thread of their own (`tracing-appender`'s non-blocking writer), so the threads
//! that serve chats never wait on stderr; none is dropped (a full queue makes the
//! logging thread wait), and [`init`]'s guard writes what is left at exit.
//!
//! Parlor's own lines about a turn name its span as their parent; the span is
//! entered only around work that may log for the turn on its own (the worker's
//! turn task with the agent and the model client, a publish through the broker
//! engine). Entering costs on every poll, a filtered-out line with a parent
//! nothing, which keeps a chunk's path free of tracing work at `info`.

use std::io::IsTerminal;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// What the logging thread gathers before writing, at most.
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Silences lapin's dump of returned messages (see [`init`]).
const QUIET_RETURNS: &str = "lapin::returned_messages=error";

/// Starts logging; keep the guard until the process ends, as dropping it writes
/// the lines still queued.
pub fn init() -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("parlor-log")
        // The thread flushes whenever it has written every line waiting: a burst
        // of lines is one write, not one each.
        .finish(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::io::stderr(),
        ));
    let filter = EnvFilter::try_from_default_env()
        // rmcp logs every connection's handshake, with the whole server info, at
        // INFO; parlor logs its own line per MCP connection.
        .unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"))
        // lapin logs every message RabbitMQ returns, whole, at WARN: an answer
        // whose gateway went away, with its text. Message text stays out of logs;
        // parlor logs the fact itself (the turn ends `nobody_listening`).
        .add_directive(QUIET_RETURNS.parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("PARLOR_LOG_FORMAT").is_ok_and(|format| format == "json");
    // A second initialisation (tests calling in twice) keeps the first subscriber.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    guard
}

/// A duration in milliseconds to a tenth, for log fields: a turn against a fast
/// model takes less than one.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Latency buckets, in seconds, for the histograms of `/metrics`.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often the recorder folds recorded latencies into its histograms. It keeps
/// each sample until then, so without this a process nobody scrapes would hold
/// every sample it ever took.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide metrics recorder that `/metrics` renders, and its
/// upkeep (call within a tokio runtime). Make the
/// [`Counters`](crate::counters::Counters) after it: they register their series
/// with it.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_logged_in_tenths_of_a_millisecond() {
        assert_eq!(millis(Duration::from_micros(591)), 0.6);
        assert_eq!(millis(Duration::from_micros(1549)), 1.5);
        assert_eq!(millis(Duration::from_secs(2)), 2000.0);
        assert_eq!(millis(Duration::ZERO), 0.0);
    }
}
