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
    /// Exactly this many customers inactive, spread evenly over the ids; `None`: each
    /// customer is inactive with probability 0.08.
    pub(crate) inactive_customers: Option<usize>,
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
        // The draw above is made either way, so the rest of the record does not change.
        let active = match (kind, self.cfg.inactive_customers) {
            (Kind::Customer, Some(n)) if self.cfg.customers > 0 => {
                let (c, n, k) = (self.cfg.customers as u128, n as u128, k as u128);
                (k + 1) * n / c == k * n / c
            }
            _ => active,
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
#[allow(clippy::unwrap_used)]
mod tests;
