//! A catalog that takes longer to read as cards than `--store-timeout` still loads: a
//! snapshot's cards are parsed after its transaction has ended (Postgres ends a transaction
//! left idle longer than the timeout, which once kept a replica with 100 000 cards from
//! starting).

use std::time::Duration;

use agent_registry_core::domain::card::{Card, CardKind, DEFAULT_MAX_CARD_BYTES};
use agent_registry_core::storage::{self, StoreOptions};

use crate::support::{Backend, TestDb, cards};

#[tokio::test]
async fn a_snapshot_reads_its_cards_after_its_transaction_ends() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let writer = storage::open(&db.url, &StoreOptions::default())
        .await
        .expect("open");
    // Cards of 60 skills each (~12 KiB): many small values, costly to read as cards.
    let skills: Vec<(String, Vec<&str>)> = (0..60)
        .map(|k| (format!("skill-{k}"), vec!["alpha", "beta", "gamma"]))
        .collect();
    let skills: Vec<(&str, &[&str])> = skills
        .iter()
        .map(|(id, tags)| (id.as_str(), tags.as_slice()))
        .collect();
    let n = 200;
    let mut stored = Vec::new();
    for i in 0..n {
        let bytes = cards::a2a(&format!("agent {i}"), &skills).to_string();
        let card = Card::parse(CardKind::A2a, bytes.as_bytes(), DEFAULT_MAX_CARD_BYTES)
            .expect("a valid card");
        stored.push((bytes, card.digest.clone()));
        writer
            .publish_card("big", &format!("agent-{i}"), card)
            .await
            .expect("publish");
    }
    writer.close().await;
    // How long reading them back as cards takes here, on one core; the store's timeout is set
    // well below it, so a read that held its transaction through the parsing would be ended.
    let started = std::time::Instant::now();
    for (bytes, digest) in &stored {
        Card::from_stored(CardKind::A2a, bytes.clone().into_bytes(), digest.clone()).unwrap();
    }
    let parsing = started.elapsed();

    let options = StoreOptions {
        timeout: (parsing / 3).max(Duration::from_millis(2)),
        ..StoreOptions::default()
    };
    let store = storage::open(&db.url, &options).await.expect("open");
    let started = std::time::Instant::now();
    let snapshot = store.snapshot().await.expect("the snapshot loads");
    let took = started.elapsed();
    assert_eq!(snapshot.cards.len(), n);
    assert!(snapshot.cards.iter().all(|c| c.card.is_some()));
    // What makes the test mean something: reading them took longer than the store's timeout.
    assert!(
        took > options.timeout,
        "the cards parsed in {took:?}: too fast to show the transaction was not held"
    );
    store.close().await;
}
