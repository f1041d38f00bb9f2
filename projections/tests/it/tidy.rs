//! Checks on the projections' source itself: every file says what it holds, the modules'
//! `crate::` imports point one way (no circles), and no read model imports another, so each
//! module can be read and changed knowing only what it imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> (PathBuf, Vec<PathBuf>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    (root, files)
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let (root, files) = src();
    let undocumented: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//! "))
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "these files do not start with a `//!` line saying what they hold: {undocumented:?}"
    );
}

/// Each top-level module -> the modules its code (not its comments, not its unit tests)
/// names as `crate::…`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let (root, files) = src();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        let module = relative.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs");
        if module == "lib" {
            continue;
        }
        let edges = uses.entry(module.to_owned()).or_default();
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let line = line.trim_start();
            if line.starts_with("#[cfg(test)]") {
                break;
            }
            if line.starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != module {
                    edges.insert(name);
                }
            }
        }
    }
    uses
}

/// The read models, by the file each lives in.
const READ_MODELS: &[&str] = &["directory", "timeline", "audit", "reports", "outbox", "search", "reads"];

#[test]
fn no_read_model_imports_another() {
    for (module, names) in imports().iter().filter(|(m, _)| READ_MODELS.contains(&m.as_str())) {
        let others: Vec<_> = names.iter().filter(|n| READ_MODELS.contains(&n.as_str())).collect();
        assert!(
            others.is_empty(),
            "read model {module} imports {others:?}: what read models share belongs in `apply`, so each \
             can be changed and rebuilt alone"
        );
    }
}

#[test]
fn crate_imports_between_top_level_modules_form_no_circle() {
    let uses = imports();
    // A depth-first search that reports the first circle it walks into.
    fn visit<'a>(
        module: &'a str,
        uses: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut circle = path[at..].to_vec();
            circle.push(module);
            panic!("the projections' modules import each other in a circle: {}", circle.join(" -> "));
        }
        path.push(module);
        for next in uses.get(module).into_iter().flatten() {
            visit(next, uses, path, done);
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in uses.keys() {
        visit(module, &uses, &mut Vec::new(), &mut done);
    }
}
