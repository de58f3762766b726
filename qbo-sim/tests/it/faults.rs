//! Every fault mode, scripted and drawn.

use std::time::{Duration, Instant};

use qbo_sim::{FaultPlan, Quirks, ScriptedFault, ThrottleBody};

use crate::common::{Api, answer, fault_code, small};

const Q: &str = "SELECT * FROM Invoice MAXRESULTS 200";

#[tokio::test]
async fn throttle_xml_without_retry_after_by_default() {
    let api = Api::start(small()).await;
    api.sim.script(vec![ScriptedFault::Throttle]);
    let a = api.get(Q).await;
    assert_eq!(a.status, 429);
    assert!(a.header("content-type").unwrap().contains("xml"));
    assert!(
        a.body
            .contains("<Fault type=\"SERVICE\"><Error code=\"3001\">"),
        "{}",
        a.body
    );
    assert!(a.header("retry-after").is_none());
    assert!(a.header("intuit_tid").is_some());
    // The script is used up: the next request is served.
    assert_eq!(api.get(Q).await.status, 200);
    assert_eq!(api.sim.stats().throttled, 1);
}

#[tokio::test]
async fn throttle_json_with_retry_after() {
    let api = Api::start(small().quirks(Quirks {
        throttle_body: ThrottleBody::Json,
        retry_after: Some(Duration::from_secs(7)),
        ..Quirks::default()
    }))
    .await;
    api.sim.script(vec![ScriptedFault::Throttle]);
    let a = api.get(Q).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after").as_deref(), Some("7"));
    let v = a.json();
    assert_eq!(v["Fault"]["type"], "SERVICE");
    assert_eq!(fault_code(&v), "3001");
}

#[tokio::test]
async fn server_errors_and_gateway_pages() {
    let api = Api::start(small()).await;
    api.sim.script(vec![
        ScriptedFault::Status(500),
        ScriptedFault::Status(502),
        ScriptedFault::Status(503),
        ScriptedFault::Status(504),
    ]);
    let a = api.get(Q).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.json()["Fault"]["type"], "SystemFault");
    for code in [502u16, 503] {
        let a = api.get(Q).await;
        assert_eq!(a.status, code);
        assert!(a.header("content-type").unwrap().starts_with("text/html"));
        assert!(serde_json::from_str::<serde_json::Value>(&a.body).is_err());
    }
    // Intuit's gateway answers a 504 in XML, code 6002, even when JSON was asked.
    let a = api.get(Q).await;
    assert_eq!(a.status, 504);
    assert!(a.header("content-type").unwrap().contains("xml"));
    assert!(
        a.body.contains(
            "<Fault type=\"SERVICE\"><Error code=\"6002\"><Message>message=GatewayTimeout; errorCode=006002; statusCode=504</Message></Error>"
        ),
        "{}",
        a.body
    );
    let rec = api.sim.requests();
    let faults: Vec<_> = rec.iter().filter_map(|r| r.fault.clone()).collect();
    assert_eq!(
        faults,
        vec!["status_500", "status_502", "status_503", "status_504"]
    );
    assert_eq!(api.sim.stats().faults_injected, 4);
}

/// The keys of the gateway's JSON envelope, in order, as public recordings show them.
const GATEWAY_KEYS: [&str; 12] = [
    "warnings",
    "intuitObject",
    "fault",
    "report",
    "queryResponse",
    "batchItemResponse",
    "attachableResponse",
    "syncErrorResponse",
    "requestId",
    "time",
    "status",
    "cdcresponse",
];

fn assert_gateway_envelope(body: &str) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v.as_object().unwrap().len(), GATEWAY_KEYS.len(), "{body}");
    let at: Vec<usize> = GATEWAY_KEYS
        .iter()
        .map(|k| {
            body.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k}: {body}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "key order: {body}");
    for k in [
        "warnings",
        "intuitObject",
        "report",
        "queryResponse",
        "syncErrorResponse",
        "requestId",
        "status",
    ] {
        assert!(v[k].is_null(), "{k}: {body}");
    }
    for k in ["batchItemResponse", "attachableResponse", "cdcresponse"] {
        assert_eq!(v[k], serde_json::json!([]), "{k}: {body}");
    }
    assert!(v["time"].is_u64(), "{body}");
    assert!(v["fault"]["error"][0]["element"].is_null(), "{body}");
    assert!(!body.contains("\"requestid\""), "{body}");
}

#[tokio::test]
async fn gateway_401_carries_the_null_siblings_and_request_id() {
    let api = Api::start(small()).await;
    api.sim.expire_access_tokens();
    let a = api.get(Q).await;
    assert_eq!(a.status, 401);
    assert_gateway_envelope(&a.body);
    let v = a.json();
    assert_eq!(v["fault"]["type"], "AUTHENTICATION");
    assert_eq!(v["fault"]["error"][0]["code"], "3200");
    assert_eq!(
        v["fault"]["error"][0]["message"],
        "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    );
}

#[tokio::test]
async fn recorded_faults_have_their_real_shapes() {
    let api = Api::start(small()).await;
    api.sim.script(vec![
        ScriptedFault::InternalError3100,
        ScriptedFault::Forbidden3100,
        ScriptedFault::Throttle403,
        ScriptedFault::NoSubscriptionAccess,
        ScriptedFault::RealmMismatch,
        ScriptedFault::Status(400),
    ]);
    // 500 InternalServerError, code 3100, gateway JSON without a detail.
    let a = api.get(Q).await;
    assert_eq!(a.status, 500);
    assert_gateway_envelope(&a.body);
    let v = a.json();
    assert_eq!(v["fault"]["type"], "SERVICE");
    assert_eq!(fault_code(&v), "3100");
    assert_eq!(
        v["fault"]["error"][0]["message"],
        "message=InternalServerError; errorCode=003100; statusCode=500"
    );
    assert!(v["fault"]["error"][0]["detail"].is_null());
    // 403, code 3100.
    let a = api.get(Q).await;
    assert_eq!(a.status, 403);
    assert_gateway_envelope(&a.body);
    let v = a.json();
    assert_eq!(fault_code(&v), "3100");
    assert_eq!(
        v["fault"]["error"][0]["message"],
        "message=AuthorizationFailed; errorCode=003100; statusCode=403"
    );
    // 403 throttle, XML although JSON was asked.
    let a = api.get(Q).await;
    assert_eq!(a.status, 403);
    assert!(a.header("content-type").unwrap().contains("xml"));
    assert!(a.body.contains("<Fault type=\"SERVICE\"><Error code=\"3001\"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=403</Message>"), "{}", a.body);
    // 401 XML code 120 and code 100.
    for (code, kind) in [
        ("120", "AuthorizationFault"),
        ("100", "AuthenticationFault"),
    ] {
        let a = api.get(Q).await;
        assert_eq!(a.status, 401);
        assert!(a.header("content-type").unwrap().contains("xml"));
        assert!(
            a.body
                .contains(&format!("<Fault type=\"{kind}\"><Error code=\"{code}\">")),
            "{}",
            a.body
        );
    }
    // 400 without element and time.
    let a = api.get(Q).await;
    assert_eq!(a.status, 400);
    let v = a.json();
    assert_eq!(v["Fault"]["type"], "ValidationFault");
    assert_eq!(fault_code(&v), "4000");
    assert!(
        v["Fault"]["Error"][0].get("element").is_none(),
        "{}",
        a.body
    );
    assert!(v.get("time").is_none(), "{}", a.body);
    // Each is a one-off: the token still works and the data is served.
    assert_eq!(api.get(Q).await.status, 200);
    let faults: Vec<_> = api
        .sim
        .requests()
        .into_iter()
        .filter_map(|r| r.fault)
        .collect();
    assert_eq!(
        faults,
        vec![
            "internal_error_3100",
            "forbidden_3100",
            "throttle_403",
            "no_subscription_access",
            "realm_mismatch",
            "status_400"
        ]
    );
}

#[tokio::test]
async fn recorded_faults_can_be_drawn_too() {
    let api = Api::start(small()).await;
    for (plan, status) in [
        (
            FaultPlan {
                internal_error_3100: 1.0,
                ..FaultPlan::default()
            },
            500,
        ),
        (
            FaultPlan {
                forbidden_3100: 1.0,
                ..FaultPlan::default()
            },
            403,
        ),
        (
            FaultPlan {
                throttle_403: 1.0,
                ..FaultPlan::default()
            },
            403,
        ),
        (
            FaultPlan {
                no_subscription_access: 1.0,
                ..FaultPlan::default()
            },
            401,
        ),
        (
            FaultPlan {
                realm_mismatch: 1.0,
                ..FaultPlan::default()
            },
            401,
        ),
        (
            FaultPlan {
                bad_request: 1.0,
                ..FaultPlan::default()
            },
            400,
        ),
    ] {
        api.sim.set_faults(plan.clone());
        assert_eq!(api.get(Q).await.status, status, "{plan:?}");
    }
    api.sim.set_faults(FaultPlan::none());
    assert_eq!(api.get(Q).await.status, 200);
}

#[tokio::test]
async fn fault_with_http_200() {
    let api = Api::start(small()).await;
    api.sim.script(vec![ScriptedFault::FaultWith200]);
    let a = api.get(Q).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert!(v.get("QueryResponse").is_none());
    assert_eq!(v["Fault"]["type"], "SystemFault");
}

#[tokio::test]
async fn slow_response_beats_a_client_timeout() {
    let api = Api::start(small()).await;
    api.sim
        .script(vec![ScriptedFault::Slow(Duration::from_millis(1500))]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .get(api.query_url())
        .query(&[("query", Q)])
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // A short delay is just slow.
    api.sim
        .script(vec![ScriptedFault::Slow(Duration::from_millis(200))]);
    let t = Instant::now();
    assert_eq!(api.get(Q).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn dropped_connection_mid_body() {
    let api = Api::start(small()).await;
    api.sim.script(vec![ScriptedFault::DropConnection]);
    let resp = api
        .http
        .get(api.query_url())
        .query(&[("query", Q)])
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let declared = resp.content_length().unwrap();
    assert!(declared > 10_000);
    assert!(resp.bytes().await.is_err(), "body must fail mid-way");
    // The server keeps serving afterwards.
    assert_eq!(api.get(Q).await.status, 200);
}

#[tokio::test]
async fn malformed_json_body() {
    let api = Api::start(small()).await;
    api.sim.script(vec![ScriptedFault::MalformedJson]);
    let a = api.get(Q).await;
    assert_eq!(a.status, 200);
    assert!(a.body.starts_with("{\"QueryResponse\":{\"Invoice\":["));
    assert!(serde_json::from_str::<serde_json::Value>(&a.body).is_err());
}

#[tokio::test]
async fn expired_token_fault_sticks_until_refresh() {
    let api = Api::start(small()).await;
    api.sim.script(vec![ScriptedFault::ExpiredToken]);
    let a = api.get(Q).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["fault"]["error"][0]["code"], "3200");
    // The token stays expired.
    assert_eq!(api.get(Q).await.status, 401);
}

#[tokio::test]
async fn pass_skips_and_scripts_apply_to_batch_and_cdc_too() {
    let api = Api::start(small()).await;
    api.sim
        .script(vec![ScriptedFault::Pass, ScriptedFault::Status(503)]);
    assert_eq!(api.get(Q).await.status, 200);
    assert_eq!(api.sim.pending_script(), 1);
    let r = api
        .http
        .post(format!("{}/v3/company/{}/batch", api.sim.base_url(), api.sim.realm_id()))
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .json(&serde_json::json!({"BatchItemRequest":[{"bId":"1","Query":"SELECT COUNT(*) FROM Item"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(api.sim.pending_script(), 0);
}

#[tokio::test]
async fn probabilistic_faults_follow_the_plan_and_its_seed() {
    let api = Api::start(small()).await;
    api.sim.set_faults(FaultPlan {
        service_unavailable: 1.0,
        ..FaultPlan::default()
    });
    for _ in 0..5 {
        assert_eq!(api.get(Q).await.status, 503);
    }
    let plan = FaultPlan {
        server_error: 0.3,
        throttle: 0.2,
        seed: 9,
        ..FaultPlan::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        api.sim.set_faults(plan.clone());
        let mut statuses = Vec::new();
        for _ in 0..60 {
            statuses.push(api.get("SELECT COUNT(*) FROM Item").await.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "same seed, same faults");
    let n500 = runs[0].iter().filter(|s| **s == 500).count();
    let n429 = runs[0].iter().filter(|s| **s == 429).count();
    let n200 = runs[0].iter().filter(|s| **s == 200).count();
    assert!(
        n500 > 5 && n429 > 3 && n200 > 10,
        "500:{n500} 429:{n429} 200:{n200}"
    );
    api.sim.set_faults(FaultPlan::none());
    assert_eq!(api.get(Q).await.status, 200);
}

#[tokio::test]
async fn latency_fixed_plus_jitter() {
    let api =
        Api::start(small().latency(Duration::from_millis(120), Duration::from_millis(60))).await;
    let t = Instant::now();
    assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 200);
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(120), "{e:?}");
    assert!(e < Duration::from_millis(1500), "{e:?}");
    api.sim.set_latency(Duration::ZERO, Duration::ZERO);
    let t = Instant::now();
    api.get("SELECT COUNT(*) FROM Item").await;
    assert!(t.elapsed() < Duration::from_millis(120));
    let _ = answer;
}
