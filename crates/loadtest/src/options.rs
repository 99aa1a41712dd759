//! `parlor loadtest` flags, and the checked plan they make.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

/// What the load test talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The gateway's WebSocket (`GET /ws`): one connection per session.
    Ws,
    /// The gateway's `POST /chat` (SSE); later turns pass the first turn's `sessionId`.
    Sse,
    /// An OpenAI-compatible model server directly (`POST /chat/completions`,
    /// streaming); the client keeps the conversation. The baseline.
    Openai,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ws => "ws",
            Mode::Sse => "sse",
            Mode::Openai => "openai",
        }
    }

    fn default_url(self) -> &'static str {
        match self {
            Mode::Ws => "ws://127.0.0.1:8080/ws",
            Mode::Sse => "http://127.0.0.1:8080/chat",
            Mode::Openai => "http://127.0.0.1:9000/v1",
        }
    }
}

/// Sessions run when neither `--sessions` nor `--duration` is given.
const DEFAULT_SESSIONS: u64 = 100;
/// Sessions in flight in a closed loop when `--concurrency` is not given.
const DEFAULT_CONCURRENCY: usize = 10;

#[derive(Debug, Clone, Args)]
pub struct LoadtestArgs {
    /// Target URL [default: ws://127.0.0.1:8080/ws (ws), http://127.0.0.1:8080/chat
    /// (sse), http://127.0.0.1:9000/v1 (openai: the /v1 base)]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// What to drive: the gateway's WebSocket, its POST /chat, or a model server directly
    #[arg(long, value_enum, default_value_t = Mode::Ws)]
    pub mode: Mode,
    /// Sessions to run [default: 100; unbounded with --duration]
    #[arg(long, value_name = "S")]
    pub sessions: Option<u64>,
    /// Turns (messages) per session; 0 with --hold-s opens idle sessions (ws)
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub turns: u32,
    /// Sessions in flight at once: the closed loop's size, or with --rate a cap
    /// [default: 10; no cap with --rate]
    #[arg(long, value_name = "C")]
    pub concurrency: Option<usize>,
    /// Open loop: start R sessions per second whatever the server's pace; latencies
    /// of a session's first turn count from its intended start
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Ramp up over N seconds (closed loop: sessions slots start evenly spread; open
    /// loop: the rate climbs linearly from 0 to R)
    #[arg(long, value_name = "N", default_value_t = 0.0)]
    pub ramp_s: f64,
    /// Stop starting sessions after SECS seconds (running sessions finish)
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Pause between a session's turns, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub think_ms: u64,
    /// A turn (or a connection) that takes longer fails with `timeout`
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub turn_timeout_s: f64,
    /// Keep each session's connection open this long after its last turn (ws);
    /// with --turns 0, measures what idle sessions cost the server
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub hold_s: f64,
    /// Extra words per message: longer answers, more chunks per turn
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub message_words: usize,
    /// Don't check answers against the mock model (for a real model); isolation is
    /// still checked
    #[arg(long)]
    pub no_check: bool,
    /// Bearer token sent with every request and WebSocket upgrade (a gateway with
    /// `auth.mode` set, or a model server that wants a key)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PARLOR_LOADTEST_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Model name sent in openai mode
    #[arg(long, value_name = "NAME", default_value = "parlor-mock")]
    pub model: String,
    /// Write the summary as JSON to PATH
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Exit non-zero when failed turns / all turns exceeds F (0 to 1)
    #[arg(long, value_name = "F")]
    pub max_error_rate: Option<f64>,
    /// Exit non-zero when the 99th percentile time to first token exceeds MS
    #[arg(long, value_name = "MS")]
    pub max_ttft_p99_ms: Option<f64>,
    /// Never draw the progress bar (it is hidden anyway when stderr is not a terminal)
    #[arg(long)]
    pub no_progress: bool,
}

/// The checked plan of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub mode: Mode,
    pub url: String,
    /// `None`: as many as `duration` allows.
    pub sessions: Option<u64>,
    pub turns: u32,
    /// In-flight cap; `None` only in an open loop.
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub ramp: Duration,
    pub duration: Option<Duration>,
    pub think: Duration,
    pub turn_timeout: Duration,
    pub hold: Duration,
    pub message_words: usize,
    pub check_answers: bool,
    pub model: String,
    pub token: Option<String>,
    pub json: Option<PathBuf>,
    pub max_error_rate: Option<f64>,
    pub max_ttft_p99_ms: Option<f64>,
    pub progress: bool,
    /// Marks this run's messages, so tokens of another run never count.
    pub run_id: String,
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("--{flag} must be a number of seconds ≥ 0, got {value}"))
}

impl LoadtestArgs {
    pub fn plan(&self) -> anyhow::Result<Plan> {
        use anyhow::bail;
        let url = self
            .url
            .clone()
            .unwrap_or_else(|| self.mode.default_url().to_owned());
        let scheme_ok = match self.mode {
            Mode::Ws => url.starts_with("ws://"),
            Mode::Sse | Mode::Openai => url.starts_with("http://") || url.starts_with("https://"),
        };
        if !scheme_ok {
            let expected = match self.mode {
                Mode::Ws => "ws://HOST:PORT/ws",
                Mode::Sse => "http://HOST:PORT/chat",
                Mode::Openai => "http://HOST:PORT/v1",
            };
            bail!(
                "--url {url} does not fit --mode {}: expected {expected}",
                self.mode.name()
            );
        }
        if self.turns == 0 && (self.mode != Mode::Ws || self.hold_s <= 0.0) {
            bail!("--turns 0 only makes sense with --mode ws and --hold-s (idle sessions)");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of sessions per second, got {rate}");
        }
        if self.concurrency == Some(0) {
            bail!("--concurrency must be at least 1");
        }
        if let Some(rate) = self.max_error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            bail!("--max-error-rate is a fraction from 0 to 1, got {rate}");
        }
        if let Some(ms) = self.max_ttft_p99_ms
            && !(ms.is_finite() && ms >= 0.0)
        {
            bail!("--max-ttft-p99-ms must be a number of milliseconds ≥ 0, got {ms}");
        }
        let duration = self
            .duration
            .map(|secs| seconds("duration", secs))
            .transpose()?;
        let sessions = match (self.sessions, duration) {
            (Some(0), _) => bail!("--sessions must be at least 1"),
            (Some(sessions), _) => Some(sessions),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_SESSIONS),
        };
        let turn_timeout = seconds("turn-timeout-s", self.turn_timeout_s)?;
        if turn_timeout.is_zero() {
            bail!("--turn-timeout-s must be more than 0");
        }
        let concurrency = match (self.concurrency, self.rate) {
            (Some(c), _) => Some(c),
            (None, None) => Some(DEFAULT_CONCURRENCY),
            (None, Some(_)) => None,
        };
        Ok(Plan {
            mode: self.mode,
            token: self.token.clone(),
            url,
            sessions,
            turns: self.turns,
            concurrency,
            rate: self.rate,
            ramp: seconds("ramp-s", self.ramp_s)?,
            duration,
            think: Duration::from_millis(self.think_ms),
            turn_timeout,
            hold: seconds("hold-s", self.hold_s)?,
            message_words: self.message_words,
            check_answers: !self.no_check,
            model: self.model.clone(),
            json: self.json.clone(),
            max_error_rate: self.max_error_rate,
            max_ttft_p99_ms: self.max_ttft_p99_ms,
            progress: !self.no_progress,
            run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: LoadtestArgs,
    }

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let mut argv = vec!["loadtest"];
        argv.extend_from_slice(args);
        Harness::try_parse_from(argv)?.args.plan()
    }

    #[test]
    fn defaults_make_a_closed_loop_against_the_local_gateway() {
        let plan = plan(&[]).unwrap();
        assert_eq!(plan.mode, Mode::Ws);
        assert_eq!(plan.url, "ws://127.0.0.1:8080/ws");
        assert_eq!(plan.sessions, Some(100));
        assert_eq!(plan.concurrency, Some(10));
        assert_eq!(plan.rate, None);
        assert_eq!(plan.run_id.len(), 8);
    }

    #[test]
    fn rate_and_duration_open_the_loop() {
        let plan = plan(&["--rate", "50", "--duration", "2", "--mode", "sse"]).unwrap();
        assert_eq!(plan.sessions, None);
        assert_eq!(plan.concurrency, None);
        assert_eq!(plan.url, "http://127.0.0.1:8080/chat");
        assert_eq!(plan.duration, Some(Duration::from_secs(2)));
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(plan(&["--mode", "openai", "--url", "ws://x/ws"]).is_err());
        assert!(plan(&["--rate", "0"]).is_err());
        assert!(plan(&["--turns", "0"]).is_err());
        assert!(plan(&["--turns", "0", "--hold-s", "5"]).is_ok());
        assert!(plan(&["--max-error-rate", "2"]).is_err());
        assert!(plan(&["--ramp-s", "-1"]).is_err());
    }
}
