//! Deterministic data: a compact in-memory index per entity and JSON rendered on demand.
//!
//! Every record is a function of `(seed, entity, id)` plus its index [`Entry`] (timestamps,
//! version, flags). The index is all that is kept in memory (32 bytes a record), so a
//! million invoices generate in well under a second and occupy ~32 MB; a record's JSON is
//! rendered when served, always to the same bytes.
//!
//! One file per entity family, all behind the same seed: `company` (CompanyInfo), `names`
//! (Customer, Vendor, Employee), `items`, `accounts` (the chart of accounts), `transactions` (Invoice and the
//! line, tax and customer blocks of sales forms), `sales` (Estimate, SalesReceipt),
//! `payments`, `purchases` (Bill), `journal` (JournalEntry); `words` holds the word pools and
//! `json` the exact-text writers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration, OffsetDateTime};

use crate::schema::{Field, Kind};
use crate::tz;

mod accounts;
mod company;
mod items;
mod journal;
mod json;
mod names;
mod payments;
mod purchases;
mod sales;
mod transactions;
mod words;

use json::meta;
pub(crate) use json::{js, push_u64};
use transactions::{doc_number, invoice_terms};

/// Flag: the record is active (name lists).
pub(crate) const ACTIVE: u8 = 1;
/// Flag: the record was hard-deleted (transactions): gone from queries, listed by CDC.
pub(crate) const DELETED: u8 = 2;

const DAY: i64 = 86_400;

/// The in-memory part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: u32,
    /// `SyncToken`.
    pub(crate) version: u32,
    /// `MetaData.CreateTime`, Unix seconds.
    pub(crate) create: i64,
    /// `MetaData.LastUpdatedTime`, Unix seconds.
    pub(crate) updated: i64,
    /// `TxnDate` as a Julian day (transactions only).
    pub(crate) txn_day: i32,
    pub(crate) flags: u8,
}

impl Entry {
    pub(crate) fn active(&self) -> bool {
        self.flags & ACTIVE != 0
    }

    pub(crate) fn deleted(&self) -> bool {
        self.flags & DELETED != 0
    }

    pub(crate) fn create_time(&self) -> OffsetDateTime {
        secs_to_time(self.create)
    }

    pub(crate) fn updated_time(&self) -> OffsetDateTime {
        secs_to_time(self.updated)
    }

    pub(crate) fn txn_date(&self) -> Date {
        Date::from_julian_day(self.txn_day).unwrap_or(Date::MIN)
    }
}

pub(crate) fn secs_to_time(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What to generate.
#[derive(Debug, Clone, Default)]
pub(crate) struct GenConfig {
    pub(crate) seed: u64,
    pub(crate) customers: usize,
    pub(crate) items: usize,
    pub(crate) invoices: usize,
    pub(crate) vendors: usize,
    pub(crate) payments: usize,
    pub(crate) bills: usize,
    pub(crate) journal_entries: usize,
    pub(crate) estimates: usize,
    pub(crate) sales_receipts: usize,
    pub(crate) accounts: usize,
    pub(crate) employees: usize,
    /// Span of `MetaData.CreateTime`, Unix seconds, `[start, end)`.
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// Generated ids leave a gap after every ninth id, like a real company where some
/// records were deleted: 1..=9, 11..=19, 21...
pub(crate) fn id_of(k: usize) -> u32 {
    u32::try_from(k + 1 + k / 9).unwrap_or(u32::MAX)
}

/// Inverse of [`id_of`], for ids in the generated pattern.
fn index_of(id: u32) -> Option<usize> {
    let m = usize::try_from(id).ok()?.checked_sub(1)?;
    if m % 10 == 9 {
        return None;
    }
    Some(m - m / 10)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const STREAM_INDEX: u64 = 1;
const STREAM_CONTENT: u64 = 2;

fn kind_tag(kind: Kind) -> u64 {
    match kind {
        Kind::Customer => 11,
        Kind::Vendor => 12,
        Kind::Item => 13,
        Kind::Invoice => 14,
        Kind::EmptyNameList => 15,
        Kind::EmptyTxn => 16,
        Kind::Payment => 17,
        Kind::Bill => 18,
        Kind::JournalEntry => 19,
        Kind::Estimate => 20,
        Kind::SalesReceipt => 21,
        Kind::Account => 22,
        Kind::Employee => 23,
        Kind::CompanyInfo => 24,
    }
}

/// Generates the index and renders records.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    cfg: GenConfig,
}

impl Generator {
    pub(crate) fn new(cfg: GenConfig) -> Self {
        Generator { cfg }
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &GenConfig {
        &self.cfg
    }

    fn rng(&self, kind: Kind, id: u32, stream: u64) -> ChaCha8Rng {
        let k =
            splitmix(self.cfg.seed ^ splitmix(kind_tag(kind) << 40 ^ u64::from(id) << 4 ^ stream));
        ChaCha8Rng::seed_from_u64(k)
    }

    /// How many records of a kind are generated.
    pub(crate) fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Customer => self.cfg.customers,
            Kind::Vendor => self.cfg.vendors,
            Kind::Item => self.cfg.items,
            Kind::Invoice => self.cfg.invoices,
            Kind::Payment => self.cfg.payments,
            Kind::Bill => self.cfg.bills,
            Kind::JournalEntry => self.cfg.journal_entries,
            Kind::Estimate => self.cfg.estimates,
            Kind::SalesReceipt => self.cfg.sales_receipts,
            Kind::Account => self.cfg.accounts,
            Kind::Employee => self.cfg.employees,
            Kind::CompanyInfo => 1,
            Kind::EmptyNameList | Kind::EmptyTxn => 0,
        }
    }

    fn generated(&self, kind: Kind, id: u32) -> Option<usize> {
        index_of(id).filter(|k| *k < self.count(kind))
    }

    /// The sorted index (by create time, then id) of a kind.
    pub(crate) fn build(&self, kind: Kind) -> Vec<Entry> {
        let n = self.count(kind);
        let mut v: Vec<Entry> = (0..n).map(|k| self.index_entry(kind, k)).collect();
        v.sort_unstable_by_key(|e| (e.create, e.id));
        v
    }

    fn index_entry(&self, kind: Kind, k: usize) -> Entry {
        let id = id_of(k);
        let mut r = self.rng(kind, id, STREAM_INDEX);
        let (start, end) = (self.cfg.start, self.cfg.end.max(self.cfg.start + 1));
        let uniform = start + r.random_range(0..(end - start));
        // Records exactly on, and one second before, a UTC midnight inside the span.
        let first_midnight =
            start.div_euclid(DAY) * DAY + if start.rem_euclid(DAY) == 0 { 0 } else { DAY };
        let create = match k % 50 {
            0 | 1 => {
                let lowest = if k % 50 == 1 && first_midnight == start {
                    first_midnight + DAY
                } else {
                    first_midnight
                };
                let count = if lowest < end {
                    (end - 1 - lowest) / DAY + 1
                } else {
                    0
                };
                if count > 0 {
                    let m = lowest + DAY * r.random_range(0..count);
                    if k.is_multiple_of(50) { m } else { m - 1 }
                } else {
                    uniform
                }
            }
            _ => uniform,
        };
        let updated = if r.random_bool(0.45) {
            let max_gap = (end - create).clamp(1, 90 * DAY);
            create + r.random_range(1..=max_gap)
        } else {
            create
        };
        let version = if updated > create {
            r.random_range(1..=6)
        } else {
            0
        };
        let active = match kind {
            Kind::Customer | Kind::Account => r.random_bool(0.92),
            Kind::Item | Kind::Vendor | Kind::Employee => r.random_bool(0.90),
            _ => true,
        };
        let txn_day = if kind.is_transaction() {
            let local = tz::to_pacific(secs_to_time(create)).date();
            let back = if r.random_bool(0.25) {
                r.random_range(1..=5)
            } else {
                0
            };
            let mut day = local - Duration::days(back);
            // Post-dated business dates: reversing journal entries dated the first of the
            // next month, and a few bills dated ahead of their entry.
            if kind == Kind::JournalEntry && r.random_bool(0.08) {
                let (y, m) = (local.year(), local.month());
                let (y, m) = if m == time::Month::December {
                    (y + 1, time::Month::January)
                } else {
                    (y, m.next())
                };
                day = Date::from_calendar_date(y, m, 1).unwrap_or(local);
            } else if kind == Kind::Bill && r.random_bool(0.05) {
                day = local + Duration::days(r.random_range(1..=20));
            }
            day.to_julian_day()
        } else {
            0
        };
        Entry {
            id,
            version,
            create,
            updated,
            txn_day,
            flags: if active { ACTIVE } else { 0 },
        }
    }

    /// A new record's index entry (for mutations).
    pub(crate) fn new_entry(&self, kind: Kind, id: u32, create: i64, updated: i64) -> Entry {
        let txn_day = if kind.is_transaction() {
            tz::to_pacific(secs_to_time(create)).date().to_julian_day()
        } else {
            0
        };
        Entry {
            id,
            version: 0,
            create,
            updated: updated.max(create),
            txn_day,
            flags: ACTIVE,
        }
    }

    // ---------- field values for filters and sorting ----------

    /// A text field's value, as served.
    pub(crate) fn text(&self, kind: Kind, e: &Entry, field: Field) -> String {
        let deleted = |s: String| {
            if e.active() {
                s
            } else {
                format!("{s} (deleted)")
            }
        };
        match kind {
            Kind::Customer | Kind::Vendor => {
                let p = self.party(kind, e.id);
                match field {
                    Field::DisplayName => deleted(p.display.clone()),
                    Field::FullyQualifiedName => deleted(self.party_fqn(&p)),
                    Field::PrintOnCheckName => p
                        .company
                        .clone()
                        .unwrap_or_else(|| format!("{} {}", p.given, p.family)),
                    Field::GivenName => p.given.to_string(),
                    Field::FamilyName => p.family.to_string(),
                    Field::CompanyName => p.company.unwrap_or_default(),
                    _ => String::new(),
                }
            }
            Kind::Item => {
                let it = self.item(e.id);
                match field {
                    Field::Name => deleted(it.name.clone()),
                    Field::FullyQualifiedName => deleted(it.fqn()),
                    Field::Type => it.ty.to_string(),
                    _ => String::new(),
                }
            }
            Kind::Invoice | Kind::SalesReceipt => match field {
                Field::DocNumber => doc_number(e.id),
                _ => String::new(),
            },
            Kind::Estimate => match field {
                Field::DocNumber => doc_number(e.id),
                Field::TxnStatus => self.estimate_head_of(e.id).status.to_string(),
                _ => String::new(),
            },
            Kind::Bill => match field {
                Field::DocNumber => self.bill_head_of(e.id).doc_number.unwrap_or_default(),
                _ => String::new(),
            },
            Kind::JournalEntry => match field {
                Field::DocNumber => {
                    let mut r = self.rng(kind, e.id, STREAM_CONTENT);
                    self.journal_doc_number(&mut r, e.id).unwrap_or_default()
                }
                _ => String::new(),
            },
            Kind::Account => self.account_text(e, field),
            Kind::Employee => {
                let p = self.employee(e.id);
                match field {
                    Field::DisplayName => deleted(p.display.clone()),
                    Field::GivenName => p.given.to_string(),
                    Field::FamilyName => p.family.to_string(),
                    Field::PrintOnCheckName => format!("{} {}", p.given, p.family),
                    _ => String::new(),
                }
            }
            Kind::Payment | Kind::CompanyInfo | Kind::EmptyNameList | Kind::EmptyTxn => {
                String::new()
            }
        }
    }

    /// A boolean field's value.
    pub(crate) fn boolean(&self, kind: Kind, e: &Entry, field: Field) -> bool {
        match field {
            Field::Active => e.active(),
            Field::Job => kind == Kind::Customer && self.party_parent_id(kind, e.id).is_some(),
            Field::SubItem => kind == Kind::Item && self.item(e.id).parent.is_some(),
            _ => false,
        }
    }

    /// A reference field's id (`CustomerRef`, `VendorRef`); 0 when the record has none.
    pub(crate) fn reference(&self, kind: Kind, e: &Entry, field: Field) -> u64 {
        let id = match (kind, field) {
            (Kind::Invoice | Kind::Estimate, Field::CustomerRef) => {
                let mut r = self.rng(kind, e.id, STREAM_CONTENT);
                self.invoice_customer(&mut r)
            }
            (Kind::Payment, Field::CustomerRef) => self.payment_customer(e),
            (Kind::SalesReceipt, Field::CustomerRef) => self.receipt_customer(e.id).unwrap_or(0),
            (Kind::Bill, Field::VendorRef) => self.bill_head_of(e.id).vendor_id,
            _ => 0,
        };
        u64::from(id)
    }

    /// A date field's value (`TxnDate`, `DueDate`).
    pub(crate) fn date(&self, kind: Kind, e: &Entry, field: Field) -> Date {
        match (kind, field) {
            (_, Field::TxnDate) if kind.is_transaction() => e.txn_date(),
            (Kind::Bill, Field::DueDate) => {
                e.txn_date() + Duration::days(self.bill_head_of(e.id).term.2)
            }
            (Kind::Invoice, Field::DueDate) => {
                let mut r = self.rng(kind, e.id, STREAM_CONTENT);
                let _ = self.invoice_customer(&mut r);
                let (_, _, days) = invoice_terms(&mut r);
                e.txn_date() + Duration::days(days)
            }
            _ => Date::MIN,
        }
    }

    // ---------- rendering ----------

    /// Appends a record's JSON.
    pub(crate) fn render(&self, kind: Kind, e: &Entry, out: &mut String) {
        match kind {
            Kind::Customer => self.render_customer(e, out),
            Kind::Vendor => self.render_vendor(e, out),
            Kind::Item => self.render_item(e, out),
            Kind::Invoice => self.render_invoice(e, out),
            Kind::Payment => self.render_payment(e, out),
            Kind::Bill => self.render_bill(e, out),
            Kind::JournalEntry => self.render_journal_entry(e, out),
            Kind::Estimate => self.render_estimate(e, out),
            Kind::SalesReceipt => self.render_sales_receipt(e, out),
            Kind::Account => self.render_account(e, out),
            Kind::Employee => self.render_employee(e, out),
            Kind::CompanyInfo => self.render_company_info(e, out),
            Kind::EmptyNameList | Kind::EmptyTxn => {
                out.push_str("{\"domain\":\"QBO\",\"sparse\":false,\"Id\":");
                js(out, &e.id.to_string());
                meta(out, e);
                out.push('}');
            }
        }
    }

    /// A record's JSON as a new string.
    pub(crate) fn render_string(&self, kind: Kind, e: &Entry) -> String {
        let mut s = String::with_capacity(2048);
        self.render(kind, e, &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::schema::FieldType;
    use time::macros::datetime;

    fn gen_small() -> Generator {
        Generator::new(GenConfig {
            seed: 7,
            customers: 300,
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
            let v: serde_json::Value =
                serde_json::from_str(&g.render_string(Kind::Item, &e)).unwrap();
            if let Some(p) = v.get("ParentRef") {
                let pid: u32 = p["value"].as_str().unwrap().parse().unwrap();
                assert_eq!(p["name"].as_str().unwrap(), g.item_name(pid));
                assert_eq!(g.item_parent_id(e.id), Some(pid));
            } else {
                assert_eq!(g.item_parent_id(e.id), None);
            }
        }
    }
}
