//! `parlor index`: builds every knowledge source's index ahead of time, so that
//! starting the server finds them up to date (docs/knowledge.md#the-command).

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::agent::knowledge::{BuildReport, KnowledgeSource, Library};
use crate::config::Config;

/// Opens every source's index, building those whose documents changed, with a
/// progress bar per source on stderr; then prints a summary on stdout.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let sources = KnowledgeSource::configured(&config.knowledge);
    if config.knowledge.sources.is_empty() {
        eprintln!(
            "no [[knowledge.sources]] configured: indexing the built-in source `{}` (kept in memory)",
            sources[0].id
        );
    }
    let data_dir = config.storage.data_dir.clone();
    let started = Instant::now();
    let reports = tokio::task::spawn_blocking(move || {
        // The bar of the source being built; each source gets its own, left drawn when done.
        let current: Mutex<Option<ProgressBar>> = Mutex::new(None);
        let progress = |source: &KnowledgeSource, done: usize, total: usize| {
            let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
            if current.as_ref().is_none_or(|bar| bar.prefix() != source.id) {
                if let Some(done) = current.take() {
                    done.finish();
                }
                let bar = ProgressBar::new(total as u64)
                    .with_style(style())
                    .with_prefix(source.id.clone());
                *current = Some(bar);
            }
            if let Some(bar) = current.as_ref() {
                bar.set_position(done as u64);
            }
        };
        let built = Library::build(sources, &data_dir, &progress);
        if let Some(bar) = current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            bar.finish();
        }
        built.map(|(_, reports)| reports)
    })
    .await
    .context("indexing stopped")??;
    print!("{}", summary(&reports, started.elapsed()));
    Ok(())
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} documents")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// One line per source, then the totals.
fn summary(reports: &[BuildReport], elapsed: Duration) -> String {
    let mut text = String::new();
    for report in reports {
        let state = if report.rebuilt {
            "rebuilt"
        } else {
            "up to date"
        };
        let location = report
            .location
            .as_ref()
            .map_or_else(|| "in memory".to_owned(), |path| path.display().to_string());
        let _ = writeln!(
            text,
            "{:<20} {:>6} documents {:>8} passages  {:<10} {:>8.2} s  {location}",
            report.source_id,
            report.documents,
            report.passages,
            state,
            report.elapsed.as_secs_f64(),
        );
    }
    let rebuilt = reports.iter().filter(|report| report.rebuilt).count();
    let _ = writeln!(
        text,
        "indexed {} source{}: {} documents, {} passages in {:.2} s ({rebuilt} rebuilt, {} up to date)",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" },
        reports.iter().map(|report| report.documents).sum::<usize>(),
        reports.iter().map(|report| report.passages).sum::<usize>(),
        elapsed.as_secs_f64(),
        reports.len() - rebuilt,
    );
    text
}
