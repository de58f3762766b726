//! What a full-catalog sync of another connector reads: CompanyInfo first, then every stream.

use crate::common::{Api, answer, fault_code, small};

#[tokio::test]
async fn company_info_read_answers_the_company() {
    let api = Api::start(small()).await;
    let realm = api.sim.realm_id();
    let url = format!(
        "{}/v3/company/{realm}/companyinfo/{realm}",
        api.sim.base_url()
    );
    let get = |accept: &'static str| {
        api.http
            .get(&url)
            .query(&[("minorversion", "75")])
            .bearer_auth(&api.token)
            .header("Accept", accept)
            .send()
    };
    let a = answer(get("application/json").await.unwrap()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("intuit_tid").is_some());
    let v = a.json();
    let info = &v["CompanyInfo"];
    assert_eq!(info["Id"], "1");
    assert!(info["CompanyName"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(info["Country"], "US");
    assert!(
        info["NameValue"]
            .as_array()
            .is_some_and(|nv| !nv.is_empty())
    );
    assert!(info["MetaData"]["CreateTime"].is_string());
    assert!(v["time"].is_string());
    // The same record through the query endpoint.
    let rows = api.rows("SELECT * FROM CompanyInfo", "CompanyInfo").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0], info);
    // XML when JSON is not accepted.
    let x = answer(get("application/xml").await.unwrap()).await;
    assert_eq!(x.status, 200);
    assert!(
        x.body
            .contains("<CompanyInfo domain=\"QBO\" sparse=\"false\">"),
        "{}",
        x.body
    );
    // Another id is not this company.
    let wrong = answer(
        api.http
            .get(format!(
                "{}/v3/company/{realm}/companyinfo/123",
                api.sim.base_url()
            ))
            .bearer_auth(&api.token)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, 400);
    assert_eq!(fault_code(&wrong.json()), "610");
    // Without a token: the gateway's 401, as for every API call.
    let anon = answer(
        api.http
            .get(&url)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(anon.status, 401);
    assert_eq!(api.sim.stats().count("read", 200), 2);
}

#[tokio::test]
async fn budget_tax_agency_and_customer_type_are_queryable() {
    let api = Api::start(small()).await;
    for entity in ["Budget", "TaxAgency", "CustomerType"] {
        let a = api.get(&format!("SELECT * FROM {entity}")).await;
        assert_eq!(a.status, 200, "{entity}: {}", a.body);
        assert!(
            a.body.starts_with("{\"QueryResponse\":{}"),
            "{entity}: {}",
            a.body
        );
        assert_eq!(
            api.count(&format!("SELECT COUNT(*) FROM {entity}")).await,
            0
        );
    }
    // Name lists take the Active filter; TaxAgency has none.
    assert_eq!(
        api.get("SELECT * FROM CustomerType WHERE Active IN (true, false)")
            .await
            .status,
        200
    );
    assert_eq!(
        api.get("SELECT * FROM TaxAgency WHERE Active = true")
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn every_known_entity_answers_a_query() {
    let api = Api::start(small()).await;
    for entity in qbo_sim::known_entities() {
        let a = api
            .get(&format!("SELECT * FROM {entity} MAXRESULTS 5"))
            .await;
        assert_eq!(a.status, 200, "{entity}: {}", a.body);
    }
}
