//! Paging through every record exactly once, the inactive rule, COUNT = rows, and
//! instant comparisons across offsets at UTC midnights.

use std::collections::BTreeMap;

use time::macros::datetime;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::common::{Api, small};

/// Renders an instant in one of the literal styles QBO accepts.
fn literal(at: OffsetDateTime, style: usize) -> String {
    let fmt = |t: OffsetDateTime| {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    match style % 4 {
        0 => format!("{}Z", fmt(at)),
        1 => format!("{}+00:00", fmt(at)),
        2 => format!(
            "{}-07:00",
            fmt(at.to_offset(UtcOffset::from_hms(-7, 0, 0).unwrap()))
        ),
        _ => format!(
            "{}-0800",
            fmt(at.to_offset(UtcOffset::from_hms(-8, 0, 0).unwrap()))
        ),
    }
}

#[tokio::test]
async fn daily_windows_page_every_record_exactly_once() {
    let api = Api::start(
        small()
            .invoices(1500)
            .rate_window(std::time::Duration::from_secs(60))
            .requests_per_min(0),
    )
    .await;
    let truth = api.sim.truth("Invoice");
    assert_eq!(truth.len(), 1500);
    assert_eq!(api.sim.count("Invoice"), 1500);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut day = datetime!(2023-01-01 00:00 UTC);
    let end = datetime!(2023-03-01 00:00 UTC);
    let mut style = 0;
    let page = 40;
    while day < end {
        let next = day + Duration::days(1);
        let filter = format!(
            "WHERE MetaData.CreateTime >= '{}' AND MetaData.CreateTime < '{}'",
            literal(day, style),
            literal(next, style + 1)
        );
        style += 1;
        let count = api
            .count(&format!("SELECT COUNT(*) FROM Invoice {filter}"))
            .await;
        let mut got = 0u64;
        let mut start = 1;
        loop {
            let rows = api
                .rows(
                    &format!(
                        "SELECT * FROM Invoice {filter} STARTPOSITION {start} MAXRESULTS {page}"
                    ),
                    "Invoice",
                )
                .await;
            for r in &rows {
                *seen
                    .entry(r["Id"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
            got += rows.len() as u64;
            if rows.len() < page {
                break;
            }
            start += page;
        }
        assert_eq!(got, count, "window {day}");
        day = next;
    }
    assert_eq!(seen.len(), truth.len());
    assert!(seen.values().all(|n| *n == 1));
    for t in &truth {
        assert!(seen.contains_key(&t.id));
    }
}

#[tokio::test]
async fn rows_come_oldest_first_with_numeric_id_tiebreak() {
    let api = Api::start(small()).await;
    let rows = api
        .rows("SELECT * FROM Invoice MAXRESULTS 1000", "Invoice")
        .await;
    let truth = api.sim.truth("Invoice");
    let ids: Vec<&str> = rows.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    let truth_ids: Vec<&str> = truth.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, truth_ids);
    assert!(
        truth
            .windows(2)
            .all(|w| (w[0].create_time, w[0].id.parse::<u64>().unwrap())
                < (w[1].create_time, w[1].id.parse::<u64>().unwrap()))
    );
    // Ids are not in time order.
    assert!(
        truth
            .windows(2)
            .any(|w| w[0].id.parse::<u64>().unwrap() > w[1].id.parse::<u64>().unwrap())
    );
}

#[tokio::test]
async fn midnight_edges_compare_as_instants() {
    let api = Api::start(small()).await;
    let truth = api.sim.truth("Invoice");
    let on = truth
        .iter()
        .find(|t| t.create_time.time() == time::Time::MIDNIGHT)
        .expect("a record exactly at a UTC midnight");
    let before = truth
        .iter()
        .find(|t| t.create_time.time() == time::macros::time!(23:59:59))
        .expect("a record one second before a UTC midnight");
    // The payload shows a Pacific offset, never Z.
    let v: serde_json::Value = serde_json::from_str(&on.json).unwrap();
    let shown = v["MetaData"]["CreateTime"].as_str().unwrap();
    assert!(
        shown.ends_with("-08:00") || shown.ends_with("-07:00"),
        "{shown}"
    );
    assert!(
        shown.contains("T16:00:00") || shown.contains("T17:00:00"),
        "{shown}"
    );

    for style in 0..4 {
        let midnight = on.create_time;
        let q = format!(
            "SELECT * FROM Invoice WHERE MetaData.CreateTime >= '{}' AND MetaData.CreateTime < '{}' MAXRESULTS 1000",
            literal(midnight, style),
            literal(midnight + Duration::days(1), style)
        );
        let rows = api.rows(&q, "Invoice").await;
        assert!(
            rows.iter().any(|r| r["Id"] == on.id.as_str()),
            "style {style}: record at midnight is in the day it starts"
        );
        let q = format!(
            "SELECT * FROM Invoice WHERE MetaData.CreateTime >= '{}' AND MetaData.CreateTime < '{}' MAXRESULTS 1000",
            literal(midnight - Duration::days(1), style),
            literal(midnight, style)
        );
        let rows = api.rows(&q, "Invoice").await;
        assert!(
            !rows.iter().any(|r| r["Id"] == on.id.as_str()),
            "style {style}: not in the day before"
        );

        let next_midnight = before.create_time + Duration::seconds(1);
        let q = format!(
            "SELECT * FROM Invoice WHERE MetaData.CreateTime < '{}' AND MetaData.CreateTime >= '{}' MAXRESULTS 1000",
            literal(next_midnight, style),
            literal(next_midnight - Duration::days(1), style)
        );
        let rows = api.rows(&q, "Invoice").await;
        assert!(
            rows.iter().any(|r| r["Id"] == before.id.as_str()),
            "style {style}: 23:59:59 is in its own day"
        );
        let q = format!(
            "SELECT * FROM Invoice WHERE MetaData.CreateTime = '{}'",
            literal(before.create_time, style)
        );
        let rows = api.rows(&q, "Invoice").await;
        assert!(rows.iter().any(|r| r["Id"] == before.id.as_str()));
    }
}

#[tokio::test]
async fn inactive_rule_and_counts() {
    let api = Api::start(small()).await;
    for entity in ["Customer", "Item", "Vendor"] {
        let truth = api.sim.truth(entity);
        let active = truth.iter().filter(|t| t.active == Some(true)).count() as u64;
        let inactive = truth.len() as u64 - active;
        assert!(inactive > 0, "{entity} has inactive records");
        let default = api
            .rows(&format!("SELECT * FROM {entity} MAXRESULTS 1000"), entity)
            .await;
        assert_eq!(
            default.len() as u64,
            active,
            "{entity}: default hides inactive"
        );
        assert!(default.iter().all(|r| r["Active"] == true));
        assert_eq!(
            api.count(&format!("SELECT COUNT(*) FROM {entity}")).await,
            active
        );
        let all = api
            .rows(
                &format!("SELECT * FROM {entity} WHERE Active IN (true, false) MAXRESULTS 1000"),
                entity,
            )
            .await;
        assert_eq!(all.len(), truth.len());
        assert_eq!(
            api.count(&format!(
                "SELECT COUNT(*) FROM {entity} WHERE Active IN (true, false)"
            ))
            .await,
            truth.len() as u64
        );
        assert_eq!(
            api.count(&format!(
                "SELECT COUNT(*) FROM {entity} WHERE Active = false"
            ))
            .await,
            inactive
        );
        // Truth JSON is byte-identical to what is served.
        let body = api
            .get(&format!(
                "SELECT * FROM {entity} WHERE Active IN (true, false) MAXRESULTS 1000"
            ))
            .await
            .body;
        for t in &truth {
            assert!(
                body.contains(&t.json),
                "{entity} {} served bytes differ from truth",
                t.id
            );
        }
    }
}

#[tokio::test]
async fn count_equals_rows_for_many_filters() {
    let api = Api::start(small()).await;
    let filters = [
        "",
        "WHERE MetaData.LastUpdatedTime > '2023-02-01T00:00:00-08:00'",
        "WHERE TxnDate >= '2023-01-15' AND TxnDate <= '2023-01-31'",
        "WHERE MetaData.CreateTime > '2023-01-20' AND MetaData.CreateTime <= '2023-02-10T12:00:00'",
        "WHERE DocNumber LIKE '10%'",
        "WHERE CustomerRef = '1'",
    ];
    for f in filters {
        let n = api
            .count(&format!("SELECT COUNT(*) FROM Invoice {f}"))
            .await;
        let rows = api
            .rows(
                &format!("SELECT * FROM Invoice {f} MAXRESULTS 1000"),
                "Invoice",
            )
            .await;
        assert_eq!(rows.len() as u64, n, "{f}");
    }
}

#[tokio::test]
async fn paging_under_change_shows_why_offsets_are_fragile() {
    let api = Api::start(small()).await;
    let filter = "WHERE MetaData.CreateTime >= '2023-01-01T00:00:00Z' AND MetaData.CreateTime < '2023-02-01T00:00:00Z'";
    let first = api
        .rows(
            &format!("SELECT * FROM Invoice {filter} STARTPOSITION 1 MAXRESULTS 50"),
            "Invoice",
        )
        .await;
    // Delete a record already read: every later row shifts one position earlier.
    api.sim
        .delete("Invoice", first[0]["Id"].as_str().unwrap())
        .unwrap();
    let second = api
        .rows(
            &format!("SELECT * FROM Invoice {filter} STARTPOSITION 51 MAXRESULTS 50"),
            "Invoice",
        )
        .await;
    let all_now = api
        .rows(
            &format!("SELECT * FROM Invoice {filter} MAXRESULTS 1000"),
            "Invoice",
        )
        .await;
    // The row now at position 50 was at 51 before: it is skipped by offset paging.
    let skipped = &all_now[49];
    assert!(!first.contains(skipped) && !second.contains(skipped));
    // Insert into the window: a row read on the first page comes again.
    let created = api
        .sim
        .create("Invoice", Some(datetime!(2023-01-01 00:00:01 UTC)))
        .unwrap();
    let again = api
        .rows(
            &format!("SELECT * FROM Invoice {filter} STARTPOSITION 1 MAXRESULTS 5"),
            "Invoice",
        )
        .await;
    assert!(again.iter().any(|r| r["Id"] == created.id.as_str()));
}
