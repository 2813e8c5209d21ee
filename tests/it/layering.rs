//! The module dependency order ARCHITECTURE.md states, checked against the source: a module
//! may use only modules earlier in [`ORDER`], so there are no cycles, and the front ends reach
//! the layers below only through the registry's use cases.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first: each module with the modules it may use (`None`: any module above it). The
/// same table as "Layers and their order" in ARCHITECTURE.md.
const ORDER: &[(&str, Option<&[&str]>)] = &[
    ("common", Some(&[])),
    ("proto", Some(&[])),
    ("domain", Some(&["common"])),
    ("metrics", Some(&["common", "domain"])),
    ("storage", Some(&["common", "domain", "metrics"])),
    ("index", Some(&["common", "domain"])),
    (
        "liveness",
        Some(&["common", "domain", "index", "metrics", "storage"]),
    ),
    ("events", Some(&["common", "domain", "index"])),
    (
        "registry",
        Some(&[
            "common", "domain", "events", "index", "liveness", "metrics", "storage",
        ]),
    ),
    ("security", Some(&["common", "domain", "metrics"])),
    // A front end: it reaches the layers below only through the registry.
    (
        "api",
        Some(&["common", "proto", "domain", "registry", "security"]),
    ),
    // The HTTP front end binds the contract's operations (`api::ops`) to routes.
    (
        "web",
        Some(&["common", "proto", "domain", "registry", "security", "api"]),
    ),
    // The xDS front end: reads through the registry, statuses from `api::status`.
    (
        "xds",
        Some(&["common", "domain", "registry", "security", "api"]),
    ),
    ("client", Some(&["proto"])),
    ("sidecar", Some(&["proto", "client"])),
    ("ctl", Some(&["proto", "client"])),
    ("config", None),
    ("server", None),
];

/// Test-only files may reach further down (they test the layer below through its front end).
const TEST_ONLY: &[&str] = &["src/api/proptests.rs", "src/index/tests.rs"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::x` a file names outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&root, &mut all);
    let rank = |m: &str| ORDER.iter().position(|(o, _)| *o == m);
    let mut wrong = Vec::new();
    for file in &all {
        let rel = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let rel = rel.to_string_lossy().replace('\\', "/");
        let module = module_of(&root, file);
        if module == "main" || module == "lib" || TEST_ONLY.contains(&rel.as_str()) {
            continue;
        }
        let mine =
            rank(&module).unwrap_or_else(|| panic!("{rel}: module {module} is not in ORDER"));
        let allowed = ORDER[mine].1;
        for used in uses(&std::fs::read_to_string(file).unwrap()) {
            if used == module {
                continue;
            }
            let below = rank(&used).is_some_and(|r| r < mine);
            let listed = allowed.is_none_or(|a| a.contains(&used.as_str()));
            if !below || !listed {
                wrong.push(format!("{rel}: {module} uses {used}"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}
