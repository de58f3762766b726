//! Page upserts into the raw layer.

use std::collections::HashSet;

use raw_sink::testing::TestDb;
use raw_sink::{
    NewRun, RawRow, RawTable, RunId, Sink, SinkError, UpsertCounts, WindowId, WindowScope,
    WindowSpan,
};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::{REALM, day, meta, raw};

fn rows<'a>(items: &'a [(String, Box<RawValue>)]) -> Vec<RawRow<'a>> {
    items
        .iter()
        .map(|(id, payload)| RawRow {
            id,
            payload: payload.get(),
        })
        .collect()
}

fn page(ids: impl IntoIterator<Item = u32>, tag: &str) -> Vec<(String, Box<RawValue>)> {
    ids.into_iter()
        .map(|i| {
            (
                i.to_string(),
                raw(&format!(
                    r#"{{"Id":"{i}","DisplayName":"Customer {i}","tag":"{tag}"}}"#
                )),
            )
        })
        .collect()
}

/// (id, xmin, ingested_at_utc, page_number, request_payload, payload text) of every row.
type Snapshot = Vec<(String, String, OffsetDateTime, i32, String, String)>;

async fn snapshot(sink: &Sink, table: RawTable) -> Snapshot {
    let client = sink.pool().get().await.unwrap();
    client
        .query(
            &format!(
                "SELECT id, xmin::text, ingested_at_utc, page_number, request_payload, \
                 payload::text FROM {} WHERE realm_id = $1 ORDER BY id",
                table.quoted()
            ),
            &[&REALM],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

#[tokio::test]
async fn counts_inserted_updated_unchanged() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let first = page(1..=3, "a");
    let c = sink
        .upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&first), None)
        .await
        .unwrap();
    assert_eq!(
        c,
        UpsertCounts {
            inserted: 3,
            updated: 0,
            unchanged: 0,
            duplicates: 0,
            rejected: 0,
        }
    );
    // 1 and 2 unchanged, 3 changed, 4 new.
    let mut second = page(1..=2, "a");
    second.extend(page(3..=4, "b"));
    let c = sink
        .upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&second), None)
        .await
        .unwrap();
    assert_eq!(
        c,
        UpsertCounts {
            inserted: 1,
            updated: 1,
            unchanged: 2,
            duplicates: 0,
            rejected: 0,
        }
    );
    let snap = snapshot(&sink, RawTable::CUSTOMERS).await;
    assert_eq!(snap.len(), 4);
    assert!(snap[2].5.contains(r#""tag": "b""#), "{}", snap[2].5);
    // Other tables are untouched.
    assert!(snapshot(&sink, RawTable::INVOICES).await.is_empty());
}

#[tokio::test]
async fn re_upserting_a_page_writes_nothing() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let items = page(1..=50, "a");
    sink.upsert_page(RawTable::ITEMS, &meta(1), &rows(&items), None)
        .await
        .unwrap();
    let before = snapshot(&sink, RawTable::ITEMS).await;

    // Same payloads, different page metadata: rows stay exactly as they were.
    let again = sink
        .upsert_page(RawTable::ITEMS, &meta(7), &rows(&items), None)
        .await
        .unwrap();
    assert_eq!(again.unchanged, 50);
    assert_eq!(again.inserted + again.updated, 0);
    assert_eq!(snapshot(&sink, RawTable::ITEMS).await, before);

    // A changed payload rewrites the row and its metadata.
    let mut changed = page(1..=50, "a");
    changed[9] = (
        "10".to_owned(),
        raw(r#"{"Id":"10","DisplayName":"renamed"}"#),
    );
    let c = sink
        .upsert_page(RawTable::ITEMS, &meta(2), &rows(&changed), None)
        .await
        .unwrap();
    assert_eq!((c.updated, c.unchanged), (1, 49));
    let after = snapshot(&sink, RawTable::ITEMS).await;
    for (old, new) in before.iter().zip(&after) {
        if old.0 == "10" {
            assert_ne!(old.1, new.1, "new tuple expected");
            assert!(new.2 >= old.2);
            assert_eq!(new.3, 2);
            assert!(new.4.contains("STARTPOSITION 1001"));
        } else {
            assert_eq!(old, new);
        }
    }
}

#[tokio::test]
async fn unchanged_rows_are_not_even_locked() {
    // `ON CONFLICT DO UPDATE ... WHERE` alone locks every conflicting row before testing the
    // WHERE: the lock sets the tuple's xmax (and writes WAL, and dirties the page). Unchanged
    // rows must be filtered out before the INSERT, so a re-run leaves their xmax at 0.
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let items = page(1..=40, "a");
    sink.upsert_page(RawTable::INVOICES, &meta(1), &rows(&items), None)
        .await
        .unwrap();
    let again = sink
        .upsert_page(RawTable::INVOICES, &meta(2), &rows(&items), None)
        .await
        .unwrap();
    assert_eq!(again.unchanged, 40);
    let client = sink.pool().get().await.unwrap();
    let locked: i64 = client
        .query_one(
            "SELECT count(*) FROM raw.qb_invoices WHERE realm_id = $1 AND xmax::text <> '0'",
            &[&REALM],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locked, 0);
}

#[tokio::test]
async fn numbers_and_strings_round_trip_exactly() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let payload = r#"{"Id":"7","ExchangeRate":1.00000000000000000001,"Big":123456789012345678901234567890,"Tiny":-0.000000000000000000000123,"Amount":10.50,"Name":"Caf\u00e9 \"quoted\" back\\slash\ttab\nnewline 日本語 😀 \ud83d\ude00 \u001f","Empty":"","Nested":{"a":[1,2.0,{"b":null}],"t":true}}"#;
    let items = vec![("7".to_owned(), raw(payload))];
    sink.upsert_page(RawTable::INVOICES, &meta(1), &rows(&items), None)
        .await
        .unwrap();
    let client = sink.pool().get().await.unwrap();
    let row = client
        .query_one(
            "SELECT (payload->'ExchangeRate')::text, (payload->'Big')::text, \
             (payload->'Tiny')::text, (payload->'Amount')::text, payload->>'Name', \
             payload->>'Empty', (payload->'Nested')::text \
             FROM raw.qb_invoices WHERE realm_id = $1 AND id = '7'",
            &[&REALM],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1.00000000000000000001");
    assert_eq!(row.get::<_, String>(1), "123456789012345678901234567890");
    assert_eq!(row.get::<_, String>(2), "-0.000000000000000000000123");
    assert_eq!(row.get::<_, String>(3), "10.50");
    assert_eq!(
        row.get::<_, String>(4),
        "Café \"quoted\" back\\slash\ttab\nnewline 日本語 😀 😀 \u{1f}"
    );
    assert_eq!(row.get::<_, String>(5), "");
    assert_eq!(
        row.get::<_, String>(6),
        r#"{"a": [1, 2.0, {"b": null}], "t": true}"#
    );
    // Same payload text again: unchanged (jsonb equality, no float rounding involved).
    let c = sink
        .upsert_page(RawTable::INVOICES, &meta(1), &rows(&items), None)
        .await
        .unwrap();
    assert_eq!(c.unchanged, 1);
    // A difference in the 20th decimal is a change.
    let close = vec![(
        "7".to_owned(),
        raw(&payload.replace("1.00000000000000000001", "1.00000000000000000002")),
    )];
    let c = sink
        .upsert_page(RawTable::INVOICES, &meta(1), &rows(&close), None)
        .await
        .unwrap();
    assert_eq!(c.updated, 1);
}

#[tokio::test]
async fn nul_escape_is_refused_naming_the_record_and_nothing_is_written() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let mut items = page(1..=3, "a");
    items.push(("x9".to_owned(), raw(r#"{"Id":"x9","Name":"a\u0000b"}"#)));
    let e = sink
        .upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&items), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SinkError::InvalidPayload { id, .. } if id == "x9"),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert!(snapshot(&sink, RawTable::CUSTOMERS).await.is_empty());
    // An escaped backslash followed by "u0000" is ordinary text.
    let fine = vec![("y".to_owned(), raw(r#"{"Name":"a\\u0000b"}"#))];
    sink.upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&fine), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn duplicate_ids_in_a_page_keep_the_last() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let items = vec![
        ("1".to_owned(), raw(r#"{"v":1}"#)),
        ("2".to_owned(), raw(r#"{"v":2}"#)),
        ("1".to_owned(), raw(r#"{"v":3}"#)),
    ];
    let c = sink
        .upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&items), None)
        .await
        .unwrap();
    assert_eq!((c.inserted, c.duplicates), (2, 1));
    let snap = snapshot(&sink, RawTable::CUSTOMERS).await;
    assert_eq!(snap[0].5, r#"{"v": 3}"#);
}

#[tokio::test]
async fn empty_page_is_fine() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let c = sink
        .upsert_page(RawTable::CUSTOMERS, &meta(1), &[], None)
        .await
        .unwrap();
    assert_eq!(c, UpsertCounts::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_pages_end_consistent() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    // A: ids 0..300 ascending; B: ids 150..450 descending; both in pages of 100, so the
    // transactions overlap and would lock rows in opposite orders if not sorted.
    let a: Vec<u32> = (0..300).collect();
    let b: Vec<u32> = (150..450).rev().collect();
    let run = |ids: Vec<u32>, tag: &'static str| {
        let sink = sink.clone();
        tokio::spawn(async move {
            let mut total = UpsertCounts::default();
            for chunk in ids.chunks(100) {
                let items = page(chunk.iter().copied(), tag);
                total += sink
                    .upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&items), None)
                    .await
                    .unwrap();
            }
            total
        })
    };
    let (ta, tb) = tokio::join!(run(a, "a"), run(b, "b"));
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert_eq!(ta.distinct(), 300);
    assert_eq!(tb.distinct(), 300);
    // Every id was inserted exactly once, by one of the two.
    assert_eq!(ta.inserted + tb.inserted, 450);
    // Overlapping ids were either inserted or updated by the later writer: 150 of them at
    // most were written twice.
    assert!(ta.updated + tb.updated <= 150);
    let snap = snapshot(&sink, RawTable::CUSTOMERS).await;
    assert_eq!(snap.len(), 450);
    let ids: HashSet<&str> = snap.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids.len(), 450);
    for row in &snap {
        let n: u32 = row.0.parse().unwrap();
        if n < 150 {
            assert!(row.5.contains(r#""tag": "a""#));
        } else if n >= 300 {
            assert!(row.5.contains(r#""tag": "b""#));
        }
    }

    // Both rewrite the same 450 rows in opposite orders, several times: without a stable lock
    // order these transactions deadlock.
    let rewrite = |ids: Vec<u32>, tag: &'static str| {
        let sink = sink.clone();
        tokio::spawn(async move {
            for round in 0..8 {
                let items = page(ids.iter().copied(), &format!("{tag}{round}"));
                let c = sink
                    .upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&items), None)
                    .await
                    .unwrap();
                assert_eq!((c.inserted, c.distinct()), (0, 450));
            }
        })
    };
    let (ra, rb) = tokio::join!(
        rewrite((0..450).collect(), "a"),
        rewrite((0..450).rev().collect(), "b")
    );
    ra.unwrap();
    rb.unwrap();
    let snap = snapshot(&sink, RawTable::CUSTOMERS).await;
    assert_eq!(snap.len(), 450);
    // Each page is atomic: all rows carry the tag of whichever last page committed.
    let tags: HashSet<String> = snap
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.5).unwrap();
            v["tag"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert!(tags.contains("a7") || tags.contains("b7"), "{tags:?}");
}

/// A run of `pipeline` over day 0 and its one (pending) window.
async fn one_day_window(sink: &Sink, pipeline: &str) -> (RunId, WindowId) {
    let ledger = sink.ledger();
    let run = ledger
        .start_run(&NewRun {
            pipeline: pipeline.into(),
            realm_id: REALM.into(),
            range_start: day(0),
            range_end: day(1),
            window_field: "MetaData.CreateTime".into(),
            trigger_name: None,
            windows_planned: 1,
        })
        .await
        .unwrap();
    let scope = WindowScope::new(pipeline, REALM, "MetaData.CreateTime");
    let windows = ledger
        .ensure_windows(&scope, &[WindowSpan::new(day(0), day(1))])
        .await
        .unwrap();
    (run, windows[0].id)
}

#[tokio::test]
async fn window_progress_commits_with_the_page() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let ledger = sink.ledger();
    let (run, window) = one_day_window(&sink, "customers").await;

    // Not running yet: refused, nothing written.
    let items = page(1..=5, "a");
    let e = sink
        .upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&items), Some(window))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SinkError::WindowNotRunning { status, .. } if status == "pending"),
        "{e:?}"
    );
    assert!(snapshot(&sink, RawTable::CUSTOMERS).await.is_empty());

    ledger
        .start_window_attempt(window, run, false)
        .await
        .unwrap();
    sink.upsert_page(RawTable::CUSTOMERS, &meta(1), &rows(&items), Some(window))
        .await
        .unwrap();
    let mut second = page(4..=6, "a");
    second.push(("6".to_owned(), raw(r#"{"Id":"6","x":1}"#)));
    sink.upsert_page(RawTable::CUSTOMERS, &meta(2), &rows(&second), Some(window))
        .await
        .unwrap();
    sink.upsert_page(RawTable::CUSTOMERS, &meta(3), &[], Some(window))
        .await
        .unwrap();
    let w = ledger.get_window(window).await.unwrap().unwrap();
    assert_eq!(w.pages, 3);
    assert_eq!(w.rows, 9); // records received, duplicates included
    assert_eq!((w.inserted, w.updated, w.unchanged), (6, 0, 2));

    // A fresh attempt resets the progress.
    let w = ledger
        .start_window_attempt(window, run, false)
        .await
        .unwrap();
    assert_eq!((w.pages, w.rows, w.inserted, w.unchanged), (0, 0, 0, 0));
    assert_eq!(w.attempts, 2);

    // Unknown window: refused, nothing written.
    let e = sink
        .upsert_page(
            RawTable::CUSTOMERS,
            &meta(1),
            &rows(&page(100..=101, "z")),
            Some(raw_sink::WindowId::new(999_999)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SinkError::NotFound {
                entity: "window",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(snapshot(&sink, RawTable::CUSTOMERS).await.len(), 6);
}

/// A page of `n` rows of about `size` bytes each.
fn big_page(n: u32, size: usize) -> Vec<(String, Box<RawValue>)> {
    let filler = "x".repeat(size);
    (1..=n)
        .map(|i| {
            (
                format!("{i:05}"),
                raw(&format!(r#"{{"Id":"{i:05}","Memo":"{filler}"}}"#)),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_page_larger_than_a_chunk_commits_as_one_page() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let ledger = sink.ledger();
    let (run, window) = one_day_window(&sink, "invoices").await;

    // ~3.6 MB of payload (several statements), plus one id repeated.
    let mut items = big_page(900, 4_000);
    items.push((
        "00007".to_owned(),
        raw(r#"{"Id":"00007","Memo":"last wins"}"#),
    ));
    // The window is not running yet: refused, and no statement of the page is kept.
    let e = sink
        .upsert_page(RawTable::INVOICES, &meta(1), &rows(&items), Some(window))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SinkError::WindowNotRunning { status, .. } if status == "pending"),
        "{e:?}"
    );
    assert!(snapshot(&sink, RawTable::INVOICES).await.is_empty());

    ledger
        .start_window_attempt(window, run, false)
        .await
        .unwrap();
    let c = sink
        .upsert_page(RawTable::INVOICES, &meta(1), &rows(&items), Some(window))
        .await
        .unwrap();
    assert_eq!(
        c,
        UpsertCounts {
            inserted: 900,
            updated: 0,
            unchanged: 0,
            duplicates: 1,
            rejected: 0,
        }
    );
    let w = ledger.get_window(window).await.unwrap().unwrap();
    assert_eq!((w.pages, w.rows), (1, 901), "the page is counted once");
    assert_eq!((w.inserted, w.updated, w.unchanged), (900, 0, 0));
    let snap = snapshot(&sink, RawTable::INVOICES).await;
    assert_eq!(snap.len(), 900);
    let seventh = snap.iter().find(|r| r.0 == "00007").unwrap();
    assert!(seventh.5.contains("last wins"), "{}", seventh.5);

    // The same page again: nothing rewritten, counts still per page.
    let c = sink
        .upsert_page(RawTable::INVOICES, &meta(1), &rows(&items), Some(window))
        .await
        .unwrap();
    assert_eq!((c.inserted, c.updated, c.unchanged), (0, 0, 900));
    assert_eq!(snapshot(&sink, RawTable::INVOICES).await, snap);
    let w = ledger.get_window(window).await.unwrap().unwrap();
    assert_eq!((w.pages, w.rows, w.unchanged), (2, 1802, 900));
}

#[tokio::test]
async fn a_failing_statement_late_in_a_large_page_leaves_nothing_written() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let mut items = big_page(600, 4_000);
    // Valid JSON that PostgreSQL's jsonb refuses (numeric overflow); its id sorts last, so the
    // earlier statements of the page have already run when it fails.
    items.push(("zzz".to_owned(), raw(r#"{"Id":"zzz","Amount":1e1000000}"#)));
    let e = sink
        .upsert_page(RawTable::INVOICES, &meta(1), &rows(&items), None)
        .await
        .unwrap_err();
    assert!(matches!(e, SinkError::Query { .. }), "{e:?}");
    assert!(snapshot(&sink, RawTable::INVOICES).await.is_empty());
}
