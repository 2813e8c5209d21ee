//! Reading the workspace's sources as the layering checks need them: files and their module
//! paths, the code without comments and strings, every path it names (through `use` trees with
//! braces, `super::` and inline modules), what each file depends on, and trait impl headers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files compiled only for tests may reach further down (they test a layer through another).
pub fn test_only(file: &Path) -> bool {
    let name = file.file_name().unwrap().to_string_lossy();
    name == "tests.rs" || name.ends_with("proptests.rs") || name.ends_with("_tests.rs")
}

pub fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `a/b.rs` is `[a, b]`, `a/mod.rs` is `[a]`, `lib.rs` is `[]`.
pub fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut out: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(out.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        if out.len() == 1 && out[0] == "main" {
            return out;
        }
        out.pop();
    }
    out
}

/// The source without comments, strings and character literals (lifetimes stay).
pub fn code_only(text: &str) -> String {
    let (b, mut out, mut i) = (text.as_bytes(), String::with_capacity(text.len()), 0);
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    match (b[j], b.get(j + 1)) {
                        (b'/', Some(b'*')) => (depth, j) = (depth + 1, j + 2),
                        (b'*', Some(b'/')) => (depth, j) = (depth - 1, j + 2),
                        _ => j += 1,
                    }
                }
                i = j;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#')) && !ident_before(b, i) => {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let start = i + 2 + hashes;
                let end = b[start..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| start + p + close.len());
                out.push_str("\"\"");
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
                i = j + 1;
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                let close = b[i + 2..].iter().position(|c| *c == b'\'').unwrap_or(0);
                out.push_str("' '");
                i += 3 + close;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

pub fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Every path the code names from a root (`crate`, `super`, `self`, or one of the workspace's
/// crates), through `use` trees with braces: (root, the segments after it).
pub fn paths(code: &str) -> Vec<(String, Vec<String>)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for root in [
        "crate",
        "super",
        "agent_registry_core",
        "agent_registry_client",
    ] {
        for (at, _) in code.match_indices(root) {
            if ident_before(b, at) || !code[at + root.len()..].starts_with("::") {
                continue;
            }
            let mut rest = &code[at..];
            let mut supers: usize = 0;
            if root == "super" {
                while let Some(r) = rest.strip_prefix("super::") {
                    supers += 1;
                    rest = r.trim_start();
                }
                if at >= 7 && &code[at - 7..at] == "super::" {
                    continue; // counted from the first `super`
                }
            } else {
                rest = &rest[root.len() + 2..];
            }
            // Inside an inline `mod x { … }`, the first `super`s stay in this file's module.
            let supers = supers.saturating_sub(inline_depth(code, at));
            let label = match root {
                "super" if supers == 0 => "self".to_string(),
                "super" => format!("super{supers}"),
                r => r.to_string(),
            };
            for segments in tree(rest) {
                out.push((label.clone(), segments));
            }
        }
    }
    out
}

/// How many inline modules (`mod x { … }`) enclose the byte `at` of `code`.
fn inline_depth(code: &str, at: usize) -> usize {
    let mut open: Vec<bool> = Vec::new();
    let b = code.as_bytes();
    for (i, c) in code[..at].char_indices() {
        match c {
            '{' => {
                let before = code[..i].trim_end();
                let word_start = before
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |p| p + 1);
                let head = before[..word_start].trim_end();
                let is_mod = head.ends_with("mod") && !ident_before(b, head.len() - 3);
                open.push(is_mod && word_start < before.len());
            }
            '}' => {
                open.pop();
            }
            _ => {}
        }
    }
    open.iter().filter(|m| **m).count()
}

/// The paths one use tree stands for (`a::b`, `a::{b, c::d}`, `{a, b}`), three segments deep.
fn tree(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start();
    if text.starts_with('*') {
        // A glob: everything the path before it names.
        return vec![vec!["*".to_string()]];
    }
    if let Some(inner) = text.strip_prefix('{') {
        return group(inner)
            .into_iter()
            .flat_map(|item| tree(&item))
            .collect();
    }
    let ident: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        return Vec::new();
    }
    let after = text[ident.len()..].trim_start();
    let tails = after.strip_prefix("::").map(tree).unwrap_or_default();
    let tails: Vec<Vec<String>> = tails.into_iter().filter(|t| t[0] != "*").collect();
    if tails.is_empty() {
        return vec![vec![ident]];
    }
    tails
        .into_iter()
        .map(|mut tail| {
            tail.insert(0, ident.clone());
            tail.truncate(3);
            tail
        })
        .collect()
}

/// The top-level items of a brace group (after its `{`), up to its `}`.
fn group(text: &str) -> Vec<String> {
    let (mut items, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
}

/// What one file depends on, as (crate, top-level module) pairs of the workspace; `modules`
/// lists each crate's top-level modules (other names are items of the crate root: `lib`).
pub fn dependencies(
    krate: &str,
    me: &[String],
    code: &str,
    modules: &BTreeMap<&str, BTreeSet<String>>,
) -> BTreeSet<(String, String)> {
    let top = |krate: &str, first: Option<&String>| -> String {
        match first {
            Some(m) if modules[krate].contains(m) => m.clone(),
            _ => "lib".into(),
        }
    };
    let mut out = BTreeSet::new();
    if me.is_empty() {
        // The crate root names its modules without a root (`pub use options::…`).
        for segments in relative_uses(code, &modules[krate]) {
            out.insert((krate.to_string(), segments[0].clone()));
        }
    }
    for (root, segments) in paths(code) {
        let (target, first) = match root.as_str() {
            "crate" => (krate.to_string(), segments.first().cloned()),
            "agent_registry_core" => ("core".to_string(), segments.first().cloned()),
            "agent_registry_client" => ("client".to_string(), segments.first().cloned()),
            "self" => continue,
            supers => {
                let up: usize = supers["super".len()..].parse().unwrap();
                let base = &me[..me.len().saturating_sub(up)];
                let first = base.first().cloned().or_else(|| segments.first().cloned());
                (krate.to_string(), first)
            }
        };
        let module = top(&target, first.as_ref());
        out.insert((target, module));
    }
    out
}

/// For a trait impl's header (after `impl`), the names in its trait's arguments and in the
/// type it is for (`impl From<A> for B<C>`: A, B, C; never the trait itself), and those of the
/// type alone.
pub fn implemented_for(header: &str) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let mut rest = header.trim_start();
    if rest.starts_with('<') {
        // The impl's own generic parameters.
        let mut depth = 0;
        let end = rest.char_indices().find_map(|(i, c)| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        })?;
        rest = &rest[end + 1..];
    }
    let (tr, for_type) = rest.split_once(" for ")?;
    let for_type = for_type.split(['{', ';']).next()?.split(" where ").next()?;
    let args = tr.split_once('<').map_or("", |(_, a)| a);
    let words = |s: &str| -> BTreeSet<String> {
        s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some((words(&format!("{args} {for_type}")), words(for_type)))
}

/// The paths a crate root or `mod.rs` names relative to itself (`pub use child::Item`,
/// `use child::{…}`): (the child, the segments after it). Other roots are [`paths`]'s.
pub fn relative_uses(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("use ") {
        if ident_before(code.as_bytes(), at) {
            continue;
        }
        for segments in tree(&code[at + 4..]) {
            if segments
                .first()
                .is_some_and(|first| children.contains(first))
            {
                out.push(segments);
            }
        }
    }
    out
}

/// An `impl` header from its line to the `{` or `;` that ends it (headers may wrap).
pub fn impl_headers(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in code.lines().map(str::trim) {
        if current.is_none() && (line.starts_with("impl ") || line.starts_with("impl<")) {
            current = Some(String::new());
        }
        if let Some(header) = current.as_mut() {
            header.push(' ');
            header.push_str(line);
            if line.contains('{') || line.ends_with(';') {
                let header = current.take().unwrap();
                out.push(header.trim().trim_start_matches("impl").to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(code: &str) -> Vec<(String, Vec<String>)> {
        paths(&code_only(code))
    }

    #[test]
    fn paths_are_read_through_braces_supers_and_inline_modules() {
        let code = r#"
            use crate::{a, b::{c, d::E}};
            use super::super::x::Y;
            // use crate::commented;
            const S: &str = "crate::in_a_string";
            mod inner { pub use super::local::Z; }
            fn f() { agent_registry_core::registry::Registry::open(); }
            use crate::glob::*;
        "#;
        let found = names(code);
        let has = |root: &str, segs: &[&str]| {
            found
                .iter()
                .any(|(r, s)| r == root && s.iter().map(String::as_str).eq(segs.iter().copied()))
        };
        assert!(has("crate", &["a"]), "{found:?}");
        assert!(has("crate", &["b", "c"]), "{found:?}");
        assert!(has("crate", &["b", "d", "E"]), "{found:?}");
        assert!(has("super2", &["x", "Y"]), "{found:?}");
        assert!(has("self", &["local", "Z"]), "inline module: {found:?}");
        assert!(has(
            "agent_registry_core",
            &["registry", "Registry", "open"]
        ));
        assert!(has("crate", &["glob"]), "{found:?}");
        assert!(
            !found
                .iter()
                .any(|(_, s)| s.iter().any(|x| x == "commented"))
        );
        assert!(
            !found
                .iter()
                .any(|(_, s)| s.iter().any(|x| x == "in_a_string"))
        );
    }

    #[test]
    fn crate_roots_name_their_children_without_a_root() {
        let children: BTreeSet<String> = ["options", "proto"].map(String::from).into();
        let uses = relative_uses("pub use options::{A, B};\nuse std::sync::Arc;\n", &children);
        assert_eq!(uses, vec![vec!["options", "A"], vec!["options", "B"]]);
    }

    #[test]
    fn impl_headers_are_read_whole_and_split_at_for() {
        let code = "impl<S, B> tower::Service<http::Request<B>>\n    for Layer<S>\nwhere S: X\n{\n}\nimpl From<Low> for High {}\n";
        let headers = impl_headers(code);
        assert_eq!(headers.len(), 2, "{headers:?}");
        let (words, for_type) = implemented_for(&headers[0]).unwrap();
        assert!(for_type.contains("Layer") && words.contains("Request"));
        assert!(
            !words.contains("Service"),
            "the trait itself is not counted"
        );
        let (words, for_type) = implemented_for(&headers[1]).unwrap();
        assert!(words.contains("Low") && for_type.contains("High"));
    }
}
