//! The status page's books check section and its metrics against a ledger made by real
//! backfills and a real `check-books` on `qbo-sim`: what it shows equals the ledger, a month
//! the check did not reach is named not compared, and the page in a headless browser.
use backfill_core::Shutdown;
use backfill_core::books::check::{CheckConfig, check};
use time::macros::date;

use crate::common::client;
use crate::status::{get, headless_browser, ledger, parse_openmetrics, sample, serve_loopback};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_check_section_and_metrics_equal_the_ledger_in_a_browser() {
    let (sim, _db, sink) = ledger().await;
    let realm = sim.realm_id();
    let c = sink.pool().get().await.unwrap();
    // One February invoice missing from the raw layer.
    let removed = c
        .execute(
            "DELETE FROM raw.qb_invoices WHERE id = (SELECT id FROM raw.qb_invoices \
             WHERE payload->>'TxnDate' LIKE '2023-02-%' ORDER BY id LIMIT 1)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(removed, 1);
    // Two requests allowed: January and February compared, March not.
    let cfg = CheckConfig {
        start: date!(2023 - 01 - 01),
        end: date!(2023 - 03 - 31),
        max_api_calls: Some(2),
        shutdown: Shutdown::new(),
    };
    let out = check(&client(&sim), &sink, &cfg).await.unwrap();
    assert_eq!((out.months, out.months_planned), (2, 3));
    assert!(!out.ok());
    let id = out.id.unwrap();
    let differing: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.book_check_rows WHERE check_id = $1 AND kind <> 'agrees'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(differing >= 1);
    let (finished, march): (f64, i64) = {
        let r = c
            .query_one(
                "SELECT extract(epoch FROM finished_at)::float8, \
                 (SELECT count(*) FROM backfill.book_check_rows WHERE check_id = $1 \
                  AND month >= '2023-03-01') FROM backfill.book_checks WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(march, 0, "a month not compared has no row");

    let addr = serve_loopback(&sink).await;
    let (status, _, page) = get(&format!("http://{addr}/"), None).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"books\""), "{page}");
    assert!(
        page.contains(&format!(
            "data-book-check=\"{id}\" data-realm=\"{realm}\" data-differences=\"{differing}\" data-stale=\"false\""
        )),
        "{page}"
    );
    assert_eq!(
        page.matches("data-book-row=").count(),
        usize::try_from(differing).unwrap()
    );
    assert!(
        page.contains("2023-03-01..2023-03-31 <strong>not compared</strong>"),
        "{page}"
    );
    assert!(
        page.contains("data-book-row=\"differs\"><td>2023-02</td>"),
        "{page}"
    );

    let (_, _, metrics) = get(&format!("http://{addr}/metrics"), None).await;
    let samples = parse_openmetrics(&metrics);
    let labels = [("realm", realm.as_str())];
    assert_eq!(
        sample(&samples, "qb_backfill_books_check_differences", &labels),
        Some(differing as f64)
    );
    let when = sample(
        &samples,
        "qb_backfill_books_check_timestamp_seconds",
        &labels,
    )
    .unwrap();
    assert!((when - finished).abs() < 0.001, "{when} vs {finished}");
    assert_eq!(
        sample(&samples, "qb_backfill_books_check_months_compared", &labels),
        Some(2.0)
    );
    assert_eq!(
        sample(&samples, "qb_backfill_books_check_stale", &labels),
        Some(0.0)
    );

    // The same in a real browser: one row per difference, the rest of the range not compared.
    let (_driver, _profile, browser) = headless_browser().await;
    browser.goto(&format!("http://{addr}/")).await.unwrap();
    let rows = browser
        .find_all(fantoccini::Locator::Css("#books [data-book-row]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), usize::try_from(differing).unwrap());
    let shown = browser
        .find(fantoccini::Locator::Css("#books"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        shown.contains("2023-03-01..2023-03-31 not compared"),
        "{shown}"
    );
    assert!(shown.contains("Books check"), "{shown}");
    browser.close().await.unwrap();
    sim.shutdown().await.unwrap();
}
