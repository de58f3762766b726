//! Helpers shared by the integration tests.

use qbo_sim::{Sim, SimBuilder, SimHandle};
use reqwest::header::HeaderMap;
use time::macros::datetime;

/// A small, fast dataset over Jan–Feb 2023.
pub(crate) fn small() -> SimBuilder {
    Sim::builder()
        .seed(11)
        .customers(80)
        .items(50)
        .invoices(600)
        .vendors(15)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-03-01 00:00 UTC),
        )
}

/// A started simulator, an HTTP client and an access token for the primary realm.
pub(crate) struct Api {
    pub(crate) sim: SimHandle,
    pub(crate) http: reqwest::Client,
    pub(crate) token: String,
}

/// An HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

pub(crate) async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

impl Api {
    pub(crate) async fn start(b: SimBuilder) -> Api {
        let sim = b.spawn().await.unwrap();
        let token = sim.mint_access_token(&sim.realm_id()).unwrap();
        Api {
            sim,
            http: reqwest::Client::new(),
            token,
        }
    }

    pub(crate) fn query_url(&self) -> String {
        format!(
            "{}/v3/company/{}/query",
            self.sim.base_url(),
            self.sim.realm_id()
        )
    }

    /// GET query with JSON accepted and the bearer token.
    pub(crate) async fn get(&self, q: &str) -> Answer {
        let resp = self
            .http
            .get(self.query_url())
            .query(&[("query", q), ("minorversion", "75")])
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// GET query expecting 200 and JSON.
    pub(crate) async fn json(&self, q: &str) -> serde_json::Value {
        let a = self.get(q).await;
        assert_eq!(a.status, 200, "{q}: {}", a.body);
        a.json()
    }

    /// Rows of a page (empty when the page has no list).
    pub(crate) async fn rows(&self, q: &str, entity: &str) -> Vec<serde_json::Value> {
        let v = self.json(q).await;
        v["QueryResponse"][entity]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) async fn count(&self, q: &str) -> u64 {
        let v = self.json(q).await;
        v["QueryResponse"]["totalCount"]
            .as_u64()
            .unwrap_or_else(|| panic!("no totalCount: {v}"))
    }
}

/// The fault's code in either QBO casing.
pub(crate) fn fault_code(v: &serde_json::Value) -> String {
    let f = if v.get("Fault").is_some() {
        &v["Fault"]["Error"][0]
    } else {
        &v["fault"]["error"][0]
    };
    f["code"].as_str().unwrap_or_default().to_string()
}
