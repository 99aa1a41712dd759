//! `[knowledge]` sources and `[storage]`.

use super::*;

const SOURCE: &str = "[[knowledge.sources]]\nid = \"handbook\"\nname = \"Handbook\"\n\
                      description = \"How we work\"\ntype = \"knowledge_base\"\npath = \"docs\"\n";

#[test]
fn knowledge_sources_are_typed_tables() {
    let config = load_toml(SOURCE).unwrap();
    let [source] = &config.knowledge.sources[..] else {
        panic!("one source: {:?}", config.knowledge.sources);
    };
    assert_eq!(source.id.as_str(), "handbook");
    assert_eq!(source.name, "Handbook");
    assert_eq!(source.description, "How we work");
    assert_eq!(source.kind, SourceKind::KnowledgeBase);
    assert_eq!(source.path, Path::new("docs"));
    assert!(load_toml("").unwrap().knowledge.sources.is_empty());

    let literature = SOURCE.replace("knowledge_base", "literature");
    let config = load_toml(&literature).unwrap();
    assert_eq!(config.knowledge.sources[0].kind, SourceKind::Literature);
    let error = toml_error(&SOURCE.replace("knowledge_base", "wiki"));
    assert!(error.contains("wiki"), "{error}");
}

#[test]
fn a_source_id_must_be_a_tool_name() {
    for bad in ["Handbook", "hand-book", "", &"x".repeat(65), "ünï"] {
        let error = toml_error(&SOURCE.replace("\"handbook\"", &format!("{bad:?}")));
        assert!(
            error.contains("`knowledge.sources.0.id`: a source id is 1 to 64 characters"),
            "{bad}: {error}"
        );
    }
    let longest = "a_9".repeat(21) + "z";
    let config = load_toml(&SOURCE.replace("handbook", &longest)).unwrap();
    assert_eq!(config.knowledge.sources[0].id.as_str(), longest);
}

#[test]
fn source_ids_are_unique() {
    let error = toml_error(&format!("{SOURCE}{SOURCE}"));
    assert!(
        error.contains("knowledge.sources: two sources have the id \"handbook\""),
        "{error}"
    );
}

#[test]
fn a_source_has_no_unknown_or_missing_keys() {
    let error = toml_error(&format!("{SOURCE}folder = \"x\"\n"));
    assert!(
        error.contains("unknown key `knowledge.sources.0.folder`")
            || error.contains("unknown key") && error.contains("folder"),
        "{error}"
    );
    let error = toml_error(&SOURCE.replace("path = \"docs\"\n", ""));
    assert!(error.contains("path"), "{error}");
    let error = toml_error("[knowledge]\nsourcs = []\n");
    assert!(error.contains("unknown key `knowledge.sourcs`"), "{error}");
    let config = load_toml(&SOURCE.replace("description = \"How we work\"\n", "")).unwrap();
    assert_eq!(config.knowledge.sources[0].description, "");
}

#[test]
fn the_data_dir_comes_from_every_layer() {
    assert_eq!(
        load_toml("").unwrap().storage.data_dir,
        Path::new("parlor-data")
    );
    let config = load_from(
        "[storage]\ndata_dir = \"/var/lib/parlor\"\n",
        &[],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(config.storage.data_dir, Path::new("/var/lib/parlor"));
    let env = [("STORAGE__DATA_DIR", "/srv/parlor")];
    let config = load_from(SOURCE, &env, Overrides::default()).unwrap();
    assert_eq!(config.storage.data_dir, Path::new("/srv/parlor"));
    assert_eq!(
        config.knowledge.sources.len(),
        1,
        "env keeps the file's sources"
    );
    let error = toml_error("[storage]\ndata_dir = \"\"\n");
    assert!(error.contains("storage.data_dir"), "{error}");
    let error = toml_error("[storage]\ndatadir = \"x\"\n");
    assert!(error.contains("unknown key `storage.datadir`"), "{error}");
}

#[test]
fn the_storage_engine_is_chosen_by_url() {
    let config = load_toml("").unwrap();
    assert_eq!(config.storage.url, StorageUrl::Sqlite);
    assert_eq!(config.storage.retention_days, 30);
    assert_eq!(config.storage.pool_size, 8);

    let toml = "[storage]\nurl = \"memory\"\nretention_days = 0\npool_size = 2\n";
    let config = load_toml(toml).unwrap();
    assert_eq!(config.storage.url, StorageUrl::Memory);
    assert_eq!(config.storage.retention_days, 0);
    assert_eq!(config.storage.pool_size, 2);

    let env = [
        (
            "STORAGE__URL",
            "postgres://parlor:hunter2@127.0.0.1:5432/parlor",
        ),
        ("STORAGE__RETENTION_DAYS", "7"),
    ];
    let config = load_from("", &env, Overrides::default()).unwrap();
    assert!(matches!(config.storage.url, StorageUrl::Postgres(_)));
    assert_eq!(config.storage.retention_days, 7);
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let error = toml_error("[storage]\nurl = \"mysql://root:hunter2@x/db\"\n");
    assert!(error.contains("`storage.url`: must be empty"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    let error = toml_error("[storage]\npool_size = 0\n");
    assert!(
        error.contains("storage.pool_size: must be between 1 and 1000"),
        "{error}"
    );
    let error = toml_error("[storage]\nretention_days = -1\n");
    assert!(error.contains("`storage.retention_days`"), "{error}");
}
