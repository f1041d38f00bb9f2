//! The architecture invariants of `docs/ARCHITECTURE.md` that a program can check, checked:
//! which crate may depend on what, that each projection's SQL names only its own tables, and
//! that every source file says what it is for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The names of `krate`'s normal (not dev) dependencies.
fn dependencies(krate: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest.get("dependencies").and_then(|d| d.as_table()).map(|d| d.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn crates_depend_only_inward_and_only_the_lower_floors_know_sql() {
    let domain = dependencies("domain");
    for banned in ["tokio", "sqlx", "axum", "async-graphql", "reqwest", "redis"] {
        assert!(!domain.iter().any(|d| d == banned), "domain must do no I/O, yet depends on {banned}");
    }
    assert!(!domain.iter().any(|d| d.starts_with("openguild-")), "domain depends on nothing of ours: {domain:?}");
    for upper in ["api", "server"] {
        let deps = dependencies(upper);
        assert!(!deps.iter().any(|d| d == "sqlx"), "{upper} reads models through projections::queries, never SQL");
    }
    let floors = [
        ("store", &["openguild-domain"][..]),
        ("projections", &["openguild-domain", "openguild-store"]),
        ("federation", &["openguild-domain"]),
        ("voice", &["openguild-domain"]),
        ("matrix", &["openguild-domain", "openguild-store", "openguild-projections", "openguild-api"]),
        (
            "api",
            &[
                "openguild-domain",
                "openguild-store",
                "openguild-projections",
                "openguild-federation",
                "openguild-voice",
            ],
        ),
    ];
    for (krate, allowed) in floors {
        for dep in dependencies(krate).iter().filter(|d| d.starts_with("openguild-")) {
            assert!(allowed.contains(&dep.as_str()), "{krate} may not depend on {dep}: dependencies point inward");
        }
    }
}

/// Whether `text` names `table` as a whole word.
fn names(text: &str, table: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(table).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + table.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

#[test]
fn each_projection_names_only_its_own_tables() {
    let files: BTreeMap<&str, &str> = [
        ("directory", "directory.rs"),
        ("timeline", "timeline.rs"),
        ("audit_log", "audit.rs"),
        ("reports", "reports.rs"),
        ("federation_outbox", "outbox.rs"),
        ("search", "search.rs"),
        ("reads", "reads.rs"),
        ("voice", "voice.rs"),
    ]
    .into_iter()
    .collect();
    let projections = openguild_projections::all("hub.test");
    assert_eq!(projections.len(), files.len(), "a projection was added: map it to its source file here");
    for p in &projections {
        let file = files.get(p.name()).unwrap_or_else(|| panic!("no source file known for {}", p.name()));
        let source = std::fs::read_to_string(root().join("projections/src").join(file)).unwrap();
        // Code only: a comment may mention another read model.
        let text: String = source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        for other in projections.iter().filter(|o| o.name() != p.name()) {
            for table in other.tables() {
                assert!(
                    !names(&text, table),
                    "projection {} ({file}) names {table}, a table of {}: a projection reads only events \
                     and its own tables, so each rebuilds alone",
                    p.name(),
                    other.name()
                );
            }
        }
    }
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let mut missing = Vec::new();
    let mut stack: Vec<PathBuf> = ["domain", "store", "projections", "api", "federation", "voice", "server"]
        .iter()
        .map(|c| root().join(c))
        .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if !text.trim_start().starts_with("//!") {
                    missing.push(path.strip_prefix(root()).unwrap().display().to_string());
                }
            }
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "these files have no `//!` module doc saying what they hold: {missing:#?}");
}
