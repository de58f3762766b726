//! Change Data Capture and the re-read by Id that confirms a deletion.

use qbo_client::QboError;
use time::OffsetDateTime;

use crate::common::*;

#[tokio::test]
async fn cdc_returns_changes_and_deleted_stubs_through_the_request_loop() {
    let sim = sim_builder().seed(5).invoices(300).spawn().await.unwrap();
    let client = client(&sim);

    sim.advance_clock(std::time::Duration::from_secs(3600));
    let (n, time) = client
        .count_with_time(&qbo_client::Query::count("Invoice").build().unwrap())
        .await
        .unwrap();
    assert_eq!(n, 300);
    let time = time.unwrap();
    assert!(
        (time - sim.now()).abs() < time::Duration::minutes(1),
        "QBO's clock: {time}"
    );
    let since = sim.now() - time::Duration::minutes(5);
    sim.reset_stats();
    let before = client.api_calls();
    let empty = client.cdc(&["Invoice", "Customer"], since).await.unwrap();
    assert_eq!(empty.objects(), 0);
    assert!(!empty.is_capped());
    assert!(empty.time.is_some());
    assert_eq!(client.api_calls() - before, 1);

    let victim = sim.truth("Invoice")[7].id.clone();
    sim.delete("Invoice", &victim).unwrap();
    let changed = sim.update("Invoice", &sim.truth("Invoice")[8].id).unwrap();
    let cust = sim.truth("Customer")[0].id.clone();
    sim.update("Customer", &cust).unwrap();
    // A 401 on the way: one forced refresh, one retry, both attempts counted.
    sim.expire_access_tokens();

    let answer = client.cdc(&["Invoice", "Customer"], since).await.unwrap();
    assert_eq!(client.api_calls() - before, 3);
    let inv = answer.entity("invoice").unwrap();
    assert_eq!(
        inv.deleted
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        [victim.as_str()]
    );
    assert!(inv.deleted[0].deleted_at.is_some());
    assert_eq!(inv.records.len(), 1);
    assert_eq!(inv.records[0].id, changed.id);
    assert_eq!(inv.records[0].raw.get(), changed.json);
    assert_eq!(answer.entity("Customer").unwrap().records[0].id, cust);
    assert_eq!(answer.objects(), 3);

    // The confirmation: the deleted id is gone from /query, the updated one is not.
    let present = client
        .read_ids("Invoice", &[victim.as_str(), changed.id.as_str()], false)
        .await
        .unwrap();
    assert_eq!(present.into_iter().collect::<Vec<_>>(), vec![changed.id]);
    let requests = sim.requests();
    let cdc_urls: Vec<_> = requests
        .iter()
        .filter(|r| r.endpoint == "cdc")
        .filter_map(|r| r.query.clone())
        .collect();
    assert!(
        cdc_urls
            .iter()
            .all(|q| q.contains("entities=Invoice,Customer") && q.contains("changedSince=")),
        "{cdc_urls:?}"
    );
}

#[tokio::test]
async fn read_ids_batches_many_ids_and_includes_inactive_name_lists() {
    let sim = sim_builder().seed(6).customers(250).spawn().await.unwrap();
    let client = client(&sim);
    let truth = sim.truth("Customer");
    let ids: Vec<&str> = truth.iter().map(|t| t.id.as_str()).collect();
    sim.delete("Customer", ids[0]).unwrap(); // a name list only goes inactive
    let present = client.read_ids("Customer", &ids, true).await.unwrap();
    assert_eq!(present.len(), 250);
    assert_eq!(client.api_calls(), 3, "100 ids a query");
}

#[tokio::test]
async fn cdc_refuses_bad_entity_lists_and_reports_qbo_s_horizon_fault() {
    let sim = sim_builder().seed(7).spawn().await.unwrap();
    let client = client(&sim);
    assert!(matches!(
        client.cdc(&[], OffsetDateTime::now_utc()).await,
        Err(QboError::Query(_))
    ));
    assert!(matches!(
        client
            .cdc(&["Invoice,Bill"], OffsetDateTime::now_utc())
            .await,
        Err(QboError::Query(_))
    ));
    assert_eq!(client.api_calls(), 0);
    let too_old = sim.now() - time::Duration::days(31);
    let err = client.cdc(&["Invoice"], too_old).await.unwrap_err();
    assert!(matches!(err, QboError::Fault { status: 400, .. }), "{err}");
}
