//! `parlor stats`: `/admin/stats` of a running gateway as a table in the terminal,
//! refreshed with `--watch`.
//!
//! It is a client of the HTTP API like any other operator tool, so it reads the
//! JSON into its own types (only what it shows) rather than sharing the server's:
//! a newer server that reports more still works with an older `parlor stats`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Deserialize;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Base URL of the gateway (or `parlor serve`)
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub url: String,
    /// The admin bearer token (admin.token; logged at start when generated)
    #[arg(long, env = "PARLOR_ADMIN__TOKEN", hide_env_values = true)]
    pub token: String,
    /// Refresh every SECONDS until interrupted, with rates since the last refresh
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,
    /// How many actors to list, busiest mailboxes first
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub actors: usize,
}

/// The part of `/admin/stats` this view shows.
#[derive(Clone, Debug, Deserialize)]
pub struct Snapshot {
    pub sessions: Sessions,
    pub turns: Turns,
    pub workers: Workers,
    pub broker: Broker,
    pub actors: Vec<ActorLine>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Sessions {
    pub active: u64,
    pub created_total: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Turns {
    pub started_total: u64,
    pub completed_total: u64,
    pub failed_total: u64,
    pub cancelled_total: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Workers {
    pub size: u64,
    pub busy: u64,
    pub restarts_total: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Broker {
    pub kind: String,
    pub connected: bool,
    pub published_total: u64,
    pub consumed_total: u64,
    pub redelivered_total: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ActorLine {
    pub kind: String,
    pub id: String,
    pub mailbox_len: u64,
    pub handled_total: u64,
}

/// Runs `parlor stats`: one table, or one every `--watch` seconds until Ctrl-C.
pub async fn run(args: StatsArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}/admin/stats", args.url.trim_end_matches('/'));
    let Some(every) = args.watch else {
        let now = fetch(&client, &url, &args.token).await?;
        print!("{}", render(&args.url, &now, None, args.actors));
        return Ok(());
    };
    if !(every.is_finite() && every >= 0.1) {
        bail!("--watch takes at least 0.1 seconds");
    }
    let mut previous: Option<(Snapshot, Instant)> = None;
    loop {
        let now = fetch(&client, &url, &args.token).await?;
        let taken = Instant::now();
        let rates = previous
            .as_ref()
            .map(|(before, at)| Rates::between(before, &now, taken.duration_since(*at)));
        // Clear the screen and go home, so the table redraws in place.
        print!(
            "\x1b[2J\x1b[H{}",
            render(&args.url, &now, rates.as_ref(), args.actors)
        );
        previous = Some((now, taken));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(every)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn fetch(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Snapshot> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    match response.status() {
        status if status.is_success() => response
            .json()
            .await
            .with_context(|| format!("{url} did not answer admin stats")),
        reqwest::StatusCode::UNAUTHORIZED => {
            bail!("{url} refused the admin token (--token or PARLOR_ADMIN__TOKEN)")
        }
        status => bail!("{url} answered {status}"),
    }
}

/// Per-second rates between two snapshots.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates {
    pub sessions_created: f64,
    pub turns_started: f64,
    pub turns_completed: f64,
    pub turns_failed: f64,
    pub published: f64,
}

impl Rates {
    pub fn between(before: &Snapshot, after: &Snapshot, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        // A restarted server counts from zero again: show no negative rate.
        let rate = |before: u64, after: u64| after.saturating_sub(before) as f64 / seconds;
        Self {
            sessions_created: rate(before.sessions.created_total, after.sessions.created_total),
            turns_started: rate(before.turns.started_total, after.turns.started_total),
            turns_completed: rate(before.turns.completed_total, after.turns.completed_total),
            turns_failed: rate(before.turns.failed_total, after.turns.failed_total),
            published: rate(before.broker.published_total, after.broker.published_total),
        }
    }
}

/// The table for one snapshot; `rates` adds a per-second line where known.
pub fn render(server: &str, stats: &Snapshot, rates: Option<&Rates>, actors: usize) -> String {
    let mut out = String::new();
    let turns = &stats.turns;
    let ended = turns.completed_total + turns.failed_total + turns.cancelled_total;
    let running = turns.started_total.saturating_sub(ended);
    let broker = &stats.broker;
    let link = if broker.connected {
        "connected"
    } else {
        "DISCONNECTED"
    };
    let _ = writeln!(out, "parlor at {server}");
    let _ = writeln!(out);
    let rows = [
        (
            "sessions",
            format!(
                "{} active, {} created",
                stats.sessions.active, stats.sessions.created_total
            ),
        ),
        (
            "turns",
            format!(
                "{running} running, {} started, {} completed, {} failed, {} cancelled",
                turns.started_total,
                turns.completed_total,
                turns.failed_total,
                turns.cancelled_total
            ),
        ),
        (
            "workers",
            format!(
                "{} busy of {}, {} restarted",
                stats.workers.busy, stats.workers.size, stats.workers.restarts_total
            ),
        ),
        (
            "broker",
            format!(
                "{} {link}, {} published, {} consumed, {} redelivered",
                broker.kind,
                broker.published_total,
                broker.consumed_total,
                broker.redelivered_total
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<10} {value}");
    }
    if let Some(rates) = rates {
        let _ = writeln!(
            out,
            "{:<10} {:.1} sessions/s, {:.1} turns/s started, {:.1} completed, {:.1} failed, {:.1} published/s",
            "rates",
            rates.sessions_created,
            rates.turns_started,
            rates.turns_completed,
            rates.turns_failed,
            rates.published
        );
    }
    let mut busiest = stats.actors.clone();
    busiest.sort_by(|a, b| {
        (b.mailbox_len, b.handled_total)
            .cmp(&(a.mailbox_len, a.handled_total))
            .then_with(|| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)))
    });
    busiest.truncate(actors);
    if !busiest.is_empty() {
        let id_width = busiest.iter().map(|a| a.id.len()).max().unwrap_or(0).max(2);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<18} {:<id_width$} {:>8} {:>12}",
            "actor", "id", "mailbox", "handled"
        );
        for actor in &busiest {
            let _ = writeln!(
                out,
                "{:<18} {:<id_width$} {:>8} {:>12}",
                actor.kind, actor.id, actor.mailbox_len, actor.handled_total
            );
        }
        let hidden = stats.actors.len() - busiest.len();
        if hidden > 0 {
            let _ = writeln!(out, "… and {hidden} more (--actors N)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(started: u64, completed: u64) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "sessions": {"active": 2, "created_total": 5},
            "turns": {"started_total": started, "completed_total": completed,
                      "failed_total": 1, "cancelled_total": 0},
            "workers": {"size": 16, "busy": 1, "restarts_total": 0},
            "broker": {"kind": "embedded", "connected": true, "published_total": started,
                       "consumed_total": started, "redelivered_total": 0},
            "actors": [
                {"kind": "agent_worker", "id": "0", "mailbox_len": 0, "handled_total": 9},
                {"kind": "broker", "id": "reply-1", "mailbox_len": 3, "handled_total": 40},
                {"kind": "agent_worker", "id": "1", "mailbox_len": 0, "handled_total": 12},
            ],
            "extra": "a newer server may say more"
        }))
        .unwrap()
    }

    #[test]
    fn the_table_shows_totals_and_the_busiest_mailboxes_first() {
        let table = render("http://gw", &snapshot(10, 7), None, 2);
        assert!(table.contains("sessions   2 active, 5 created"), "{table}");
        assert!(
            table.contains("turns      2 running, 10 started, 7 completed, 1 failed"),
            "{table}"
        );
        assert!(table.contains("workers    1 busy of 16"), "{table}");
        assert!(table.contains("broker     embedded connected"), "{table}");
        let broker = table.find("reply-1").unwrap();
        let worker = table.find("agent_worker").unwrap();
        assert!(broker < worker, "the fullest mailbox comes first:\n{table}");
        assert!(table.contains("… and 1 more"), "{table}");
        assert!(!table.contains("rates"), "{table}");
    }

    #[test]
    fn rates_are_per_second_and_never_negative() {
        let rates = Rates::between(&snapshot(10, 7), &snapshot(30, 27), Duration::from_secs(2));
        assert_eq!(rates.turns_started, 10.0);
        assert_eq!(rates.turns_completed, 10.0);
        let restarted = Rates::between(&snapshot(30, 27), &snapshot(1, 0), Duration::from_secs(1));
        assert_eq!(restarted.turns_started, 0.0);
        let table = render("http://gw", &snapshot(30, 27), Some(&rates), 8);
        assert!(table.contains("10.0 turns/s started"), "{table}");
    }
}
