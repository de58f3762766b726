//! The query endpoint: shapes, parser, validation, auth, headers.

use crate::common::{Api, answer, fault_code, small};

fn assert_pacific_time(t: &str) {
    // e.g. 2026-11-27T15:20:43.723-08:00
    assert_eq!(t.len(), 29, "{t}");
    assert!(t.ends_with("-08:00") || t.ends_with("-07:00"), "{t}");
    assert_eq!(&t[19..20], ".");
}

#[tokio::test]
async fn page_empty_page_and_count_shapes() {
    let api = Api::start(small()).await;
    let v = api
        .json("SELECT * FROM Invoice STARTPOSITION 1 MAXRESULTS 7")
        .await;
    let qr = &v["QueryResponse"];
    assert_eq!(qr["Invoice"].as_array().unwrap().len(), 7);
    assert_eq!(qr["startPosition"], 1);
    assert_eq!(qr["maxResults"], 7);
    assert!(qr.get("totalCount").is_none());
    assert_pacific_time(v["time"].as_str().unwrap());

    // A last, short page: maxResults is the number of rows returned.
    let v = api
        .json("SELECT * FROM Invoice STARTPOSITION 591 MAXRESULTS 100")
        .await;
    assert_eq!(v["QueryResponse"]["maxResults"], 10);
    assert_eq!(v["QueryResponse"]["startPosition"], 591);

    // Empty page: no list, no counters.
    let a = api
        .get("SELECT * FROM Invoice STARTPOSITION 601 MAXRESULTS 100")
        .await;
    assert_eq!(a.status, 200);
    assert!(
        a.body.starts_with("{\"QueryResponse\":{},\"time\":\""),
        "{}",
        a.body
    );

    let v = api.json("SELECT COUNT(*) FROM Invoice").await;
    assert_eq!(v["QueryResponse"], serde_json::json!({"totalCount": 600}));

    // Known but empty entity.
    let a = api.get("SELECT * FROM Transfer").await;
    assert!(a.body.starts_with("{\"QueryResponse\":{}"));
    assert_eq!(
        api.count("select count(*) from Vendor where Active in (true,false)")
            .await,
        15
    );
}

#[tokio::test]
async fn default_max_results_is_100_and_limits_are_validated() {
    let api = Api::start(small()).await;
    assert_eq!(
        api.rows("SELECT * FROM Invoice", "Invoice").await.len(),
        100
    );
    assert_eq!(
        api.rows("SELECT * FROM Invoice MAXRESULTS 1000", "Invoice")
            .await
            .len(),
        600
    );
    for q in [
        "SELECT * FROM Invoice MAXRESULTS 1001",
        "SELECT * FROM Invoice STARTPOSITION 0",
        "SELECT * FROM Invoice STARTPOSITION 0 MAXRESULTS 10",
    ] {
        let a = api.get(q).await;
        assert_eq!(a.status, 400, "{q}");
        let v = a.json();
        assert_eq!(v["Fault"]["type"], "ValidationFault");
    }
}

#[tokio::test]
async fn parser_and_validation_faults() {
    let api = Api::start(small()).await;
    let cases = [
        (
            "SELECT * FROM Customer WHERE Active = true OR Active = false",
            "4000",
        ),
        ("SELECT Id, DisplayName FROM Customer", "4000"),
        ("SELECT * FROM Customer WHERE", "4000"),
        ("SELECT * FROM Customer WHERE DisplayName = 'open", "4000"),
        ("SELECT * FROM Widget", "4001"),
        ("SELECT * FROM Customer WHERE Colour = 'red'", "4001"),
        ("SELECT * FROM Invoice WHERE Id > '3'", "4001"),
        (
            "SELECT * FROM Invoice WHERE MetaData.CreateTime > 'tomorrow'",
            "4001",
        ),
        ("SELECT * FROM Invoice ORDERBY Colour", "4001"),
    ];
    for (q, code) in cases {
        let a = api.get(q).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
        let v = a.json();
        assert_eq!(v["Fault"]["type"], "ValidationFault", "{q}");
        assert_eq!(fault_code(&v), code, "{q}: {}", a.body);
        assert!(v["time"].is_string());
    }
}

#[tokio::test]
async fn keywords_entities_and_fields_are_case_insensitive() {
    let api = Api::start(small()).await;
    let a = api
        .rows(
            "select * from invoice where metadata.createtime >= '2023-01-10T00:00:00Z' order by Metadata.CreateTime desc maxresults 5",
            "Invoice",
        )
        .await;
    let b = api
        .rows(
            "SELECT * FROM Invoice WHERE MetaData.CreateTime >= '2023-01-10T00:00:00Z' ORDERBY MetaData.CreateTime DESC MAXRESULTS 5",
            "Invoice",
        )
        .await;
    assert_eq!(a.len(), 5);
    assert_eq!(a, b);
}

#[tokio::test]
async fn post_with_application_text_equals_get() {
    let api = Api::start(small()).await;
    let q = "SELECT * FROM Customer WHERE Active IN (true, false) MAXRESULTS 20";
    let got = api.json(q).await;
    let resp = api
        .http
        .post(format!("{}?minorversion=75", api.query_url()))
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .header("Content-Type", "application/text")
        .body(q)
        .send()
        .await
        .unwrap();
    let posted = answer(resp).await;
    assert_eq!(posted.status, 200);
    assert_eq!(posted.json()["QueryResponse"], got["QueryResponse"]);
    let resp = api
        .http
        .post(api.query_url())
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body(q)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let rec = api.sim.requests();
    assert!(
        rec.iter()
            .any(|r| r.method == "POST" && r.query.as_deref() == Some(q))
    );
}

#[tokio::test]
async fn literals_with_escaped_quotes_and_like() {
    let api = Api::start(small()).await;
    let all = api
        .rows(
            "SELECT * FROM Customer WHERE Active IN (true, false) MAXRESULTS 1000",
            "Customer",
        )
        .await;
    let with_quote = all
        .iter()
        .map(|c| c["DisplayName"].as_str().unwrap().to_string())
        .find(|n| n.contains('\''))
        .expect("some display name has an apostrophe");
    let escaped = with_quote.replace('\'', "\\'");
    let found = api
        .rows(
            &format!(
                "SELECT * FROM Customer WHERE DisplayName = '{escaped}' AND Active IN (true, false)"
            ),
            "Customer",
        )
        .await;
    assert_eq!(found.len(), 1, "{with_quote}");
    assert_eq!(found[0]["DisplayName"], with_quote.as_str());
    // LIKE with % only, case-insensitive.
    let prefix: String = with_quote
        .chars()
        .take(3)
        .collect::<String>()
        .to_uppercase()
        .replace('\'', "\\'");
    let liked = api
        .rows(&format!("SELECT * FROM Customer WHERE DisplayName LIKE '{prefix}%' AND Active IN (true, false) MAXRESULTS 1000"), "Customer")
        .await;
    assert!(
        liked
            .iter()
            .any(|c| c["DisplayName"] == with_quote.as_str())
    );
    assert!(liked.len() < all.len());
    // Id supports = and IN.
    let ids: Vec<String> = all
        .iter()
        .take(3)
        .map(|c| c["Id"].as_str().unwrap().to_string())
        .collect();
    let q = format!(
        "SELECT * FROM Customer WHERE Id IN ('{}', '{}', '{}') AND Active IN (true, false)",
        ids[0], ids[1], ids[2]
    );
    assert_eq!(api.rows(&q, "Customer").await.len(), 3);
}

#[tokio::test]
async fn auth_realm_and_gateway_faults() {
    let api = Api::start(small()).await;
    // No bearer: gateway 401 with lower-case keys and epoch-ms time.
    let resp = api
        .http
        .get(api.query_url())
        .query(&[("query", "SELECT * FROM Customer")])
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert_eq!(a.status, 401);
    let v = a.json();
    assert_eq!(v["fault"]["error"][0]["code"], "3200");
    assert_eq!(v["fault"]["type"], "AUTHENTICATION");
    assert!(v["time"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(a.header("intuit_tid").is_some());

    // Unknown token.
    let resp = api
        .http
        .get(api.query_url())
        .query(&[("query", "SELECT * FROM Customer")])
        .bearer_auth("not-a-token")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Expired token.
    api.sim.expire_access_tokens();
    let a = api.get("SELECT * FROM Customer").await;
    assert_eq!(a.status, 401);
    assert!(
        a.json()["fault"]["error"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Unknown realm: 401 with code 3100.
    let token = api.sim.mint_access_token(&api.sim.realm_id()).unwrap();
    let resp = api
        .http
        .get(format!("{}/v3/company/123/query", api.sim.base_url()))
        .query(&[("query", "SELECT * FROM Customer")])
        .bearer_auth(&token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert_eq!(a.status, 401);
    assert_eq!(fault_code(&a.json()), "3100");
}

#[tokio::test]
async fn token_of_another_realm_is_refused() {
    let api = Api::start(small().extra_realm("4620816365257778210", 99)).await;
    let other = "4620816365257778210";
    let other_token = api.sim.mint_access_token(other).unwrap();
    let resp = api
        .http
        .get(api.query_url())
        .query(&[("query", "SELECT * FROM Customer")])
        .bearer_auth(&other_token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert_eq!(a.status, 401);
    // QBO answers a token of another company in XML even when JSON was asked.
    assert!(
        a.header("content-type").unwrap().contains("xml"),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains("<Fault type=\"AuthenticationFault\"><Error code=\"100\">"),
        "{}",
        a.body
    );
    // Each realm serves its own data; ids collide across companies.
    let resp = api
        .http
        .get(format!("{}/v3/company/{other}/query", api.sim.base_url()))
        .query(&[("query", "SELECT * FROM Invoice MAXRESULTS 1000")])
        .bearer_auth(&other_token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let theirs = answer(resp).await.json();
    let ours = api.json("SELECT * FROM Invoice MAXRESULTS 1000").await;
    let ids = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v["QueryResponse"]["Invoice"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&theirs), ids(&ours));
    assert_ne!(theirs["QueryResponse"], ours["QueryResponse"]);
    assert_eq!(
        api.sim
            .realm(other)
            .unwrap()
            .truth("Invoice")
            .unwrap()
            .len(),
        600
    );
}

#[tokio::test]
async fn intuit_tid_everywhere_and_xml_without_json_accept() {
    let api = Api::start(small()).await;
    let base = api.sim.base_url();
    let r = api.http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.headers().get("intuit_tid").is_some());
    let r = api.http.post(api.sim.token_url()).send().await.unwrap();
    assert!(r.headers().get("intuit_tid").is_some());
    let r = api
        .http
        .get(format!("{base}/__sim/stats"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("intuit_tid").is_some());

    // Without Accept: application/json, QBO answers in XML.
    let resp = api
        .http
        .get(api.query_url())
        .query(&[("query", "SELECT * FROM Item MAXRESULTS 2")])
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").unwrap().contains("xml"));
    assert!(
        a.body
            .contains("<QueryResponse startPosition=\"1\" maxResults=\"2\"><Item"),
        "{}",
        a.body
    );
    assert!(serde_json::from_str::<serde_json::Value>(&a.body).is_err());
}

#[tokio::test]
async fn missing_query_is_a_200_system_fault() {
    let api = Api::start(small()).await;
    let resp = api
        .http
        .get(api.query_url())
        .query(&[("minorversion", "75")])
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["Fault"]["type"], "SystemFault");
}

#[tokio::test]
async fn payload_shapes() {
    let api = Api::start(small()).await;
    let inv = api
        .rows("SELECT * FROM Invoice MAXRESULTS 50", "Invoice")
        .await;
    for i in &inv {
        for k in [
            "Id",
            "SyncToken",
            "domain",
            "sparse",
            "MetaData",
            "DocNumber",
            "TxnDate",
            "DueDate",
            "CustomerRef",
            "Line",
            "TxnTaxDetail",
            "TotalAmt",
            "Balance",
            "CurrencyRef",
        ] {
            assert!(i.get(k).is_some(), "invoice lacks {k}");
        }
        let lines = i["Line"].as_array().unwrap();
        let last = lines.last().unwrap();
        assert_eq!(last["DetailType"], "SubTotalLineDetail");
        assert!(last.get("Id").is_none());
        assert!(
            lines[..lines.len() - 1]
                .iter()
                .all(|l| l["DetailType"] == "SalesItemLineDetail" && l.get("Id").is_some())
        );
        let ct = i["MetaData"]["CreateTime"].as_str().unwrap();
        assert!(ct.ends_with("-08:00") || ct.ends_with("-07:00"), "{ct}");
    }
    let items = api
        .rows(
            "SELECT * FROM Item WHERE Active IN (true, false) MAXRESULTS 1000",
            "Item",
        )
        .await;
    let types: std::collections::BTreeSet<&str> =
        items.iter().map(|i| i["Type"].as_str().unwrap()).collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        vec!["Category", "Inventory", "NonInventory", "Service"]
    );
    assert!(
        items.iter().any(
            |i| i["SubItem"] == true && i["FullyQualifiedName"].as_str().unwrap().contains(':')
        )
    );
    let cust = api
        .rows(
            "SELECT * FROM Customer WHERE Active IN (true, false) MAXRESULTS 1000",
            "Customer",
        )
        .await;
    assert!(
        cust.iter()
            .any(|c| c.get("ParentRef").is_some() && c["Job"] == true)
    );
    assert!(
        cust.iter()
            .any(|c| c["Active"] == false
                && c["DisplayName"].as_str().unwrap().ends_with("(deleted)"))
    );
}

#[tokio::test]
async fn xml_pages_carry_the_amounts_as_json_does() {
    let api = Api::start(small()).await;
    let q = "SELECT * FROM Invoice MAXRESULTS 1000";
    let xml = api
        .http
        .get(api.query_url())
        .query(&[("query", q)])
        .bearer_auth(&api.token)
        .header("Accept", "application/xml")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let json = api.get(q).await.body;
    let tokens = |text: &str, open: &str, close: char| -> Vec<String> {
        text.split(open)
            .skip(1)
            .map(|rest| rest[..rest.find(close).unwrap()].to_string())
            .collect()
    };
    for key in ["TotalAmt", "Balance"] {
        let from_xml = tokens(&xml, &format!("<{key}>"), '<');
        let from_json = tokens(&json, &format!("\"{key}\":"), ',');
        assert_eq!(from_xml.len(), 600, "{key}");
        assert_eq!(from_xml, from_json, "{key}");
        assert!(
            from_xml
                .iter()
                .all(|t| t.len() > 3 && t.as_bytes()[t.len() - 3] == b'.')
        );
        // Amounts whose text ends in a zero are the ones an f64 would shorten.
        assert!(from_xml.iter().any(|t| t.ends_with('0')), "{key}");
    }
}
