//! The layers ARCHITECTURE.md states, checked two ways. The crate graph: `agent-registry-core`
//! depends on no transport and the client crate on no server part, as Cargo resolves them (the
//! compiler then keeps each out). The modules: within each crate a module uses only the modules
//! its row allows, all below it — every path, `use` trees with braces and `super::` included —,
//! no module implements a trait for a type of a module below it (a conversion the lower module
//! could use would be an upward dependency the paths do not show), and the files of one module
//! never use each other in a cycle.

mod crates;
mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use parse::{
    code_only, dependencies, files, impl_headers, implemented_for, module_path, paths,
    relative_uses, test_only,
};

/// Bottom first, per crate: each module with what it may use. A bare name is a module of the
/// same crate; `core::x` is `agent_registry_core::x`; `client` is the client crate. `None`:
/// anything below it. `lib` is the crate root's own file.
type Table = &'static [(&'static str, Option<&'static [&'static str]>)];

const CORE: Table = &[
    ("common", Some(&[])),
    ("domain", Some(&["common"])),
    ("metrics", Some(&["common", "domain"])),
    ("storage", Some(&["common", "domain", "metrics"])),
    ("index", Some(&["common", "domain"])),
    // The flusher and the sweeper reach the index and the store's writes through their ports.
    (
        "liveness",
        Some(&["common", "domain", "metrics", "storage"]),
    ),
    ("events", Some(&["common", "domain", "index"])),
    (
        "registry",
        Some(&[
            "common", "domain", "metrics", "storage", "index", "liveness", "events",
        ]),
    ),
    ("lib", None),
];

const CLIENT: Table = &[
    ("proto", Some(&[])),
    ("backoff", Some(&[])),
    ("options", Some(&[])),
    ("targets", Some(&["options"])),
    ("card", Some(&[])),
    ("lib", Some(&["proto", "options", "targets", "card"])),
    ("cache", Some(&["proto", "lib", "backoff"])),
    ("keeper", Some(&["proto", "lib", "backoff", "options"])),
];

/// The front ends reach the core only through its use cases (`registry`), its plain types
/// (`domain`), its building blocks (`common`) and its instruments (`metrics`).
const SERVER: Table = &[
    ("proto", Some(&["client"])),
    (
        "security",
        Some(&["core::common", "core::domain", "core::metrics"]),
    ),
    (
        "api",
        Some(&[
            "proto",
            "security",
            "core::common",
            "core::domain",
            "core::metrics",
            "core::registry",
        ]),
    ),
    // The HTTP front end binds the gRPC one's operations (`api::ops`) and statuses.
    (
        "web",
        Some(&[
            "proto",
            "security",
            "api",
            "core::common",
            "core::domain",
            "core::registry",
        ]),
    ),
    (
        "xds",
        Some(&["security", "core::common", "core::domain", "core::registry"]),
    ),
    ("ctl", Some(&["proto", "client"])),
    ("sidecar", Some(&["proto", "client"])),
    ("config", None),
    ("server", None),
    ("main", None),
    ("lib", None),
];

/// The crates, each with its source root and table.
fn crates() -> [(&'static str, PathBuf, Table); 3] {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        ("core", top.join("crates/agent-registry-core/src"), CORE),
        (
            "client",
            top.join("crates/agent-registry-client/src"),
            CLIENT,
        ),
        ("server", top.join("src"), SERVER),
    ]
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let crates = crates();
    let mut modules: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, root, _) in &crates {
        let mut all = Vec::new();
        files(root, &mut all);
        let tops = all
            .iter()
            .filter_map(|f| module_path(root, f).first().cloned());
        modules.insert(name, tops.collect());
    }
    let mut wrong = Vec::new();
    for (krate, root, table) in &crates {
        let rank = |m: &str| table.iter().position(|(o, _)| *o == m);
        let mut all = Vec::new();
        files(root, &mut all);
        for file in all.iter().filter(|f| !test_only(f)) {
            let rel = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
            let path = module_path(root, file);
            let module = path.first().cloned().unwrap_or_else(|| "lib".into());
            let mine = rank(&module)
                .unwrap_or_else(|| panic!("{}: module {module} is in no table", rel.display()));
            let code = code_only(&std::fs::read_to_string(file).unwrap());
            for (target, used) in dependencies(krate, &path, &code, &modules) {
                let allowed = table[mine].1;
                let ok = if target == *krate {
                    used == module
                        || (rank(&used).is_some_and(|r| r < mine)
                            && allowed.is_none_or(|a| a.contains(&used.as_str())))
                } else {
                    let name = match target.as_str() {
                        "client" => "client".to_string(),
                        other => format!("{other}::{used}"),
                    };
                    allowed.is_none_or(|a| a.contains(&name.as_str()))
                };
                if !ok {
                    wrong.push(format!(
                        "{}: {krate}::{module} uses {target}::{used}",
                        rel.display()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

/// The type names each top-level module of a crate defines (items at a file's top level, so
/// an impl's associated types are not counted).
fn defined_types(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut all = Vec::new();
    files(root, &mut all);
    for file in &all {
        let module = module_path(root, file)
            .first()
            .cloned()
            .unwrap_or_else(|| "lib".into());
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for line in code.lines().filter(|l| !l.starts_with(char::is_whitespace)) {
            let item = line
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub ");
            for word in ["struct ", "enum ", "trait ", "type "] {
                let Some(rest) = item.strip_prefix(word) else {
                    continue;
                };
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    out.entry(module.clone()).or_default().insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn no_module_implements_traits_for_the_types_of_a_module_below_it() {
    for (_, root, table) in crates() {
        let types = defined_types(&root);
        let rank = |m: &str| table.iter().position(|(o, _)| *o == m);
        let mut all = Vec::new();
        files(&root, &mut all);
        let mut wrong = Vec::new();
        for file in all.iter().filter(|f| !test_only(f)) {
            let path = module_path(&root, file);
            let module = path.first().cloned().unwrap_or_else(|| "lib".into());
            let Some(mine) = rank(&module) else { continue };
            let code = code_only(&std::fs::read_to_string(file).unwrap());
            for header in impl_headers(&code) {
                let Some((words, for_type)) = implemented_for(&header) else {
                    continue;
                };
                // A conversion into one of this module's own types only serves its users.
                let own = types.get(&module);
                if for_type.iter().any(|w| own.is_some_and(|o| o.contains(w))) {
                    continue;
                }
                for (other, names) in &types {
                    let below = rank(other).is_some_and(|r| r < mine);
                    for name in names.intersection(&words) {
                        if below && !own.is_some_and(|m| m.contains(name)) {
                            wrong.push(format!(
                                "{}: {module} implements a trait for {other}'s {name}: `impl{header}`",
                                file.display()
                            ));
                        }
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

#[test]
fn the_files_of_a_module_never_use_each_other_in_a_cycle() {
    for (_, root, _) in crates() {
        let mut all = Vec::new();
        files(&root, &mut all);
        // Edges between sibling files: `super::sibling`, the full path to one, or an item the
        // parent re-exports from one (`super::Item` where `mod.rs` says `pub use sibling::Item`).
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        let known: BTreeSet<Vec<String>> = all.iter().map(|f| module_path(&root, f)).collect();
        let reexports = reexports(&root, &all, &known);
        for file in &all {
            let me = module_path(&root, file);
            if me.is_empty() || file.file_name().is_some_and(|n| n == "mod.rs") {
                continue;
            }
            let parent = me[..me.len() - 1].to_vec();
            let code = code_only(&std::fs::read_to_string(file).unwrap());
            for (rootword, segments) in paths(&code) {
                let mut target = match rootword.as_str() {
                    "super1" => [parent.clone(), segments].concat(),
                    "crate" => segments,
                    _ => continue,
                };
                target.truncate(parent.len() + 1);
                if let Some(child) = target
                    .last()
                    .and_then(|item| reexports.get(&(parent.clone(), item.clone())))
                {
                    target = [parent.clone(), vec![child.clone()]].concat();
                }
                if target.len() == parent.len() + 1
                    && target[..parent.len()] == parent[..]
                    && known.contains(&target)
                    && target != me
                {
                    edges.entry(me.clone()).or_default().insert(target);
                }
            }
        }
        for (from, tos) in &edges {
            for to in tos {
                assert!(
                    !reaches(&edges, to, from, &mut BTreeSet::new()),
                    "{}: `{}` and `{}` use each other",
                    root.display(),
                    from.join("::"),
                    to.join("::")
                );
            }
        }
    }
}

/// For each directory module (and the crate root), the items its `mod.rs` (`lib.rs`)
/// re-exports from one of its files: (the module's path, the item) → the file's name.
fn reexports(
    root: &Path,
    all: &[PathBuf],
    known: &BTreeSet<Vec<String>>,
) -> BTreeMap<(Vec<String>, String), String> {
    let mut out = BTreeMap::new();
    for file in all {
        let name = file.file_name().unwrap().to_string_lossy();
        if !matches!(name.as_ref(), "mod.rs" | "lib.rs") {
            continue;
        }
        let me = module_path(root, file);
        let children: BTreeSet<String> = known
            .iter()
            .filter(|k| k.len() == me.len() + 1 && k[..me.len()] == me[..])
            .map(|k| k[me.len()].clone())
            .collect();
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for segments in relative_uses(&code, &children) {
            if let Some(item) = segments.get(1) {
                out.insert((me.clone(), item.clone()), segments[0].clone());
            }
        }
    }
    out
}

fn reaches(
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    from: &Vec<String>,
    to: &Vec<String>,
    seen: &mut BTreeSet<Vec<String>>,
) -> bool {
    if from == to {
        return true;
    }
    if !seen.insert(from.clone()) {
        return false;
    }
    edges
        .get(from)
        .is_some_and(|next| next.iter().any(|n| reaches(edges, n, to, seen)))
}
