//! `parlor index` as a real process (docs/knowledge.md#the-command).

use std::path::Path;
use std::process::{Command, Output};

fn parlor_index(workdir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parlor"))
        .arg("index")
        .current_dir(workdir)
        .env("RUST_LOG", "error")
        .output()
        .expect("run parlor index")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const CONFIG: &str = "[storage]\ndata_dir = \"data\"\n\
    [[knowledge.sources]]\nid = \"notes\"\nname = \"Notes\"\ntype = \"knowledge_base\"\npath = \"notes\"\n\
    [[knowledge.sources]]\nid = \"papers\"\nname = \"Papers\"\ntype = \"literature\"\npath = \"papers\"\n";

#[test]
fn builds_every_source_then_finds_them_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
    for (path, text) in [
        ("notes/a.md", "# A\n\none\n\n## B\n\ntwo\n"),
        ("notes/sub/c.txt", "three"),
        ("papers/p.md", "# Paper\n\nabstract\n"),
        ("papers/figure.png", "not a document"),
    ] {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    let first = parlor_index(dir.path());
    assert!(first.status.success(), "{first:?}");
    let summary = stdout(&first);
    let line = |name: &str| {
        summary
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name} in {summary}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        line("notes").starts_with("notes 2 documents 3 passages rebuilt"),
        "{summary}"
    );
    assert!(
        line("papers").starts_with("papers 1 documents 1 passages rebuilt"),
        "{summary}"
    );
    assert!(
        summary.contains("indexed 2 sources: 3 documents, 4 passages in"),
        "{summary}"
    );
    assert!(summary.contains("(2 rebuilt, 0 up to date)"), "{summary}");
    assert!(
        dir.path()
            .join("data/indexes/notes/fingerprint.json")
            .is_file()
    );
    assert!(dir.path().join("data/indexes/papers/index").is_dir());

    std::fs::write(dir.path().join("papers/q.md"), "# Another\n\npaper\n").unwrap();
    let second = parlor_index(dir.path());
    assert!(second.status.success(), "{second:?}");
    let summary = stdout(&second);
    assert!(summary.contains("(1 rebuilt, 1 up to date)"), "{summary}");
    assert!(summary.contains("4 documents, 5 passages"), "{summary}");
}

#[test]
fn a_missing_folder_is_an_error_naming_the_source_and_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
    std::fs::create_dir(dir.path().join("notes")).unwrap();

    let output = parlor_index(dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("knowledge source `papers`: cannot read its folder papers:"),
        "{stderr}"
    );
}

#[test]
fn serve_does_not_start_with_a_missing_folder_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
    std::fs::create_dir(dir.path().join("notes")).unwrap();

    let mut serve = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "error")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run parlor serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            serve.kill().unwrap();
            panic!("parlor serve did not stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("knowledge source `papers`: cannot read its folder papers:"),
        "{stderr}"
    );
}

#[test]
fn without_sources_the_built_in_documentation_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let output = parlor_index(dir.path());
    assert!(output.status.success(), "{output:?}");
    let summary = stdout(&output);
    assert!(summary.starts_with("parlor_docs"), "{summary}");
    assert!(summary.contains("built"), "{summary}");
    assert!(summary.contains("in memory"), "{summary}");
    let documents = parlor::agent::knowledge::builtin::DOCUMENTS.len();
    assert!(
        summary.contains(&format!("indexed 1 source: {documents} documents")),
        "{summary}"
    );
    assert!(
        !dir.path().join("parlor-data").exists(),
        "the built-in index writes nothing"
    );
}
