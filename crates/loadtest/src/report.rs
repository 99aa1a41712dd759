//! The end of a run: the summary as a table and as JSON, and the verdict of the
//! thresholds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::options::{Mode, Plan};
use super::stats::{Percentiles, Recorder};

/// The JSON of `--json`. The first fields are the contract scripts rely on; the rest
/// are extras.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub sessions: u64,
    pub turns_ok: u64,
    pub turns_failed: u64,
    pub isolation_violations: u64,
    pub wrong_answers: u64,
    pub ttft_ms: Percentiles,
    pub itl_ms: Percentiles,
    pub turn_ms: Percentiles,
    pub turns_per_s: f64,
    pub chunks_per_s: f64,
    pub errors: BTreeMap<String, u64>,
    // Extras.
    pub mode: Mode,
    pub url: String,
    pub turns_per_session: u32,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    /// Seconds from the first session's start to the last turn's end.
    pub elapsed_s: f64,
    pub chunks: u64,
    /// Turns never sent because their session had failed before (in `turns_failed`).
    pub turns_skipped: u64,
    pub resets: u64,
    pub connect_ms: Percentiles,
    pub answers_checked: bool,
    /// The thresholds missed (empty: the run passed).
    pub failures: Vec<String>,
}

impl Report {
    pub fn new(plan: &Plan, sessions: u64, totals: &Recorder, elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64();
        let per_s = |count: u64| {
            if secs > 0.0 { count as f64 / secs } else { 0.0 }
        };
        let mut report = Report {
            sessions,
            turns_ok: totals.turns_ok,
            turns_failed: totals.turns_failed,
            isolation_violations: totals.isolation_violations,
            wrong_answers: totals.wrong_answers,
            ttft_ms: totals.ttft.summary(),
            itl_ms: totals.itl.summary(),
            turn_ms: totals.turn.summary(),
            turns_per_s: per_s(totals.turns_ok),
            chunks_per_s: per_s(totals.chunks),
            errors: totals.errors.clone(),
            mode: plan.mode,
            url: plan.url.clone(),
            turns_per_session: plan.turns,
            concurrency: plan.concurrency,
            rate: plan.rate,
            elapsed_s: secs,
            chunks: totals.chunks,
            turns_skipped: totals.turns_skipped,
            resets: totals.resets,
            connect_ms: totals.connect.summary(),
            answers_checked: plan.check_answers,
            failures: Vec::new(),
        };
        report.failures = report.missed_thresholds(plan);
        report
    }

    /// Failed turns / all turns.
    pub fn error_rate(&self) -> f64 {
        let all = self.turns_ok + self.turns_failed;
        if all == 0 {
            0.0
        } else {
            self.turns_failed as f64 / all as f64
        }
    }

    fn missed_thresholds(&self, plan: &Plan) -> Vec<String> {
        let mut missed = Vec::new();
        if self.isolation_violations > 0 {
            missed.push(format!(
                "{} isolation violations (chunks of another session or turn)",
                self.isolation_violations
            ));
        }
        if self.wrong_answers > 0 {
            missed.push(format!("{} wrong answers", self.wrong_answers));
        }
        if let Some(max) = plan.max_error_rate
            && self.error_rate() > max
        {
            missed.push(format!(
                "error rate {:.4} is above --max-error-rate {max} ({} of {} turns failed)",
                self.error_rate(),
                self.turns_failed,
                self.turns_ok + self.turns_failed
            ));
        }
        if let Some(max) = plan.max_ttft_p99_ms
            && self.ttft_ms.p99 > max
        {
            missed.push(format!(
                "TTFT p99 {:.3} ms is above --max-ttft-p99-ms {max}",
                self.ttft_ms.p99
            ));
        }
        if let Some(max) = plan.max_ttft_p99_ms
            && self.turns_ok == 0
            && self.turns_failed > 0
        {
            missed.push(format!(
                "no turn succeeded, so TTFT p99 ≤ {max} ms is not shown"
            ));
        }
        missed
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report always serializes")
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let lane = match (self.rate, self.concurrency) {
            (Some(rate), Some(cap)) => format!("open loop {rate}/s, at most {cap} in flight"),
            (Some(rate), None) => format!("open loop {rate}/s"),
            (None, Some(c)) => format!("closed loop, concurrency {c}"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "parlor loadtest: {} {} — {} sessions × {} turns, {lane}",
            self.mode.name(),
            self.url,
            self.sessions,
            self.turns_per_session
        );
        let _ = writeln!(out, "  elapsed          {:>10.2} s", self.elapsed_s);
        let _ = writeln!(
            out,
            "  turns ok/failed  {:>10} / {} ({} skipped after a failure; error rate {:.2} %)",
            self.turns_ok,
            self.turns_failed,
            self.turns_skipped,
            self.error_rate() * 100.0
        );
        let _ = writeln!(out, "  turns/s          {:>10.1}", self.turns_per_s);
        let _ = writeln!(
            out,
            "  chunks/s         {:>10.1} ({} chunks)",
            self.chunks_per_s, self.chunks
        );
        let checked = if self.answers_checked {
            ""
        } else {
            " (not checked: --no-check)"
        };
        let _ = writeln!(
            out,
            "  wrong answers    {:>10}{checked}",
            self.wrong_answers
        );
        let _ = writeln!(out, "  isolation viol.  {:>10}", self.isolation_violations);
        if self.resets > 0 {
            let _ = writeln!(out, "  resets           {:>10}", self.resets);
        }
        let _ = writeln!(
            out,
            "  {:<14} {:>10} {:>10} {:>10} {:>10}",
            "latency (ms)", "p50", "p90", "p99", "max"
        );
        for (name, p) in [
            ("connect", &self.connect_ms),
            ("ttft", &self.ttft_ms),
            ("itl", &self.itl_ms),
            ("turn", &self.turn_ms),
        ] {
            let _ = writeln!(
                out,
                "  {name:<14} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                p.p50, p.p90, p.p99, p.max
            );
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors           none");
        } else {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(code, count)| format!("{code}={count}"))
                .collect();
            let _ = writeln!(out, "  errors           {}", errors.join(", "));
        }
        for failure in &self.failures {
            let _ = writeln!(out, "  FAILED: {failure}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::TurnRecord;

    fn plan() -> Plan {
        use clap::Parser;
        #[derive(Parser)]
        struct Harness {
            #[command(flatten)]
            args: crate::LoadtestArgs,
        }
        Harness::try_parse_from([
            "loadtest",
            "--max-ttft-p99-ms",
            "5",
            "--max-error-rate",
            "0.1",
        ])
        .unwrap()
        .args
        .plan()
        .unwrap()
    }

    fn totals(ttft_ms: u64, failed: usize) -> Recorder {
        let mut totals = Recorder::default();
        let gaps = [1000, 2000];
        for turn in 0..10 {
            let failed = turn < failed;
            totals.record_turn(&TurnRecord {
                ok: !failed,
                ttft: Some(Duration::from_millis(ttft_ms)),
                itl_micros: &gaps,
                turn: Some(Duration::from_millis(10)),
                chunks: 3,
                error: failed.then_some("http_503"),
                ..TurnRecord::default()
            });
        }
        totals
    }

    #[test]
    fn json_has_the_contract_shape() {
        let report = Report::new(&plan(), 5, &totals(2, 0), Duration::from_secs(2));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for key in [
            "sessions",
            "turns_ok",
            "turns_failed",
            "isolation_violations",
            "wrong_answers",
            "turns_per_s",
            "chunks_per_s",
        ] {
            assert!(json[key].is_number(), "{key}: {json}");
        }
        for key in ["ttft_ms", "itl_ms", "turn_ms"] {
            for p in ["p50", "p90", "p99", "max"] {
                assert!(json[key][p].is_number(), "{key}.{p}: {json}");
            }
        }
        assert!(json["errors"].is_object());
        assert_eq!(json["sessions"], 5);
        assert_eq!(json["turns_ok"], 10);
        assert_eq!(json["turns_per_s"], 5.0);
        assert_eq!(json["chunks_per_s"], 15.0);
        assert_eq!(json["ttft_ms"]["p50"], 2.0);
        assert_eq!(json["itl_ms"]["max"], 2.0);
        assert_eq!(json["failures"], serde_json::json!([]));
    }

    #[test]
    fn thresholds_say_what_was_missed() {
        let report = Report::new(&plan(), 5, &totals(7, 2), Duration::from_secs(1));
        assert_eq!(report.errors.get("http_503"), Some(&2));
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(report.failures[0].contains("--max-error-rate"));
        assert!(report.failures[1].contains("--max-ttft-p99-ms"));
        assert!(report.table().contains("FAILED"));
    }

    #[test]
    fn violations_and_wrong_answers_always_fail() {
        let mut totals = totals(1, 0);
        totals.isolation_violations = 1;
        totals.wrong_answers = 3;
        let report = Report::new(&plan(), 5, &totals, Duration::from_secs(1));
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    }
}
