//! Batch (query items) and CDC.

use time::OffsetDateTime;

use crate::common::{Api, answer, small};

#[tokio::test]
async fn batch_answers_each_query_item() {
    let api = Api::start(small()).await;
    let body = serde_json::json!({"BatchItemRequest": [
        {"bId": "a", "Query": "SELECT COUNT(*) FROM Invoice"},
        {"bId": "b", "Query": "SELECT * FROM Customer MAXRESULTS 3"},
        {"bId": "c", "Query": "SELECT * FROM Customer WHERE Active = true OR Active = false"},
        {"bId": "d", "Invoice": {"Id": "1"}, "operation": "update"},
        {"bId": "e", "Query": "SELECT * FROM Invoice STARTPOSITION 10000"}
    ]});
    let r = api
        .http
        .post(format!(
            "{}/v3/company/{}/batch?minorversion=75",
            api.sim.base_url(),
            api.sim.realm_id()
        ))
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .unwrap();
    let a = answer(r).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let items = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["bId"], "a");
    assert_eq!(items[0]["QueryResponse"]["totalCount"], 600);
    assert_eq!(
        items[1]["QueryResponse"]["Customer"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(items[1]["QueryResponse"]["maxResults"], 3);
    assert_eq!(items[2]["Fault"]["Error"][0]["code"], "4000");
    assert_eq!(items[3]["Fault"]["type"], "ValidationFault");
    assert_eq!(items[4]["QueryResponse"], serde_json::json!({}));
    assert!(v["time"].is_string());
    // Too many items.
    let many: Vec<_> = (0..31)
        .map(|i| serde_json::json!({"bId": i.to_string(), "Query": "SELECT COUNT(*) FROM Item"}))
        .collect();
    let r = api
        .http
        .post(format!(
            "{}/v3/company/{}/batch",
            api.sim.base_url(),
            api.sim.realm_id()
        ))
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .json(&serde_json::json!({"BatchItemRequest": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

async fn cdc(api: &Api, entities: &str, since: &str) -> crate::common::Answer {
    let r = api
        .http
        .get(format!(
            "{}/v3/company/{}/cdc",
            api.sim.base_url(),
            api.sim.realm_id()
        ))
        .query(&[
            ("entities", entities),
            ("changedSince", since),
            ("minorversion", "75"),
        ])
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    answer(r).await
}

#[tokio::test]
async fn cdc_lists_changes_and_deletions_of_the_last_30_days() {
    let api = Api::start(small()).await;
    let since = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let since_text = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Nothing changed yet (the data is from 2023).
    let v = cdc(&api, "Customer,Invoice", &since_text).await.json();
    assert_eq!(
        v["CDCResponse"][0]["QueryResponse"],
        serde_json::json!([{}, {}])
    );

    let created = api.sim.create("Invoice", None).unwrap();
    let victim = api.sim.truth("Invoice")[3].id.clone();
    api.sim.delete("Invoice", &victim).unwrap();
    let cust = api.sim.truth("Customer")[0].id.clone();
    api.sim.update("Customer", &cust).unwrap();

    let a = cdc(&api, "Customer,Invoice", &since_text).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let parts = v["CDCResponse"][0]["QueryResponse"].as_array().unwrap();
    let customers = parts[0]["Customer"].as_array().unwrap();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["Id"], cust.as_str());
    let invoices = parts[1]["Invoice"].as_array().unwrap();
    assert_eq!(invoices.len(), 2);
    let deleted = invoices
        .iter()
        .find(|i| i["Id"] == victim.as_str())
        .unwrap();
    assert_eq!(deleted["status"], "Deleted");
    assert_eq!(deleted["domain"], "QBO");
    assert!(deleted["MetaData"]["LastUpdatedTime"].is_string());
    assert!(invoices.iter().any(|i| i["Id"] == created.id.as_str()));
    // Deleted invoices are gone from queries.
    assert_eq!(
        api.rows(
            &format!("SELECT * FROM Invoice WHERE Id = '{victim}'"),
            "Invoice"
        )
        .await
        .len(),
        0
    );

    // Older than 30 days, unknown entity, missing parameter.
    let old = (OffsetDateTime::now_utc() - time::Duration::days(31))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(cdc(&api, "Customer", &old).await.status, 400);
    assert_eq!(cdc(&api, "Widget", &since_text).await.status, 400);
    assert_eq!(cdc(&api, "", &since_text).await.status, 400);
}

#[tokio::test]
async fn the_simulated_clock_moves_changes_and_the_cdc_horizon() {
    let api = Api::start(small()).await;
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let before = api.sim.now();
    // One entity without changes: the empty `[{}]` form.
    let v = cdc(&api, "Invoice", &rfc(before - time::Duration::minutes(1)))
        .await
        .json();
    assert_eq!(
        v["CDCResponse"][0]["QueryResponse"],
        serde_json::json!([{}])
    );

    api.sim
        .advance_clock(std::time::Duration::from_secs(31 * 86_400));
    let now = api.sim.now();
    assert!(now - before >= time::Duration::days(31));
    let victim = api.sim.truth("Invoice")[0].id.clone();
    api.sim.delete("Invoice", &victim).unwrap();
    let updated = api
        .sim
        .update("Invoice", &api.sim.truth("Invoice")[1].id)
        .unwrap();
    assert!(updated.last_updated_time >= now - time::Duration::seconds(1));

    // `before` is now 31 simulated days back: beyond CDC's horizon.
    assert_eq!(cdc(&api, "Invoice", &rfc(before)).await.status, 400);
    let a = cdc(&api, "Invoice", &rfc(now - time::Duration::minutes(1))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let invoices = v["CDCResponse"][0]["QueryResponse"][0]["Invoice"]
        .as_array()
        .unwrap();
    assert_eq!(invoices.len(), 2);
    // The answer's time is the simulated one.
    let time = v["time"].as_str().unwrap();
    let t = OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((t - now).abs() < time::Duration::minutes(1), "{time}");
}
