use super::tables::EVICTABLE_AFTER;
use super::*;
use crate::store::Store;
use crate::testing::ShiftedClock;

fn open(dir: &Path) -> Store {
    Store::new(Arc::new(Embedded::open(dir, 1_000).expect("opens")))
}

#[tokio::test]
async fn keeps_the_store_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    crate::store::contract::check_all(&open(dir.path())).await;
}

#[tokio::test]
async fn keeps_the_store_contract_in_memory() {
    let store = Store::new(Arc::new(Embedded::in_memory().expect("opens")));
    crate::store::contract::check_all(&store).await;
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let window = Duration::from_secs(60);
    {
        let embedded = Arc::new(Embedded::open(dir.path(), 1_000).expect("opens"));
        let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
        store
            .push("q", b"kept".to_vec(), 10, None)
            .await
            .expect("push");
        store.put("r", b"v".to_vec(), window).await.expect("put");
        assert_eq!(
            store.pass("g", 2, window).await,
            Ok(Passage::Open { used: 1 })
        );
        embedded.close().await;
        assert_eq!(store.get("r").await, Err(StoreError::Closed));
    }
    // Closing released the file.
    let store = open(dir.path());
    assert_eq!(store.peek("q", 5).await.expect("peek")[0].data, b"kept");
    assert_eq!(store.get("r").await, Ok(Some(b"v".to_vec())));
    assert_eq!(store.gate_state("g", window).await.expect("state").used, 1);
}

#[tokio::test]
async fn gates_and_expiries_follow_the_clock_they_are_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ShiftedClock::default());
    let embedded = Embedded::open_with_clock(dir.path(), 1_000, clock.clone()).expect("opens");
    let store = Store::new(Arc::new(embedded));
    let window = Duration::from_secs(60);
    assert_eq!(
        store.pass("g", 1, window).await,
        Ok(Passage::Open { used: 1 })
    );
    store.put("r", b"v".to_vec(), window).await.expect("put");
    clock.advance(window);
    assert_eq!(
        store.pass("g", 1, window).await,
        Ok(Passage::Open { used: 1 })
    );
    assert_eq!(store.get("r").await, Ok(None), "expired a minute later");
}

#[tokio::test]
async fn records_are_bounded_closest_to_expiry_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::new(Arc::new(Embedded::open(dir.path(), 3).expect("opens")));
    for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let ttl = EVICTABLE_AFTER + Duration::from_secs(100 + u64::try_from(i).unwrap());
        store.put(key, b"v".to_vec(), ttl).await.expect("put");
    }
    assert_eq!(store.get("a").await, Ok(None), "evicted");
    assert_eq!(store.get("b").await, Ok(None), "evicted");
    assert_eq!(store.get("e").await, Ok(Some(b"v".to_vec())));
}

#[tokio::test]
async fn records_about_to_expire_are_never_evicted() {
    // A claim or a "queued once" mark evicted early would let an event
    // through twice; they are short-lived, so they bound themselves.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::new(Arc::new(Embedded::open(dir.path(), 2).expect("opens")));
    for key in ["a", "b", "c", "d"] {
        store
            .put(key, b"v".to_vec(), Duration::from_secs(30))
            .await
            .expect("put");
    }
    for key in ["a", "b", "c", "d"] {
        assert_eq!(store.get(key).await, Ok(Some(b"v".to_vec())), "{key}");
    }
}

#[test]
fn an_unwritable_path_is_named_with_what_to_do() {
    let err = Embedded::open(Path::new("/proc/no-such-dir/store"), 10).expect_err("fails");
    let text = err.to_string();
    assert!(
        text.starts_with("store.path /proc/no-such-dir/store"),
        "{text}"
    );
    assert!(text.contains("writable"), "{text}");
}

#[tokio::test]
async fn a_second_process_on_the_same_path_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = open(dir.path());
    let err = Embedded::open(dir.path(), 10).expect_err("in use");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

/// Retries `op` (a bounded number of times, a little apart) until it
/// succeeds; its last error if it never does.
async fn eventually<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut last = Err(StoreError::Closed);
    for _ in 0..200 {
        last = op().await;
        if last.is_ok() {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test]
async fn after_an_io_error_the_database_is_reopened_by_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = Arc::new(Embedded::open(dir.path(), 1_000).expect("opens"));
    let faults = embedded.fault_switch();
    let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
    let ttl = Duration::from_secs(600);
    store.put("before", b"v".to_vec(), ttl).await.expect("put");

    // The disk fills: the write fails, and then every operation does,
    // reads included, at once rather than from a poisoned database.
    faults.store(true, std::sync::atomic::Ordering::Relaxed);
    let failed = store.put("during", b"v".to_vec(), ttl).await;
    assert!(
        matches!(&failed, Err(StoreError::Unavailable { reason, .. }) if reason.contains("no space left")),
        "{failed:?}"
    );
    let read = store.get("before").await;
    assert!(
        matches!(&read, Err(StoreError::Unavailable { reason, .. }) if reason.contains("reopened")),
        "{read:?}"
    );
    let probe = embedded.health().await;
    assert!(probe.is_err(), "the probe sees it too: {probe:?}");
    // Still full: reopening fails, and is tried again later.
    tokio::time::sleep(heal::FIRST_RETRY * 2).await;
    assert!(store.put("during", b"v".to_vec(), ttl).await.is_err());

    // Space is freed: the store reopens on the operations that follow,
    // with what it held before the error.
    faults.store(false, std::sync::atomic::Ordering::Relaxed);
    eventually(|| embedded.health()).await.expect("healed");
    assert_eq!(store.get("before").await, Ok(Some(b"v".to_vec())));
    store
        .put("after", b"v".to_vec(), ttl)
        .await
        .expect("writes again");
    assert_eq!(store.get("after").await, Ok(Some(b"v".to_vec())));
    embedded.close().await;
    // And what it wrote after reopening is on disk.
    let reopened = open(dir.path());
    assert_eq!(reopened.get("after").await, Ok(Some(b"v".to_vec())));
}

#[tokio::test]
async fn the_probe_finds_a_full_disk_under_lazy_writes() {
    // Lazy writes (the ledger's records) reach the file only with the
    // next durable commit: the probe's is one, so it finds the full disk,
    // and the lazy writes after it fail.
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = Arc::new(Embedded::open(dir.path(), 1_000).expect("opens"));
    let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
    embedded
        .fault_switch()
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let ttl = Duration::from_secs(600);
    let _ = store.put_lazily("r", b"v".to_vec(), ttl).await;
    let probe = embedded.health().await;
    assert!(probe.is_err(), "{probe:?}");
    let lazy = store.put_lazily("s", b"v".to_vec(), ttl).await;
    assert!(lazy.is_err(), "{lazy:?}");
}

/// Fails the disk under `embedded` for one durable commit (the probe's),
/// then lets it heal.
async fn fail_a_durable_commit_then_heal(embedded: &Embedded) {
    let faults = embedded.fault_switch();
    faults.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(embedded.health().await.is_err(), "the durable commit fails");
    faults.store(false, std::sync::atomic::Ordering::Relaxed);
    eventually(|| embedded.health()).await.expect("healed");
}

#[tokio::test]
async fn lazy_puts_not_yet_durable_are_written_again_after_the_reopen() {
    // The ledger's records of events answered 200: a full disk must not
    // lose them with the database that could not make them durable.
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = Arc::new(Embedded::open(dir.path(), 1_000).expect("opens"));
    let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
    let ttl = Duration::from_secs(600);
    store
        .put_lazily("answered", b"done".to_vec(), ttl)
        .await
        .expect("lazy put");
    fail_a_durable_commit_then_heal(&embedded).await;
    assert_eq!(store.get("answered").await, Ok(Some(b"done".to_vec())));
    embedded.close().await;
    let reopened = open(dir.path());
    assert_eq!(
        reopened.get("answered").await,
        Ok(Some(b"done".to_vec())),
        "durable"
    );
}

#[tokio::test]
async fn marks_expire_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ShiftedClock::default());
    let minute = Duration::from_secs(60);
    {
        let embedded =
            Arc::new(Embedded::open_with_clock(dir.path(), 1_000, clock.clone()).expect("opens"));
        let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
        store
            .remember("lazy", minute, true)
            .await
            .expect("remember");
        store
            .remember("long", 10 * minute, false)
            .await
            .expect("remember");
        embedded.close().await;
    }
    let embedded = Embedded::open_with_clock(dir.path(), 1_000, clock.clone()).expect("opens");
    let store = Store::new(Arc::new(embedded));
    assert_eq!(
        store.remembered("lazy").await,
        Ok(true),
        "closing flushed it"
    );
    assert_eq!(store.remembered("long").await, Ok(true));
    clock.advance(minute + Duration::from_secs(1));
    assert_eq!(store.remembered("lazy").await, Ok(false), "expired");
    assert_eq!(store.remembered("long").await, Ok(true));
}

#[tokio::test]
async fn marks_are_bounded_oldest_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::new(Arc::new(Embedded::open(dir.path(), 3).expect("opens")));
    let keys = ["a", "b", "c", "d", "e"];
    for (i, key) in keys.iter().enumerate() {
        let ttl = Duration::from_secs(1_000 + 100 * u64::try_from(i).expect("small"));
        store.remember(key, ttl, false).await.expect("remember");
    }
    // One more write: its batch's sweep sees the excess of the last one.
    store
        .put("x", b"v".to_vec(), Duration::from_secs(60))
        .await
        .expect("put");
    assert_eq!(store.remembered("a").await, Ok(false), "evicted");
    assert_eq!(store.remembered("b").await, Ok(false), "evicted");
    for key in ["c", "d", "e"] {
        assert_eq!(store.remembered(key).await, Ok(true), "{key}");
    }
}

#[tokio::test]
async fn expired_marks_are_swept_away() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ShiftedClock::default());
    let embedded =
        Arc::new(Embedded::open_with_clock(dir.path(), 1_000, clock.clone()).expect("opens"));
    let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
    for i in 0..600 {
        store
            .remember(&format!("m{i}"), Duration::from_secs(60), true)
            .await
            .expect("remember");
    }
    clock.advance(Duration::from_secs(61));
    // Each write's batch removes one generation: a few writes remove all.
    for _ in 0..20 {
        store
            .put("x", b"v".to_vec(), Duration::from_secs(600))
            .await
            .expect("put");
    }
    let left = embedded
        .read(|txn, _| Ok(redb::ReadableTableMetadata::len(&txn.open_table(MARKS)?)?))
        .expect("read");
    assert_eq!(left, 0, "every expired mark is gone");
}

#[tokio::test]
async fn lazy_marks_not_yet_durable_are_written_again_after_the_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = Arc::new(Embedded::open(dir.path(), 1_000).expect("opens"));
    let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
    store
        .remember("answered", Duration::from_secs(600), true)
        .await
        .expect("remember lazily");
    fail_a_durable_commit_then_heal(&embedded).await;
    assert_eq!(store.remembered("answered").await, Ok(true));
    embedded.close().await;
    let reopened = open(dir.path());
    assert_eq!(reopened.remembered("answered").await, Ok(true), "durable");
}

#[tokio::test]
async fn marks_of_the_previous_release_are_still_read_until_swept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ShiftedClock::default());
    let now_s = u32::try_from(clock.now_ms() / 1000).expect("fits");
    {
        // The previous release's table: a mark -> its expiry, no generations.
        let db = redb::Database::create(dir.path().join(FILE_NAME)).expect("creates");
        let txn = db.begin_write().expect("begins");
        txn.open_table(LEGACY_MARKS)
            .expect("opens")
            .insert(mark_of("old"), now_s + 60)
            .expect("inserts");
        txn.commit().expect("commits");
    }
    let embedded =
        Arc::new(Embedded::open_with_clock(dir.path(), 1_000, clock.clone()).expect("opens"));
    let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
    assert_eq!(
        store.remembered("old").await,
        Ok(true),
        "an upgrade forgets nothing"
    );
    assert_eq!(store.remembered("new").await, Ok(false));
    clock.advance(Duration::from_secs(61));
    store
        .put("x", b"v".to_vec(), Duration::from_secs(600))
        .await
        .expect("put");
    assert_eq!(store.remembered("old").await, Ok(false), "expired");
    assert!(!embedded.marks.has_legacy_marks(), "swept: no longer read");
}

#[tokio::test]
async fn a_full_ledger_forgets_a_generation_at_a_time_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 160 records at most: 10 marks a generation.
    let embedded = Arc::new(Embedded::open(dir.path(), 160).expect("opens"));
    let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
    let day = Duration::from_secs(86_400);
    for i in 0..200 {
        store
            .remember(&format!("e{i}"), day, false)
            .await
            .expect("remember");
    }
    let remembered = |range: std::ops::Range<usize>| {
        let store = store.clone();
        async move {
            let mut count = 0;
            for i in range {
                if store.remembered(&format!("e{i}")).await == Ok(true) {
                    count += 1;
                }
            }
            count
        }
    };
    assert_eq!(remembered(0..40).await, 0, "the oldest generations went");
    assert_eq!(remembered(50..200).await, 150, "the newest are all kept");
    let kept = embedded
        .read(|txn, _| Ok(redb::ReadableTableMetadata::len(&txn.open_table(MARKS)?)?))
        .expect("read");
    assert!(kept <= 160, "at most max_records: {kept}");
    embedded.close().await;
    let reopened = open(dir.path());
    assert_eq!(
        reopened.remembered("e199").await,
        Ok(true),
        "after a reopen"
    );
    assert_eq!(reopened.remembered("e0").await, Ok(false));
}
