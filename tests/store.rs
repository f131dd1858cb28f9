//! The store's own rules, on SQLite and PostgreSQL: key expiry and purge, leases, and that
//! an order reads back exactly as written.

#[macro_use]
mod common;

use std::time::Duration;

use common::Backend;
use order_service::domain::idempotency::{Fingerprint, IdempotencyKey};
use order_service::domain::order::Order;
use order_service::domain::when;
use order_service::store::{Lease, NewKey, Store, StoreError, StoreSettings};

on_both_databases!(
    expired_keys_are_purged_and_live_ones_kept,
    a_key_cannot_be_taken_twice,
    progress_is_refused_to_a_process_without_the_lease,
    an_order_reads_back_as_written,
);

async fn open(backend: &Backend, dir: &tempfile::TempDir) -> Store {
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("o.db").display()),
        Backend::Postgres(base) => common::fresh_schema(base).await,
    };
    Store::open(&StoreSettings {
        url,
        max_connections: 2,
        sqlite_synchronous: Default::default(),
    })
    .await
    .unwrap()
}

fn lease(owner: &str) -> Lease {
    Lease {
        owner: owner.to_owned(),
        ttl: Duration::from_secs(30),
    }
}

async fn insert_with_key(store: &Store, key: &str, expires_in: chrono::Duration) -> Order {
    let order = common::new_order(3);
    let key = IdempotencyKey::parse(key).unwrap();
    let fingerprint = Fingerprint::from_stored("f".repeat(64));
    store
        .insert_order(
            &order,
            Some(NewKey {
                key: &key,
                fingerprint: &fingerprint,
                expires_at: when::now() + expires_in,
            }),
            &common::created_event(),
            &lease("a"),
        )
        .await
        .unwrap();
    order
}

async fn expired_keys_are_purged_and_live_ones_kept(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&backend, &dir).await;
    let old = insert_with_key(&store, "old", chrono::Duration::seconds(-1)).await;
    insert_with_key(&store, "live", chrono::Duration::hours(1)).await;
    assert_eq!(store.purge_expired_keys(when::now()).await.unwrap(), 1);
    let user = old.user_id.clone();
    assert!(
        store
            .find_key(&user, &IdempotencyKey::parse("old").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_key(&user, &IdempotencyKey::parse("live").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store.find_order(old.id).await.unwrap().is_some(),
        "orders stay"
    );
}

async fn a_key_cannot_be_taken_twice(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&backend, &dir).await;
    insert_with_key(&store, "k", chrono::Duration::hours(1)).await;
    let second = common::new_order(3);
    let key = IdempotencyKey::parse("k").unwrap();
    let fingerprint = Fingerprint::from_stored("0".repeat(64));
    let result = store
        .insert_order(
            &second,
            Some(NewKey {
                key: &key,
                fingerprint: &fingerprint,
                expires_at: when::now(),
            }),
            &common::created_event(),
            &lease("b"),
        )
        .await;
    assert!(matches!(result, Err(StoreError::KeyTaken)), "{result:?}");
    assert!(
        store.find_order(second.id).await.unwrap().is_none(),
        "nothing of the refused order was written"
    );
    // The refused write was rolled back: the next one goes through.
    let third = common::new_order(1);
    store
        .insert_order(&third, None, &common::created_event(), &lease("c"))
        .await
        .unwrap();
    assert!(store.find_order(third.id).await.unwrap().is_some());
}

async fn progress_is_refused_to_a_process_without_the_lease(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&backend, &dir).await;
    let mut order = common::new_order(3);
    store
        .insert_order(&order, None, &common::created_event(), &lease("owner-a"))
        .await
        .unwrap();
    order.progress.payment_status = Some("completed".into());
    let refused = store
        .save_progress(&order, &[common::created_event()], &lease("owner-b"))
        .await;
    assert!(matches!(refused, Err(StoreError::LeaseLost(id)) if id == order.id));
    assert_eq!(
        store.events(order.id).await.unwrap().len(),
        1,
        "a refused save writes no events"
    );
    assert_eq!(
        store
            .find_order(order.id)
            .await
            .unwrap()
            .unwrap()
            .progress
            .payment_status,
        None,
        "nor any state"
    );
    store
        .save_progress(&order, &[common::created_event()], &lease("owner-a"))
        .await
        .unwrap();
    assert_eq!(store.events(order.id).await.unwrap().len(), 2);
}

async fn an_order_reads_back_as_written(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&backend, &dir).await;
    let order = common::new_order(3);
    store
        .insert_order(&order, None, &common::created_event(), &lease("a"))
        .await
        .unwrap();
    let read = store.find_order(order.id).await.unwrap().unwrap();
    assert_eq!(read, order);
}
