//! `Sink::write_page`: records that cannot be stored go to `raw.qb_rejects` while the rest of
//! the page loads; a page commits only under its attempt's lease; an older version of a record
//! never replaces a newer one.

use raw_sink::testing::TestDb;
use raw_sink::{
    NewRun, PageOwner, PageWrite, RawRow, RawTable, RejectRow, RunId, Sink, SinkError, WindowId,
    WindowScope, WindowSpan,
};
use serde_json::value::RawValue;

use crate::{REALM, day, meta, raw};

async fn running_window(sink: &Sink, owner: &str) -> (RunId, WindowId) {
    let ledger = sink.ledger();
    let run = ledger
        .start_run(&NewRun {
            pipeline: "qb_invoices_backfill".into(),
            realm_id: REALM.into(),
            range_start: day(0),
            range_end: day(1),
            window_field: "MetaData.CreateTime".into(),
            trigger_name: None,
            windows_planned: 1,
        })
        .await
        .unwrap();
    let scope = WindowScope::new("qb_invoices_backfill", REALM, "MetaData.CreateTime");
    let w = ledger
        .ensure_windows(&scope, &[WindowSpan::new(day(0), day(1))])
        .await
        .unwrap()[0]
        .id;
    ledger.start_window_attempt(w, run, false).await.unwrap();
    set_lease(sink, w, owner).await;
    (run, w)
}

async fn set_lease(sink: &Sink, w: WindowId, owner: &str) {
    sink.pool()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE backfill.windows SET lease_owner = $2, lease_expires_at = now() + interval '1 hour' \
             WHERE id = $1",
            &[&w.get(), &owner],
        )
        .await
        .unwrap();
}

async fn stored(sink: &Sink) -> Vec<(String, String)> {
    sink.pool()
        .get()
        .await
        .unwrap()
        .query(
            "SELECT id, payload->>'v' FROM raw.qb_invoices WHERE realm_id = $1 ORDER BY id",
            &[&REALM],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default()))
        .collect()
}

fn invoice(id: &str, sync: u32, updated: &str, v: &str) -> Box<RawValue> {
    raw(&format!(
        r#"{{"Id":"{id}","SyncToken":"{sync}","v":"{v}","MetaData":{{"CreateTime":"2024-01-01T01:00:00-08:00","LastUpdatedTime":"{updated}"}}}}"#
    ))
}

fn as_rows(items: &[(String, Box<RawValue>)]) -> Vec<RawRow<'_>> {
    items
        .iter()
        .map(|(id, payload)| RawRow {
            id,
            payload: payload.get(),
        })
        .collect()
}

#[tokio::test]
async fn unstorable_records_are_quarantined_and_the_rest_of_the_page_loads() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let (run, w) = running_window(&sink, "worker-a").await;
    let items = vec![
        ("1".to_owned(), invoice("1", 0, "2024-01-01T01:00:00Z", "a")),
        // jsonb refuses both: NUL, and a lone surrogate (found only by PostgreSQL).
        ("2".to_owned(), raw(r#"{"Id":"2","v":"x\u0000y"}"#)),
        ("3".to_owned(), raw(r#"{"Id":"3","v":"\ud800"}"#)),
        ("4".to_owned(), invoice("4", 0, "2024-01-01T01:00:00Z", "d")),
    ];
    let undecodable = [RejectRow {
        record_id: None,
        raw_text: r#"{"v":"no id, no MetaData"}"#,
        reason: "QueryResponse.Invoice[4]: missing field `Id`",
    }];
    let page_meta = meta(1);
    let rows = as_rows(&items);
    let page = PageWrite {
        table: RawTable::INVOICES,
        entity: "Invoice",
        meta: &page_meta,
        rows: &rows,
        rejects: &undecodable,
        owner: Some(PageOwner {
            window: w,
            run: Some(run),
            worker: Some("worker-a"),
        }),
    };
    let out = sink.write_page(&page).await.unwrap();
    assert_eq!(out.counts.inserted, 2);
    assert_eq!(out.counts.rejected, 3);
    let mut ids: Vec<Option<String>> = out.rejected.iter().map(|r| r.record_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec![None, Some("2".into()), Some("3".into())]);
    assert_eq!(
        stored(&sink).await,
        vec![("1".into(), "a".into()), ("4".into(), "d".into())]
    );

    let rejects = sink.ledger().rejects(REALM, "Invoice").await.unwrap();
    assert_eq!(rejects.len(), 3);
    let surrogate = rejects
        .iter()
        .find(|r| r.record_id.as_deref() == Some("3"))
        .unwrap();
    assert!(
        surrogate.reason.starts_with("PostgreSQL refused it"),
        "{}",
        surrogate.reason
    );
    assert_eq!(surrogate.raw_text, r#"{"Id":"3","v":"\ud800"}"#);
    let window = sink.ledger().get_window(w).await.unwrap().unwrap();
    assert_eq!((window.pages, window.rejected, window.inserted), (1, 3, 2));

    // The same page again (an overlapping re-read) adds no second copy of a reject.
    let again = sink.write_page(&page).await.unwrap();
    assert_eq!(again.counts.unchanged, 2);
    assert_eq!(
        sink.ledger().rejects(REALM, "Invoice").await.unwrap().len(),
        3
    );
    let window = sink.ledger().get_window(w).await.unwrap().unwrap();
    assert_eq!((window.pages, window.rejected), (2, 3));

    // A new attempt on the window starts with no rejects: they are found again, or not.
    sink.ledger()
        .start_window_attempt(w, run, false)
        .await
        .unwrap();
    assert!(
        sink.ledger()
            .rejects(REALM, "Invoice")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_page_commits_only_while_its_attempt_holds_the_window() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let (run, w) = running_window(&sink, "worker-a").await;
    // worker-a's lease ran out and worker-b took the window over.
    set_lease(&sink, w, "worker-b").await;
    let items = vec![(
        "1".to_owned(),
        invoice("1", 0, "2024-01-01T01:00:00Z", "late"),
    )];
    let rows = as_rows(&items);
    let page_meta = meta(1);
    let late = PageWrite {
        table: RawTable::INVOICES,
        entity: "Invoice",
        meta: &page_meta,
        rows: &rows,
        rejects: &[],
        owner: Some(PageOwner {
            window: w,
            run: Some(run),
            worker: Some("worker-a"),
        }),
    };
    let e = sink.write_page(&late).await.unwrap_err();
    assert!(matches!(e, SinkError::WindowNotRunning { .. }), "{e:?}");
    assert!(stored(&sink).await.is_empty());
    let window = sink.ledger().get_window(w).await.unwrap().unwrap();
    assert_eq!((window.pages, window.rows), (0, 0));

    // Another run's attempt: refused as well.
    let other_run = RunId::new(run.get() + 1000);
    let stale = PageWrite {
        owner: Some(PageOwner {
            window: w,
            run: Some(other_run),
            worker: Some("worker-b"),
        }),
        ..late
    };
    assert!(sink.write_page(&stale).await.is_err());
    // The owner's own attempt writes.
    let own = PageWrite {
        owner: Some(PageOwner {
            window: w,
            run: Some(run),
            worker: Some("worker-b"),
        }),
        ..late
    };
    sink.write_page(&own).await.unwrap();
    assert_eq!(stored(&sink).await, vec![("1".into(), "late".into())]);
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_one() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let write = |items: Vec<(String, Box<RawValue>)>| {
        let sink = sink.clone();
        async move {
            sink.upsert_page(RawTable::INVOICES, &meta(1), &as_rows(&items), None)
                .await
                .unwrap()
        }
    };
    write(vec![
        (
            "1".into(),
            invoice("1", 5, "2024-03-01T10:00:00-08:00", "v5"),
        ),
        (
            "2".into(),
            invoice("2", 3, "2024-03-01T10:00:00-08:00", "same-token-newer"),
        ),
        (
            "3".into(),
            invoice("3", 1, "2024-03-01T10:00:00-08:00", "v1"),
        ),
    ])
    .await;
    let c = write(vec![
        // Older SyncToken: kept out.
        (
            "1".into(),
            invoice("1", 4, "2024-03-02T10:00:00-08:00", "v4"),
        ),
        // Same SyncToken, older LastUpdatedTime (offsets compared as instants): kept out.
        (
            "2".into(),
            invoice("2", 3, "2024-03-01T17:59:59Z", "same-token-older"),
        ),
        // Newer SyncToken: written.
        ("3".into(), invoice("3", 2, "2024-02-01T00:00:00Z", "v2")),
    ])
    .await;
    assert_eq!((c.inserted, c.updated, c.unchanged), (0, 1, 2));
    assert_eq!(
        stored(&sink).await,
        vec![
            ("1".into(), "v5".into()),
            ("2".into(), "same-token-newer".into()),
            ("3".into(), "v2".into())
        ]
    );
    // Payloads without a version (no SyncToken, no MetaData) are compared by content only.
    let plain = |v: &str| raw(&format!(r#"{{"Id":"9","v":"{v}"}}"#));
    write(vec![("9".into(), plain("a"))]).await;
    let c = write(vec![("9".into(), plain("b"))]).await;
    assert_eq!(c.updated, 1);
}
