//! The store's own rules, on SQLite and PostgreSQL: key expiry and purge, leases, and that
//! an order reads back exactly as written.

#[macro_use]
mod common;

use std::time::Duration;

use common::Backend;
use order_service::domain::idempotency::{Fingerprint, IdempotencyKey};
use order_service::domain::ids::ReservationId;
use order_service::domain::order::Order;
use order_service::domain::when;
use order_service::store::{Lease, NewKey, Store, StoreError, StoreSettings};

on_both_databases!(
    expired_keys_are_purged_and_live_ones_kept,
    a_key_cannot_be_taken_twice,
    progress_is_refused_to_a_process_without_the_lease,
    an_order_reads_back_as_written,
    concurrent_orders_under_one_key_store_exactly_one,
    concurrent_saves_apply_only_under_their_own_lease,
    new_orders_and_saves_at_once_all_land,
    text_from_downstream_with_nul_characters_is_stored,
);

async fn open(backend: &Backend, dir: &tempfile::TempDir) -> Store {
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("o.db").display()),
        Backend::Postgres(base) => common::fresh_schema(base).await,
    };
    Store::open(&StoreSettings {
        url,
        max_connections: 4,
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

/// Many orders at once, three under each key: the store gathers concurrent writes into
/// shared statements or transactions, and within one a key must still go to one order.
async fn concurrent_orders_under_one_key_store_exactly_one(backend: Backend) {
    order_service::telemetry::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&backend, &dir).await;
    let fingerprint = Fingerprint::from_stored("f".repeat(64));
    let mut tries = Vec::new();
    for n in 0..60 {
        let store = store.clone();
        let fingerprint = fingerprint.clone();
        let key = IdempotencyKey::parse(&format!("key-{}", n % 20)).unwrap();
        tries.push(tokio::spawn(async move {
            let order = common::new_order(1);
            let new_key = NewKey {
                key: &key,
                fingerprint: &fingerprint,
                expires_at: when::now() + chrono::Duration::hours(1),
            };
            let result = store
                .insert_order(&order, Some(new_key), &common::created_event(), &lease("a"))
                .await;
            (key, order, result)
        }));
    }
    let mut winners = std::collections::HashMap::new();
    for attempt in tries {
        let (key, order, result) = attempt.await.unwrap();
        match result {
            Ok(()) => {
                assert!(
                    winners.insert(key, order.id).is_none(),
                    "a key went to two orders"
                );
                assert_eq!(store.events(order.id).await.unwrap().len(), 1);
            }
            Err(StoreError::KeyTaken) => {
                assert!(store.find_order(order.id).await.unwrap().is_none());
                assert!(store.events(order.id).await.unwrap().is_empty());
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 20, "every key went to one order");
    assert!(
        shared_commits(&backend) > 0,
        "some orders were written together"
    );
    let user = common::new_order(1).user_id;
    for (key, order_id) in &winners {
        let record = store.find_key(&user, key).await.unwrap().unwrap();
        assert_eq!(record.order_id, *order_id);
    }
}

/// Many saves at once, half of them from a process that does not hold the lease: those
/// are refused and write nothing, the others land with their events in order.
async fn concurrent_saves_apply_only_under_their_own_lease(backend: Backend) {
    order_service::telemetry::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&backend, &dir).await;
    let mut orders = Vec::new();
    for _ in 0..40 {
        let order = common::new_order(2);
        store
            .insert_order(&order, None, &common::created_event(), &lease("a"))
            .await
            .unwrap();
        orders.push(order);
    }
    let mut saves = Vec::new();
    for (n, mut order) in orders.into_iter().enumerate() {
        let store = store.clone();
        let owner = if n % 2 == 0 { "a" } else { "b" };
        saves.push(tokio::spawn(async move {
            order.progress.payment_status = Some(format!("paid-{n}"));
            let events: Vec<_> = ["pay", "ship"]
                .into_iter()
                .map(|step| order_service::store::NewEvent {
                    step,
                    detail: Some(format!("{step} of {n}")),
                    ..common::created_event()
                })
                .collect();
            let result = store.save_progress(&order, &events, &lease(owner)).await;
            (n, order, result)
        }));
    }
    for save in saves {
        let (n, order, result) = save.await.unwrap();
        let stored = store.find_order(order.id).await.unwrap().unwrap();
        let steps: Vec<String> = store
            .events(order.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{}:{}", e.step, e.detail.unwrap_or_default()))
            .collect();
        if n % 2 == 0 {
            result.unwrap();
            assert_eq!(stored.progress.payment_status, Some(format!("paid-{n}")));
            assert_eq!(
                steps,
                vec![
                    "create:".to_owned(),
                    format!("pay:pay of {n}"),
                    format!("ship:ship of {n}")
                ]
            );
        } else {
            assert!(matches!(result, Err(StoreError::LeaseLost(id)) if id == order.id));
            assert_eq!(stored.progress.payment_status, None);
            assert_eq!(steps, vec!["create:".to_owned()]);
        }
    }
    assert!(
        shared_commits(&backend) > 0,
        "some saves were written together"
    );
}

/// New orders and saves of other orders at once: they share statements (one commit for
/// both kinds) and every one of them lands, with its events.
async fn new_orders_and_saves_at_once_all_land(backend: Backend) {
    order_service::telemetry::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&backend, &dir).await;
    let shared_before = shared_commits(&backend);
    let mut saved = Vec::new();
    for _ in 0..30 {
        let order = common::new_order(1);
        store
            .insert_order(&order, None, &common::created_event(), &lease("a"))
            .await
            .unwrap();
        saved.push(order);
    }
    let fingerprint = Fingerprint::from_stored("f".repeat(64));
    let mut writes = Vec::new();
    for (n, mut order) in saved.into_iter().enumerate() {
        let saver = store.clone();
        writes.push(tokio::spawn(async move {
            order.reserved(ReservationId::from(format!("res-{n}")));
            let event = order_service::store::NewEvent {
                step: "reserve",
                ..common::created_event()
            };
            saver
                .save_progress(&order, &[event], &lease("a"))
                .await
                .unwrap();
            (
                order.id,
                Some(format!("res-{n}")),
                vec!["create", "reserve"],
            )
        }));
        let store = store.clone();
        let fingerprint = fingerprint.clone();
        writes.push(tokio::spawn(async move {
            let order = common::new_order(1);
            let key = IdempotencyKey::parse(&format!("both-{n}")).unwrap();
            let new_key = NewKey {
                key: &key,
                fingerprint: &fingerprint,
                expires_at: when::now() + chrono::Duration::hours(1),
            };
            store
                .insert_order(&order, Some(new_key), &common::created_event(), &lease("a"))
                .await
                .unwrap();
            (order.id, None, vec!["create"])
        }));
    }
    for write in writes {
        let (id, reservation, steps) = write.await.unwrap();
        let stored = store.find_order(id).await.unwrap().unwrap();
        assert_eq!(
            stored.reservation_id().map(|r| r.as_str().to_owned()),
            reservation
        );
        let events: Vec<String> = store
            .events(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.step)
            .collect();
        assert_eq!(events, steps);
    }
    assert!(
        shared_commits(&backend) > shared_before,
        "some writes were committed together"
    );
}

/// How many commits so far (in this test process) carried more than one write on the
/// backend's database, from the `db_write_batch_size` histogram (both databases commit
/// batches that mix new orders and saves, counted as `any`).
fn shared_commits(backend: &Backend) -> u64 {
    let text = order_service::telemetry::metrics::install().render();
    let any = [backend.metrics_label(), "write=\"any\""];
    let commits = common::metric_total(&text, "db_write_batch_size_count", &any);
    let alone = common::metric_total(
        &text,
        "db_write_batch_size_bucket",
        &[any[0], any[1], "le=\"1\""],
    );
    (commits - alone) as u64
}

/// Requests with U+0000 are refused, but downstream services' text is stored as it comes:
/// a NUL there must not make the order's saves fail. PostgreSQL cannot hold it and gets
/// U+FFFD instead; SQLite keeps it.
async fn text_from_downstream_with_nul_characters_is_stored(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&backend, &dir).await;
    let mut order = common::new_order(1);
    store
        .insert_order(&order, None, &common::created_event(), &lease("a"))
        .await
        .unwrap();
    order.reserved(ReservationId::from("r-\u{0}".to_owned()));
    order.progress.payment_status = Some("odd\u{0}status".to_owned());
    let event = order_service::store::NewEvent {
        detail: Some("Upstream error: \u{0}".to_owned()),
        ..common::created_event()
    };
    store
        .save_progress(&order, &[event], &lease("a"))
        .await
        .unwrap();
    let nul = match backend {
        Backend::Sqlite => "\u{0}",
        Backend::Postgres(_) => "\u{fffd}",
    };
    let stored = store.find_order(order.id).await.unwrap().unwrap();
    assert_eq!(
        stored.reservation_id().map(|r| r.as_str().to_owned()),
        Some(format!("r-{nul}"))
    );
    assert_eq!(
        stored.progress.payment_status,
        Some(format!("odd{nul}status"))
    );
    let events = store.events(order.id).await.unwrap();
    assert_eq!(
        events.last().unwrap().detail,
        Some(format!("Upstream error: {nul}"))
    );
}

/// The page size of the SQLite file at `path`, read the way an operator would.
fn sqlite_page_size(path: &std::path::Path) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.pragma_query_value(None, "page_size", |row| row.get(0))
        .unwrap()
}

/// A database the service creates has 2 KiB pages: fewer bytes written per order than
/// SQLite's 4 KiB (see `NEW_DATABASE_PAGE_SIZE`).
#[tokio::test]
async fn a_new_sqlite_database_has_2_kib_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&Backend::Sqlite, &dir).await;
    let order = common::new_order(3);
    store
        .insert_order(&order, None, &common::created_event(), &lease("a"))
        .await
        .unwrap();
    assert_eq!(sqlite_page_size(&dir.path().join("o.db")), 2048);
}

/// A database made before, with SQLite's default 4 KiB pages, keeps them (SQLite cannot
/// change them in WAL mode) and takes and serves orders as before, also once reopened.
#[tokio::test]
async fn a_sqlite_database_with_4_kib_pages_keeps_them_and_serves_orders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.pragma_update(None, "page_size", 4096).unwrap();
        old.pragma_update(None, "journal_mode", "WAL").unwrap();
        old.execute_batch("CREATE TABLE made_before (n INTEGER)")
            .unwrap();
    }
    let order = common::new_order(3);
    {
        let store = open(&Backend::Sqlite, &dir).await;
        store
            .insert_order(&order, None, &common::created_event(), &lease("a"))
            .await
            .unwrap();
        assert_eq!(
            store.find_order(order.id).await.unwrap().as_ref(),
            Some(&order)
        );
        store.close().await;
    }
    let store = open(&Backend::Sqlite, &dir).await;
    assert_eq!(store.find_order(order.id).await.unwrap(), Some(order));
    assert_eq!(sqlite_page_size(&path), 4096);
}
