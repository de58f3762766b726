//! The `/__sim` control routes mirror the handle.

use crate::common::{Api, small};

#[tokio::test]
async fn control_routes() {
    let api = Api::start(small()).await;
    let base = format!("{}/__sim", api.sim.base_url());
    let http = &api.http;
    api.get("SELECT COUNT(*) FROM Item").await;

    let stats: serde_json::Value = http
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["count_queries"], 1);
    assert_eq!(stats["by_endpoint"]["query"]["200"], 1);

    let reqs: serde_json::Value = http
        .get(format!("{base}/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reqs[0]["query"], "SELECT COUNT(*) FROM Item");
    assert_eq!(reqs[0]["endpoint"], "query");

    let creds: serde_json::Value = http
        .get(format!("{base}/credentials"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(creds["refresh_token"], api.sim.refresh_token().as_str());
    assert_eq!(creds["realm_id"], api.sim.realm_id().as_str());

    let truth: serde_json::Value = http
        .get(format!("{base}/truth/Item"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(truth.as_array().unwrap().len(), 50);
    assert_eq!(
        http.get(format!("{base}/truth/Widget"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );

    let created: serde_json::Value = http
        .post(format!("{base}/records/Customer"))
        .json(&serde_json::json!({"create_time": "2023-01-05T12:00:00Z"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(api.sim.truth("Customer").len(), 81);
    let r = http
        .post(format!("{base}/records/Customer/{id}/delete"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(
        api.sim
            .truth("Customer")
            .iter()
            .any(|t| t.id == id && t.active == Some(false))
    );
    let r = http
        .post(format!("{base}/records/Customer/999999/update"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    let r = http
        .post(format!("{base}/script"))
        .json(&serde_json::json!([{"kind": "status", "status": 502}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 502);

    http.put(format!("{base}/faults"))
        .json(&serde_json::json!({"gateway_timeout": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 504);
    http.put(format!("{base}/faults"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 200);

    http.post(format!("{base}/tokens/expire-access"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 401);

    http.post(format!("{base}/stats/reset"))
        .send()
        .await
        .unwrap();
    // Only the reset request itself is left.
    assert_eq!(api.sim.stats().total_requests, 1);
    let left = api.sim.requests();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].path, "/__sim/stats/reset");
    assert_eq!(left[0].endpoint, "control");
}
