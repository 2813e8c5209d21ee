//! The crate graph as Cargo resolves it: the core depends on no transport, the client crate on
//! no part of the server. With the dependency absent, the compiler keeps each out.

use std::collections::BTreeSet;
use std::process::Command;

/// Every package `package` depends on (normal and build dependencies, transitively), as Cargo
/// resolves them for that package alone on this platform.
fn closure(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-e", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != package)
        .collect()
}

fn named(packages: &BTreeSet<String>, families: &[&str]) -> Vec<String> {
    packages
        .iter()
        .filter(|p| {
            families
                .iter()
                .any(|f| p == f || p.starts_with(&format!("{f}-")))
        })
        .cloned()
        .collect()
}

#[test]
fn the_core_crate_depends_on_no_transport() {
    let core = closure("agent-registry-core");
    let transport = [
        "tonic",
        "prost",
        "axum",
        "hyper",
        "tower",
        "h2",
        "agent-registry",
    ];
    assert_eq!(named(&core, &transport), Vec::<String>::new());
    assert!(
        core.contains("sqlx"),
        "the closure was read: {} packages",
        core.len()
    );
}

#[test]
fn the_client_crate_depends_on_no_part_of_the_server() {
    let client = closure("agent-registry-client");
    let server = [
        "sqlx",
        "axum",
        "redis",
        "libsqlite3-sys",
        "prometheus-client",
        "agent-registry",
    ];
    assert_eq!(named(&client, &server), Vec::<String>::new());
    assert!(
        client.contains("tonic"),
        "the closure was read: {} packages",
        client.len()
    );
}
