//! `agent-registry ctl` against a real server: every subcommand, as a table and as JSON.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::support::{Backend, TestDb, TestServer, reg};

fn ctl(server: &TestServer, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-registry"));
    c.arg("ctl").args(["--server", &server.url]).args(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs ctl to completion with `input` on stdin; (exit success, stdout, stderr).
async fn run(server: &TestServer, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = ctl(server, args).spawn().expect("spawn ctl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("ctl finished")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn ok(server: &TestServer, args: &[&str]) -> String {
    let (success, out, err) = run(server, args, "").await;
    assert!(success, "ctl {args:?} failed: {err}");
    out
}

async fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(server, &all).await).expect("valid JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_as_table_and_json() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let mut a = reg("ops", "planner");
    a.endpoint = "10.0.0.1:7000".into();
    a.labels.insert("tier".into(), "gold".into());
    let a = s.register(a).await;
    let b = s.register(reg("ops", "critic")).await;

    // namespaces
    let table = ok(&s, &["namespaces"]).await;
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "ops");
    assert_eq!(&row[2..], ["0", "2", "0", "0", "2"], "{table}");
    let v = json(&s, &["namespaces"]).await;
    assert_eq!(v[0]["name"], "ops");
    assert_eq!(v[0]["alive"], 2);

    // list, with filters and views
    let table = ok(&s, &["list", "-n", "ops", "--label", "tier=gold"]).await;
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains(&a.instance_id) && table.contains("10.0.0.1:7000"));
    let v = json(&s, &["list", "-n", "ops", "--view", "all"]).await;
    assert_eq!(v.as_array().unwrap().len(), 2);

    // get
    let table = ok(&s, &["get", &a.instance_id]).await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("logical_id") && l.ends_with("planner"))
    );
    let v = json(&s, &["get", &a.instance_id]).await;
    assert_eq!(v["labels"]["tier"], "gold");
    assert_eq!(v["status"], "ALIVE");

    // drain and evict
    let table = ok(&s, &["drain", &a.instance_id]).await;
    assert!(table.contains("DRAINING"), "{table}");
    let v = json(&s, &["evict", &b.instance_id, "--reason", "test"]).await;
    assert_eq!(
        (v["status"].as_str(), v["death_reason"].as_str()),
        (Some("DEAD"), Some("EVICTED"))
    );

    // epoch show / advance (refused without confirmation, then confirmed on stdin)
    let v = json(&s, &["epoch", "show", "ops"]).await;
    let epoch = v["current_epoch"].as_str().unwrap().to_string();
    let (success, out, err) = run(&s, &["epoch", "advance", "ops"], "n\n").await;
    assert!(!success && err.contains("not confirmed"), "{out}{err}");
    assert_eq!(
        json(&s, &["epoch", "show", "ops"]).await["current_epoch"],
        epoch.as_str()
    );
    let (success, out, err) = run(&s, &["epoch", "advance", "ops"], "y\n").await;
    assert!(success, "{err}");
    assert!(out.contains("fenced 1 instance(s)"), "{out}");
    let v = json(&s, &["epoch", "advance", "ops", "--yes"]).await;
    assert_eq!(v["fenced_instances"], 0);
    assert_ne!(v["current_epoch"], epoch.as_str());

    // errors: one line on stderr, failure status
    let (success, _, err) = run(&s, &["get", "not-a-uuid"], "").await;
    assert!(!success);
    assert!(
        err.starts_with("error: ") && err.contains("instance_id"),
        "{err}"
    );

    // watch: the current set, a bookmark, then a live change, one line each
    for (output, check) in [("table", false), ("json", true)] {
        let ns = format!("watch-{output}");
        let mut child = ctl(&s, &["--output", output, "watch", "-n", &ns])
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        };
        let bookmark = next().await;
        assert!(
            bookmark.contains("BOOKMARK") || bookmark.contains("bookmark_revision"),
            "{bookmark}"
        );
        let c = s.register(reg(&ns, "live")).await;
        let line = next().await;
        if check {
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["type"], "PUT");
            assert_eq!(v["instance"]["instance_id"], c.instance_id.as_str());
        } else {
            assert!(
                line.contains("PUT") && line.contains(&c.instance_id),
                "{line}"
            );
        }
        child.kill().await.unwrap();
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_agent_show_what_live_agents_offer() {
    use crate::support::cards;
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    for (id, card) in [
        (
            "translator",
            cards::a2a("Translator", &[("translate", &["language"])]),
        ),
        (
            "summarizer",
            cards::a2a("Summarizer", &[("summarize", &["text"])]),
        ),
    ] {
        let mut r = reg("cat", id);
        r.card = Some(cards::proto_card(&card));
        s.register(r).await;
    }

    // A table ranked by the query, filtered by skill and tag.
    let table = ok(&s, &["agents", "-n", "cat", "-q", "translate"]).await;
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("LOGICAL_ID"), "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["translator", "LIVE", "1", "a2a", "Translator"],
        "{table}"
    );
    assert_eq!(lines.next(), None, "only the match: {table}");
    let v = json(&s, &["agents", "-n", "cat", "--tag", "text"]).await;
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 1, "{v}");
    assert_eq!(all[0]["logical_id"], "summarizer");
    assert_eq!(all[0]["state"], "LIVE");
    assert!(all[0]["digest"].as_str().unwrap().starts_with("sha256:"));
    let v = json(&s, &["agents", "-n", "cat"]).await;
    assert_eq!(v.as_array().unwrap().len(), 2, "no query: every live agent");

    // One agent: its card as published, its live instance.
    let detail = ok(&s, &["agent", "-n", "cat", "translator"]).await;
    assert!(
        detail.contains("Translator") && detail.contains("translate"),
        "{detail}"
    );
    let v = json(&s, &["agent", "-n", "cat", "translator"]).await;
    assert_eq!(v["card"]["name"], "Translator");
    assert_eq!(v["live_instances"].as_array().unwrap().len(), 1);

    // An agent without a card: one line naming what is missing.
    let (success, _, err) = run(&s, &["agent", "-n", "cat", "nobody"], "").await;
    assert!(!success && err.starts_with("error: "), "{err}");
    s.stop().await;
}
