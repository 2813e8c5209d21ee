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
    // ~40 KiB each: 8 MB of cards, more than 20 ms of parsing.
    let filler = "lorem ipsum ".repeat(3_400);
    let n = 200;
    for i in 0..n {
        let mut card = cards::simple(&format!("agent {i}"));
        card["description"] = filler.clone().into();
        let bytes = card.to_string();
        let card = Card::parse(CardKind::A2a, bytes.as_bytes(), DEFAULT_MAX_CARD_BYTES)
            .expect("a valid card");
        writer
            .publish_card("big", &format!("agent-{i}"), card)
            .await
            .expect("publish");
    }
    writer.close().await;

    let options = StoreOptions {
        timeout: Duration::from_millis(20),
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
