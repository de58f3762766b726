//! Payment, Bill, JournalEntry, Estimate, SalesReceipt, Account and Employee: generated,
//! queryable with their own fields, deterministic.

use crate::common::{Api, small};

const NEW: [(&str, bool); 7] = [
    ("Payment", false),
    ("Bill", false),
    ("JournalEntry", false),
    ("Estimate", false),
    ("SalesReceipt", false),
    ("Account", true),
    ("Employee", true),
];

fn strip_time(body: &str) -> &str {
    let i = body.rfind(",\"time\":").expect("time field");
    &body[..i]
}

#[tokio::test]
async fn every_new_entity_pages_and_counts_like_the_truth() {
    let api = Api::start(small()).await;
    for (entity, name_list) in NEW {
        let all = if name_list {
            " WHERE Active IN (true, false)"
        } else {
            ""
        };
        let truth = api.sim.truth(entity);
        assert!(truth.len() >= 20, "{entity}: {}", truth.len());
        let n = api
            .count(&format!("SELECT COUNT(*) FROM {entity}{all}"))
            .await;
        assert_eq!(n as usize, truth.len(), "{entity}");
        let mut seen = Vec::new();
        let mut start = 1;
        loop {
            let rows = api
                .rows(
                    &format!("SELECT * FROM {entity}{all} STARTPOSITION {start} MAXRESULTS 100"),
                    entity,
                )
                .await;
            if rows.is_empty() {
                break;
            }
            start += rows.len();
            seen.extend(
                rows.into_iter()
                    .map(|r| r["Id"].as_str().unwrap().to_string()),
            );
        }
        let expected: Vec<String> = truth.iter().map(|t| t.id.clone()).collect();
        assert_eq!(seen, expected, "{entity}");
        if name_list {
            let active = api.count(&format!("SELECT COUNT(*) FROM {entity}")).await as usize;
            let inactive = truth.iter().filter(|t| t.active == Some(false)).count();
            assert_eq!(active + inactive, truth.len(), "{entity}");
        }
    }
}

#[tokio::test]
async fn transaction_fields_filter() {
    let api = Api::start(small()).await;
    // Payments of one customer, each linked to an invoice of that customer.
    let payments = api.sim.truth("Payment");
    let first: serde_json::Value = serde_json::from_str(&payments[0].json).unwrap();
    let cust = first["CustomerRef"]["value"].as_str().unwrap();
    let rows = api
        .rows(
            &format!("SELECT * FROM Payment WHERE CustomerRef = '{cust}' MAXRESULTS 1000"),
            "Payment",
        )
        .await;
    assert!(!rows.is_empty());
    for p in &rows {
        assert_eq!(p["CustomerRef"]["value"], cust);
        if let Some(link) = p["Line"][0]["LinkedTxn"][0]["TxnId"].as_str() {
            let inv = api
                .rows(
                    &format!("SELECT * FROM Invoice WHERE Id = '{link}'"),
                    "Invoice",
                )
                .await;
            assert_eq!(inv[0]["CustomerRef"]["value"], cust, "{p}");
        }
    }
    // Bills by vendor and due date; estimates by status; journal entries by TxnDate.
    let bills = api.sim.truth("Bill");
    let b: serde_json::Value = serde_json::from_str(&bills[0].json).unwrap();
    let vendor = b["VendorRef"]["value"].as_str().unwrap();
    let n = api
        .count(&format!(
            "SELECT COUNT(*) FROM Bill WHERE VendorRef = '{vendor}'"
        ))
        .await;
    let expected = bills
        .iter()
        .filter(|t| {
            t.json
                .contains(&format!("\"VendorRef\":{{\"value\":\"{vendor}\""))
        })
        .count();
    assert_eq!(n as usize, expected);
    let closed = api
        .rows(
            "SELECT * FROM Estimate WHERE TxnStatus = 'Closed' MAXRESULTS 1000",
            "Estimate",
        )
        .await;
    assert!(!closed.is_empty());
    assert!(
        closed
            .iter()
            .all(|e| e["LinkedTxn"][0]["TxnType"] == "Invoice")
    );
    let feb = api
        .rows(
            "SELECT * FROM JournalEntry WHERE TxnDate >= '2023-02-01' AND TxnDate < '2023-03-01' MAXRESULTS 1000",
            "JournalEntry",
        )
        .await;
    assert!(
        feb.iter()
            .all(|j| j["TxnDate"].as_str().unwrap().starts_with("2023-02"))
    );
    // Reversing entries dated after the span exist: TxnDate windows must not stop at "now".
    let later = api
        .count("SELECT COUNT(*) FROM JournalEntry WHERE TxnDate >= '2023-03-01'")
        .await;
    assert!(later > 0);
    let accounts = api
        .rows(
            "SELECT * FROM Account WHERE AccountType = 'Expense' MAXRESULTS 1000",
            "Account",
        )
        .await;
    assert!(accounts.iter().all(|a| a["AccountType"] == "Expense"));
    assert!(!accounts.is_empty());
}

#[tokio::test]
async fn new_entities_same_seed_same_bytes() {
    let a = Api::start(small()).await;
    let b = Api::start(small()).await;
    let c = Api::start(small().seed(12)).await;
    for (entity, name_list) in NEW {
        let ta = a.sim.truth(entity);
        assert_eq!(ta, b.sim.truth(entity), "{entity}");
        assert_ne!(ta, c.sim.truth(entity), "{entity}");
        let all = if name_list {
            " WHERE Active IN (true, false)"
        } else {
            ""
        };
        let q = format!("SELECT * FROM {entity}{all} MAXRESULTS 1000");
        let pa = a.get(&q).await.body;
        let pb = b.get(&q).await.body;
        assert_eq!(strip_time(&pa), strip_time(&pb), "{entity}");
    }
}

#[tokio::test]
async fn new_entities_can_be_mutated() {
    let api = Api::start(small()).await;
    for (entity, name_list) in NEW {
        let before = api.sim.count(entity);
        let rec = api.sim.create(entity, None).unwrap();
        assert_eq!(api.sim.count(entity), before + 1, "{entity}");
        let up = api.sim.update(entity, &rec.id).unwrap();
        assert!(
            up.json.contains("\"SyncToken\":\"1\""),
            "{entity}: {}",
            up.json
        );
        api.sim.delete(entity, &rec.id).unwrap();
        if name_list {
            assert_eq!(api.sim.count(entity), before + 1, "{entity}: made inactive");
        } else {
            assert_eq!(api.sim.count(entity), before, "{entity}: hard-deleted");
        }
    }
}
