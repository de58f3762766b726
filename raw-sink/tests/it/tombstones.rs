//! Tombstones (issue 14): marking deleted records, clearing the mark when a record returns,
//! and the sync ledger's marks.

use raw_sink::testing::TestDb;
use raw_sink::{
    NewSync, RawRow, RawTable, Sink, SinkError, SyncKind, SyncMarks, SyncStatus, SyncTally,
    Tombstone, UpsertCounts,
};
use time::macros::datetime;

use crate::{REALM, day, meta, raw};

const T: RawTable = RawTable::INVOICES;

async fn load(sink: &Sink, items: &[(&str, &str)]) -> UpsertCounts {
    let payloads: Vec<_> = items.iter().map(|(_, p)| raw(p)).collect();
    let rows: Vec<RawRow<'_>> = items
        .iter()
        .zip(&payloads)
        .map(|((id, _), payload)| RawRow {
            id,
            payload: payload.get(),
        })
        .collect();
    sink.upsert_page(T, &meta(1), &rows, None).await.unwrap()
}

/// (id, deleted_at_utc, deleted_stub text, payload text, xmin) of every row.
async fn rows(
    sink: &Sink,
) -> Vec<(
    String,
    Option<time::OffsetDateTime>,
    Option<String>,
    String,
    String,
)> {
    let client = sink.pool().get().await.unwrap();
    client
        .query(
            "SELECT id, deleted_at_utc, deleted_stub::text, payload::text, xmin::text \
             FROM raw.qb_invoices WHERE realm_id = $1 ORDER BY id",
            &[&REALM],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

fn inv(id: &str, sync_token: u32) -> String {
    format!(
        r#"{{"Id":"{id}","SyncToken":"{sync_token}","MetaData":{{"CreateTime":"2024-01-01T10:00:00-08:00","LastUpdatedTime":"2024-01-0{}T10:00:00-08:00"}}}}"#,
        sync_token + 1
    )
}

#[tokio::test]
async fn tombstones_keep_the_payload_are_idempotent_and_clear_when_the_record_returns() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let (a, b) = (inv("1", 0), inv("2", 0));
    load(&sink, &[("1", &a), ("2", &b)]).await;

    let stub = raw(r#"{"domain":"QBO","status":"Deleted","Id":"1"}"#);
    let at = datetime!(2024-02-01 12:00 UTC);
    let marks = [
        Tombstone {
            id: "1",
            deleted_at: at,
            stub: Some(&stub),
        },
        Tombstone {
            id: "9",
            deleted_at: at,
            stub: None,
        },
    ];
    let out = sink.tombstone(T, REALM, &marks).await.unwrap();
    assert_eq!(out.marked, vec!["1".to_owned()]);
    assert_eq!((out.already, out.absent), (0, 1));
    let after = rows(&sink).await;
    assert_eq!(after[0].1, Some(at));
    assert!(after[0].2.as_deref().unwrap().contains("Deleted"));
    let kept: serde_json::Value = serde_json::from_str(&after[0].3).unwrap();
    assert_eq!(kept, serde_json::from_str::<serde_json::Value>(&a).unwrap());
    assert_eq!(after[1].1, None, "other rows untouched");

    // The same deletions again write nothing.
    let again = sink.tombstone(T, REALM, &marks).await.unwrap();
    assert!(again.marked.is_empty());
    assert_eq!((again.already, again.absent), (1, 1));
    assert_eq!(rows(&sink).await, after, "no tuple rewritten");

    // Current rows: the documented query.
    let client = sink.pool().get().await.unwrap();
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM raw.qb_invoices WHERE deleted_at_utc IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 1);
    drop(client);
    assert_eq!(
        sink.live_count_created_in(T, REALM, day(-30), day(30))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        sink.live_ids_created_in(T, REALM, day(-30), day(30))
            .await
            .unwrap(),
        vec!["2".to_owned()]
    );

    // The record comes back with the very same payload: the mark clears, counted as an update.
    let back = load(&sink, &[("1", &a), ("2", &b)]).await;
    assert_eq!((back.inserted, back.updated, back.unchanged), (0, 1, 1));
    let cleared = rows(&sink).await;
    assert_eq!((cleared[0].1, cleared[0].2.as_deref()), (None, None));
    // And once cleared, the same page is unchanged again.
    let same = load(&sink, &[("1", &a)]).await;
    assert_eq!((same.updated, same.unchanged), (0, 1));
}

#[tokio::test]
async fn an_older_version_never_clears_a_tombstone_of_a_newer_one() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let newer = inv("1", 3);
    load(&sink, &[("1", &newer)]).await;
    let at = datetime!(2024-02-01 12:00 UTC);
    sink.tombstone(
        T,
        REALM,
        &[Tombstone {
            id: "1",
            deleted_at: at,
            stub: None,
        }],
    )
    .await
    .unwrap();
    let older = inv("1", 1);
    let c = load(&sink, &[("1", &older)]).await;
    assert_eq!((c.inserted, c.updated), (0, 0));
    assert_eq!(rows(&sink).await[0].1, Some(at));
}

#[tokio::test]
async fn marks_move_only_with_a_succeeded_sync_and_never_backwards() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let ledger = sink.ledger();
    let pipeline = "qb_invoices_backfill";
    assert_eq!(ledger.sync_marks(pipeline, REALM).await.unwrap(), None);
    assert_eq!(ledger.backfill_mark(pipeline, REALM).await.unwrap(), None);
    let new = |marks_before| NewSync {
        kind: SyncKind::Sync,
        pipeline: pipeline.to_owned(),
        realm_id: REALM.to_owned(),
        entity: "Invoice".to_owned(),
        marks_before,
    };
    let m1 = SyncMarks {
        changes: datetime!(2024-03-01 0:00 UTC),
        deletes: datetime!(2024-03-02 0:00 UTC),
    };
    let failed = ledger.start_sync(&new(None)).await.unwrap();
    ledger
        .finish_sync(
            failed,
            SyncStatus::Failed,
            &SyncTally::default(),
            Some(m1),
            Some("boom"),
        )
        .await
        .unwrap();
    assert_eq!(ledger.sync_marks(pipeline, REALM).await.unwrap(), None);

    let ok = ledger.start_sync(&new(None)).await.unwrap();
    let tally = SyncTally {
        inserted: 2,
        tombstoned: 1,
        api_calls: 4,
        ..SyncTally::default()
    };
    let row = ledger
        .finish_sync(ok, SyncStatus::Succeeded, &tally, Some(m1), None)
        .await
        .unwrap();
    assert_eq!((row.tally, row.marks_after), (tally, Some(m1)));
    assert_eq!(ledger.sync_marks(pipeline, REALM).await.unwrap(), Some(m1));
    assert!(matches!(
        ledger
            .finish_sync(ok, SyncStatus::Failed, &tally, None, None)
            .await,
        Err(SinkError::InvalidTransition { .. })
    ));

    // An older mark does not move it back; a dead running sync is closed by the next start.
    let dead = ledger.start_sync(&new(Some(m1))).await.unwrap();
    let next = ledger.start_sync(&new(Some(m1))).await.unwrap();
    assert_eq!(
        ledger.get_sync(dead).await.unwrap().unwrap().status,
        SyncStatus::Interrupted
    );
    let older = SyncMarks {
        changes: datetime!(2024-01-01 0:00 UTC),
        deletes: datetime!(2024-04-01 0:00 UTC),
    };
    ledger
        .finish_sync(
            next,
            SyncStatus::Succeeded,
            &SyncTally::default(),
            Some(older),
            None,
        )
        .await
        .unwrap();
    let moved = ledger.sync_marks(pipeline, REALM).await.unwrap().unwrap();
    assert_eq!(moved.changes, m1.changes);
    assert_eq!(moved.deletes, older.deletes);
    let listed = ledger
        .list_syncs(Some(pipeline), Some(REALM), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].id, next);
}

#[tokio::test]
async fn every_raw_entity_table_has_the_tombstone_columns() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let client = sink.pool().get().await.unwrap();
    let missing: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'raw' AND c.relkind = 'r' AND c.relname NOT IN ('qb_rejects', 'qb_reports') \
             AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                             AND a.attname = 'deleted_at_utc' AND NOT a.attisdropped) \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'raw' \
             AND tablename NOT IN ('qb_rejects', 'qb_reports')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 26);
}
