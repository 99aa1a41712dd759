//! Search latency and indexing throughput of the knowledge index on 10,000
//! generated passages (docs/benchmarks.md#knowledge-search). Ignored by default:
//!
//! ```sh
//! cargo test --release --test knowledge_benchmark -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use parlor::agent::knowledge::{Documents, KnowledgeSource, SourceIndex};
use parlor::config::SourceKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DOCUMENTS: usize = 1_000;
const SECTIONS_PER_DOCUMENT: usize = 10;
const WORDS_PER_SECTION: usize = 75;
const VOCABULARY: usize = 5_000;
const QUERIES: usize = 2_000;

/// Made-up words from syllables, so the text has no meaning but a realistic shape.
fn vocabulary(rng: &mut StdRng) -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mer", "tin", "sa", "ve", "ro", "dun", "pel", "qui", "tor", "an", "is", "bre",
        "cal", "fen", "gor", "hul", "jas", "nim", "op", "ral", "sek", "wy",
    ];
    (0..VOCABULARY)
        .map(|_| {
            (0..rng.random_range(2..=4))
                .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
                .collect()
        })
        .collect()
}

/// A word drawn with a skew, so some words are common and most are rare, as in text.
fn word<'a>(rng: &mut StdRng, words: &'a [String]) -> &'a str {
    let skewed = rng.random::<f64>().powi(3);
    &words[(skewed * words.len() as f64) as usize]
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

#[test]
#[ignore = "a benchmark: run it in release with --ignored --nocapture"]
fn search_latency_on_10_000_passages() {
    let mut rng = StdRng::seed_from_u64(7);
    let words = vocabulary(&mut rng);
    let corpus = tempfile::tempdir().unwrap();
    for document in 0..DOCUMENTS {
        let mut text = format!("# Document {document}\n\n");
        for section in 0..SECTIONS_PER_DOCUMENT {
            let heading: Vec<&str> = (0..3).map(|_| word(&mut rng, &words)).collect();
            text.push_str(&format!("## {} {section}\n\n", heading.join(" ")));
            let body: Vec<&str> = (0..WORDS_PER_SECTION)
                .map(|_| word(&mut rng, &words))
                .collect();
            text.push_str(&body.join(" "));
            text.push_str(".\n\n");
        }
        std::fs::write(corpus.path().join(format!("doc{document:04}.md")), text).unwrap();
    }
    let source = KnowledgeSource {
        id: "generated".into(),
        name: "generated".into(),
        description: String::new(),
        kind: SourceKind::KnowledgeBase,
        documents: Documents::Folder(corpus.path().to_path_buf()),
    };
    let data_dir = tempfile::tempdir().unwrap();
    let (index, report) = SourceIndex::open_or_build(&source, data_dir.path(), &|_, _| {}).unwrap();
    let build_s = report.elapsed.as_secs_f64();
    println!(
        "indexed {} documents, {} passages in {build_s:.2} s: {:.0} passages/s",
        report.documents,
        report.passages,
        report.passages as f64 / build_s
    );
    assert!(report.passages >= 10_000, "{}", report.passages);

    let reopened = Instant::now();
    let (index_again, report) =
        SourceIndex::open_or_build(&source, data_dir.path(), &|_, _| {}).unwrap();
    assert!(!report.rebuilt);
    println!(
        "opening it up to date: {:.1} ms",
        reopened.elapsed().as_secs_f64() * 1e3
    );
    drop(index_again);

    let queries: Vec<String> = (0..QUERIES)
        .map(|_| {
            let count = rng.random_range(3..=8);
            (0..count)
                .map(|_| word(&mut rng, &words))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for query in queries.iter().take(100) {
        index.search(query, 5).unwrap(); // warm-up
    }
    let mut latencies = Vec::with_capacity(QUERIES);
    let mut empty = 0;
    for query in &queries {
        let started = Instant::now();
        let hits = index.search(query, 5).unwrap();
        latencies.push(started.elapsed());
        empty += usize::from(hits.is_empty());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "search top 5 of {} passages, {QUERIES} queries of 3-8 words ({empty} without hits): \
         p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        report.passages,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
    );
}
