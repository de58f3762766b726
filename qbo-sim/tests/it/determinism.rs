//! Same seed → identical bytes; another seed → other data.

use crate::common::{Api, small};

fn strip_time(body: &str) -> &str {
    let i = body.rfind(",\"time\":").expect("time field");
    &body[..i]
}

#[tokio::test]
async fn same_seed_same_bytes() {
    let a = Api::start(small()).await;
    let b = Api::start(small()).await;
    let c = Api::start(small().seed(12)).await;
    for entity in ["Customer", "Item", "Invoice", "Vendor"] {
        let ta = a.sim.truth(entity);
        assert_eq!(ta, b.sim.truth(entity), "{entity}");
        assert_ne!(ta, c.sim.truth(entity), "{entity}");
        let q = format!("SELECT * FROM {entity} WHERE Active IN (true, false) MAXRESULTS 1000");
        let q = if entity == "Invoice" {
            "SELECT * FROM Invoice MAXRESULTS 1000".to_string()
        } else {
            q
        };
        let pa = a.get(&q).await.body;
        let pb = b.get(&q).await.body;
        assert_eq!(strip_time(&pa), strip_time(&pb), "{entity}");
    }
}
