//! Retrieval quality of the knowledge index (docs/knowledge.md#retrieval-quality):
//! a corpus written for the test, and questions each answered by one passage.

use std::path::Path;

use parlor::agent::knowledge::{Documents, KnowledgeSource, SourceIndex};
use parlor::config::SourceKind;
use serde::Deserialize;

/// The passages each question may look through.
const TOP_K: usize = 5;
const REQUIRED_RECALL: f64 = 0.9;

#[derive(Deserialize)]
struct Question {
    question: String,
    /// The answering passage's document, relative to the corpus folder.
    document: String,
    /// Its innermost heading; `""` for a document without headings.
    heading: String,
}

#[test]
fn recall_at_5_is_at_least_0_9() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/knowledge");
    let questions: Vec<Question> =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("questions.json")).unwrap())
            .unwrap();
    assert!(questions.len() >= 40, "{} questions", questions.len());
    let source = KnowledgeSource {
        id: "fixtures".into(),
        name: "fixtures".into(),
        description: String::new(),
        kind: SourceKind::KnowledgeBase,
        documents: Documents::Folder(fixtures.join("corpus")),
    };
    let data_dir = tempfile::tempdir().unwrap();
    let (index, report) = SourceIndex::open_or_build(&source, data_dir.path(), &|_, _| {}).unwrap();
    assert!(report.documents >= 15, "{} documents", report.documents);

    let mut found = 0;
    let mut first = 0;
    for question in &questions {
        let hits = index.search(&question.question, TOP_K).unwrap();
        let rank = hits.iter().position(|hit| {
            hit.path == question.document
                && hit.headings.last().map_or("", String::as_str) == question.heading
        });
        if let Some(rank) = rank {
            found += 1;
            first += usize::from(rank == 0);
        } else {
            let got: Vec<String> = hits
                .iter()
                .map(|hit| format!("{} / {}", hit.path, hit.headings.join(" > ")))
                .collect();
            println!(
                "missed: {:?} (wanted {} / {}), got {got:?}",
                question.question, question.document, question.heading
            );
        }
    }
    let recall = found as f64 / questions.len() as f64;
    println!(
        "recall@{TOP_K}: {recall:.3} ({found} of {} questions; recall@1: {:.3}; {} documents, {} passages)",
        questions.len(),
        first as f64 / questions.len() as f64,
        report.documents,
        report.passages
    );
    assert!(
        recall >= REQUIRED_RECALL,
        "recall@{TOP_K} {recall:.3} < {REQUIRED_RECALL}"
    );
}
