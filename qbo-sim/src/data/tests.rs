//! Unit tests of the generators: shapes, sizes, determinism of the index, filter values.

use super::*;
use crate::schema::FieldType;
use time::macros::datetime;

fn gen_small() -> Generator {
    Generator::new(GenConfig {
        seed: 7,
        customers: 300,
        inactive_customers: None,
        items: 200,
        invoices: 2000,
        vendors: 50,
        payments: 500,
        bills: 300,
        journal_entries: 200,
        estimates: 200,
        sales_receipts: 300,
        accounts: 60,
        employees: 30,
        start: datetime!(2023-01-01 00:00 UTC).unix_timestamp(),
        end: datetime!(2024-01-01 00:00 UTC).unix_timestamp(),
    })
}

#[test]
fn id_pattern_round_trips() {
    for k in 0..10_000 {
        assert_eq!(index_of(id_of(k)), Some(k));
    }
    assert_eq!(index_of(10), None);
    assert_eq!(index_of(0), None);
    assert_eq!(id_of(0), 1);
    assert_eq!(id_of(9), 11);
}

#[test]
fn every_record_is_valid_json_and_sizes_are_realistic() {
    let g = gen_small();
    for kind in [Kind::Customer, Kind::Vendor, Kind::Item, Kind::Invoice] {
        let idx = g.build(kind);
        let mut total = 0usize;
        for e in &idx {
            let s = g.render_string(kind, e);
            let v: serde_json::Value = serde_json::from_str(&s)
                .unwrap_or_else(|err| panic!("{kind:?} {}: {err}\n{s}", e.id));
            assert_eq!(v["Id"], e.id.to_string());
            total += s.len();
        }
        let avg = total / idx.len();
        match kind {
            Kind::Customer => assert!((600..=1300).contains(&avg), "customer avg {avg}"),
            Kind::Vendor => assert!((400..=1200).contains(&avg), "vendor avg {avg}"),
            Kind::Item => assert!((250..=700).contains(&avg), "item avg {avg}"),
            _ => assert!(avg > 1500, "invoice avg {avg}"),
        }
    }
}

/// The number tokens that follow `"key":` in raw JSON text.
fn number_tokens<'a>(json: &'a str, key: &str) -> Vec<&'a str> {
    let needle = format!("\"{key}\":");
    json.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &json[i + needle.len()..];
            let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|t| !t.starts_with(['"', '{', '[', 'n', 't', 'f']))
        .collect()
}

#[test]
fn money_has_two_decimals_and_prices_no_third() {
    let g = gen_small();
    let keys = [
        "Amount",
        "TotalAmt",
        "Balance",
        "BalanceWithJobs",
        "UnitPrice",
        "PurchaseCost",
        "TotalTax",
        "NetAmountTaxable",
        "Deposit",
    ];
    let mut seen = 0;
    for kind in [Kind::Customer, Kind::Vendor, Kind::Item, Kind::Invoice] {
        for e in g.build(kind) {
            let s = g.render_string(kind, &e);
            for key in keys {
                for t in number_tokens(&s, key) {
                    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
                    assert!(
                        frac.len() == 2
                            && frac.bytes().all(|b| b.is_ascii_digit())
                            && int
                                .trim_start_matches('-')
                                .bytes()
                                .all(|b| b.is_ascii_digit()),
                        "{kind:?} {} {key}: {t}",
                        e.id
                    );
                    seen += 1;
                }
            }
        }
    }
    assert!(seen > 10_000, "{seen}");
    // Whole amounts keep their zeros: some `.00` and some `.50`-style values exist.
    let all: String = g
        .build(Kind::Invoice)
        .iter()
        .map(|e| g.render_string(Kind::Invoice, e))
        .collect();
    assert!(
        number_tokens(&all, "UnitPrice")
            .iter()
            .any(|t| t.ends_with(".00"))
    );
    assert!(
        number_tokens(&all, "Amount")
            .iter()
            .any(|t| t.ends_with("0") && !t.ends_with(".00"))
    );
}

const NEW_KINDS: [Kind; 7] = [
    Kind::Payment,
    Kind::Bill,
    Kind::JournalEntry,
    Kind::Estimate,
    Kind::SalesReceipt,
    Kind::Account,
    Kind::Employee,
];

fn json_of(g: &Generator, kind: Kind, e: &Entry) -> serde_json::Value {
    let s = g.render_string(kind, e);
    serde_json::from_str(&s).unwrap_or_else(|err| panic!("{kind:?} {}: {err}\n{s}", e.id))
}

/// What a query filter sees (the generator's field values) is what the record says.
#[test]
fn filter_values_agree_with_the_rendered_records() {
    let g = gen_small();
    for def in crate::schema::ENTITIES {
        let kind = def.kind;
        for e in g.build(kind).iter().take(400) {
            let v = json_of(&g, kind, e);
            assert_eq!(v["Id"], e.id.to_string(), "{}", def.name);
            for (path, field) in def.fields.iter().skip(3) {
                let at = &v[*path];
                let what = format!("{} {} {path}: {v}", def.name, e.id);
                match field.ty() {
                    FieldType::Text => {
                        assert_eq!(at.as_str().unwrap_or(""), g.text(kind, e, *field), "{what}")
                    }
                    FieldType::Bool => {
                        assert_eq!(
                            at.as_bool().unwrap_or(false),
                            g.boolean(kind, e, *field),
                            "{what}"
                        )
                    }
                    FieldType::Ref => assert_eq!(
                        at["value"]
                            .as_str()
                            .map_or(0, |s| s.parse::<u64>().unwrap()),
                        g.reference(kind, e, *field),
                        "{what}"
                    ),
                    FieldType::Date => assert_eq!(
                        at.as_str().unwrap(),
                        g.date(kind, e, *field).to_string(),
                        "{what}"
                    ),
                    FieldType::Id | FieldType::Instant => {}
                }
            }
        }
    }
}

#[test]
fn new_entities_have_realistic_shapes() {
    let g = gen_small();
    let invoices: std::collections::HashMap<u32, Entry> = g
        .build(Kind::Invoice)
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    let mut sizes = std::collections::BTreeMap::new();
    for kind in NEW_KINDS {
        let idx = g.build(kind);
        assert_eq!(idx.len(), g.count(kind), "{kind:?}");
        let mut total = 0;
        for e in &idx {
            let s = g.render_string(kind, e);
            total += s.len();
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            let cents = |x: &serde_json::Value| (x.as_f64().unwrap() * 100.0).round() as i64;
            match kind {
                Kind::Payment => {
                    let lines = v["Line"].as_array().unwrap();
                    if let Some(l) = lines.first() {
                        let link = &l["LinkedTxn"][0];
                        assert_eq!(link["TxnType"], "Invoice");
                        let inv_id: u32 = link["TxnId"].as_str().unwrap().parse().unwrap();
                        let inv = invoices[&inv_id];
                        let iv = json_of(&g, Kind::Invoice, &inv);
                        assert_eq!(iv["CustomerRef"]["value"], v["CustomerRef"]["value"]);
                        assert!(cents(&l["Amount"]) <= cents(&iv["TotalAmt"]));
                        assert_eq!(cents(&l["Amount"]), cents(&v["TotalAmt"]));
                        assert_eq!(l["LineEx"]["any"][0]["value"]["Value"], link["TxnId"]);
                    } else {
                        assert_eq!(v["UnappliedAmt"], v["TotalAmt"]);
                    }
                }
                Kind::JournalEntry => {
                    let (mut debit, mut credit) = (0, 0);
                    for l in v["Line"].as_array().unwrap() {
                        match l["JournalEntryLineDetail"]["PostingType"].as_str().unwrap() {
                            "Debit" => debit += cents(&l["Amount"]),
                            _ => credit += cents(&l["Amount"]),
                        }
                    }
                    assert_eq!(debit, credit, "{v}");
                    assert_eq!(debit, cents(&v["TotalAmt"]));
                }
                Kind::Bill => {
                    let sum: i64 = v["Line"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|l| cents(&l["Amount"]))
                        .sum();
                    assert_eq!(sum, cents(&v["TotalAmt"]), "{v}");
                }
                Kind::Estimate => {
                    let linked = v["LinkedTxn"].as_array().unwrap();
                    assert_eq!(!linked.is_empty(), v["TxnStatus"] == "Closed", "{v}");
                }
                Kind::SalesReceipt => assert_eq!(v["Balance"].to_string(), "0.0"),
                Kind::Account => {
                    if let Some(p) = v.get("ParentRef") {
                        let pid: u32 = p["value"].as_str().unwrap().parse().unwrap();
                        let fqn = v["FullyQualifiedName"].as_str().unwrap();
                        assert!(fqn.starts_with(&g.account(pid).name), "{fqn}");
                    }
                }
                _ => {}
            }
        }
        sizes.insert(format!("{kind:?}"), total / idx.len());
    }
    // Sizes in the range of real records (compact JSON).
    for (kind, (lo, hi)) in [
        ("Payment", (500, 2000)),
        ("Bill", (600, 4000)),
        ("JournalEntry", (600, 4000)),
        ("Estimate", (1200, 8000)),
        ("SalesReceipt", (1200, 8000)),
        ("Account", (350, 700)),
        ("Employee", (550, 900)),
    ] {
        let avg = sizes[kind];
        assert!((lo..=hi).contains(&avg), "{kind} avg {avg}: {sizes:?}");
    }
    // Post-dated business dates exist (reversing entries), and inactive name-list records.
    assert!(
        g.build(Kind::JournalEntry)
            .iter()
            .any(|e| e.txn_date() > tz::to_pacific(e.create_time()).date())
    );
    assert!(g.build(Kind::Account).iter().any(|e| !e.active()));
    assert!(g.build(Kind::Employee).iter().any(|e| !e.active()));
}

#[test]
fn invoice_sizes_follow_line_counts() {
    let g = gen_small();
    let idx = g.build(Kind::Invoice);
    let mut saw_small = false;
    let mut saw_big = false;
    for e in &idx {
        let s = g.render_string(Kind::Invoice, e);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let lines = v["Line"].as_array().unwrap().len() - 1;
        if lines == 3 {
            assert!(
                (1500..=3200).contains(&s.len()),
                "3-line invoice is {} bytes",
                s.len()
            );
            saw_small = true;
        }
        if lines > 100 {
            assert!(s.len() > 20_000);
            saw_big = true;
        }
        // Totals add up exactly.
        let sub: String = v["Line"].as_array().unwrap().last().unwrap()["Amount"].to_string();
        assert!(!sub.contains('e'));
    }
    assert!(saw_small && saw_big);
}

#[test]
fn midnight_edges_and_id_order() {
    let g = gen_small();
    let idx = g.build(Kind::Invoice);
    assert!(idx.iter().any(|e| e.create % DAY == 0));
    assert!(idx.iter().any(|e| e.create % DAY == DAY - 1));
    let start = g.config().start;
    let end = g.config().end;
    assert!(
        idx.iter()
            .all(|e| e.create >= start && e.create < end && e.updated >= e.create)
    );
    // Sorted by time, ids are not.
    assert!(idx.windows(2).any(|w| w[0].id > w[1].id));
    // Some inactive customers and some sub-customers.
    let c = g.build(Kind::Customer);
    assert!(c.iter().any(|e| !e.active()));
    assert!(c.iter().any(|e| g.boolean(Kind::Customer, e, Field::Job)));
    let items = g.build(Kind::Item);
    assert!(
        items
            .iter()
            .any(|e| g.boolean(Kind::Item, e, Field::SubItem))
    );
    for ty in ["Service", "NonInventory", "Inventory", "Category"] {
        assert!(
            items
                .iter()
                .any(|e| g.text(Kind::Item, e, Field::Type) == ty),
            "{ty}"
        );
    }
}

#[test]
fn sub_records_name_their_parent() {
    let g = gen_small();
    for e in g.build(Kind::Customer) {
        let v: serde_json::Value =
            serde_json::from_str(&g.render_string(Kind::Customer, &e)).unwrap();
        if let Some(pid) = v.get("ParentRef") {
            let pid: u32 = pid["value"].as_str().unwrap().parse().unwrap();
            assert!(
                g.party_parent_id(Kind::Customer, pid).is_none(),
                "parent must be a root"
            );
            let fqn = v["FullyQualifiedName"].as_str().unwrap();
            assert!(
                fqn.starts_with(&g.party_display(Kind::Customer, pid)),
                "{fqn}"
            );
            assert_eq!(g.party_parent_id(Kind::Customer, e.id), Some(pid));
        }
    }
    for e in g.build(Kind::Item) {
        let v: serde_json::Value = serde_json::from_str(&g.render_string(Kind::Item, &e)).unwrap();
        if let Some(p) = v.get("ParentRef") {
            let pid: u32 = p["value"].as_str().unwrap().parse().unwrap();
            assert_eq!(p["name"].as_str().unwrap(), g.item_name(pid));
            assert_eq!(g.item_parent_id(e.id), Some(pid));
        } else {
            assert_eq!(g.item_parent_id(e.id), None);
        }
    }
}

#[test]
fn an_exact_count_of_inactive_customers_leaves_the_rest_unchanged() {
    let random = gen_small();
    let exact = Generator::new(GenConfig {
        inactive_customers: Some(37),
        ..random.config().clone()
    });
    let a = random.build(Kind::Customer);
    let b = exact.build(Kind::Customer);
    assert_eq!(b.iter().filter(|e| !e.active()).count(), 37);
    assert_ne!(a.iter().filter(|e| !e.active()).count(), 37);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.id, x.version, x.create, x.updated),
            (y.id, y.version, y.create, y.updated)
        );
    }
    // Every other kind is untouched.
    for kind in [Kind::Vendor, Kind::Item, Kind::Account] {
        let (x, y) = (random.build(kind), exact.build(kind));
        assert!(x.iter().zip(&y).all(|(p, q)| p.flags == q.flags));
    }
    // None and all.
    for n in [0, 300] {
        let g = Generator::new(GenConfig {
            inactive_customers: Some(n),
            ..random.config().clone()
        });
        let inactive = g
            .build(Kind::Customer)
            .iter()
            .filter(|e| !e.active())
            .count();
        assert_eq!(inactive, n);
    }
}
