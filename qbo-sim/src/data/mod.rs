//! Deterministic data: a compact in-memory index per entity and JSON rendered on demand.
//!
//! Every record is a function of `(seed, entity, id)` plus its index [`Entry`] (timestamps,
//! version, flags). The index is all that is kept in memory (32 bytes a record), so a
//! million invoices generate in well under a second and occupy ~32 MB; a record's JSON is
//! rendered when served, always to the same bytes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration, OffsetDateTime};

use crate::schema::{Field, Kind};
use crate::tz;

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
#[derive(Debug, Clone)]
pub(crate) struct GenConfig {
    pub(crate) seed: u64,
    pub(crate) customers: usize,
    pub(crate) items: usize,
    pub(crate) invoices: usize,
    pub(crate) vendors: usize,
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
    }
}

/// Generates the index and renders records.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    cfg: GenConfig,
}

// ---------- word pools (unicode, quotes, backslashes on purpose) ----------

const GIVEN: &[&str] = &[
    "Amy",
    "Bill",
    "Diego",
    "Emily",
    "Geeta",
    "Jeff",
    "John",
    "Kate",
    "Mark",
    "Shara",
    "Travis",
    "Zoë",
    "José",
    "Øyvind",
    "Siobhán",
    "Björn",
    "François",
    "Anaïs",
    "Łukasz",
    "Renée",
    "Mónica",
    "Nguyễn",
    "Yūki",
    "Ngozi",
    "Ahmed",
    "美玲",
    "Олег",
    "D'Arcy",
    "Sam",
    "Priya",
];
const FAMILY: &[&str] = &[
    "Lauterbach",
    "Barnett",
    "Rodriguez",
    "Lee",
    "Kumar",
    "Chin",
    "Melton",
    "Smith",
    "O'Brien",
    "D'Angelo",
    "Müller",
    "García",
    "Søndergaard",
    "Núñez",
    "Ångström",
    "van der Berg",
    "Nakamura",
    "王",
    "Иванов",
    "Okafor",
    "Dubois",
    "Kowalski",
    "Pérez-Ortiz",
    "MacLeod",
];
const COMPANY_A: &[&str] = &[
    "Amy's",
    "Bill's",
    "Cool",
    "Dukes",
    "Freeman",
    "Geeta's",
    "Red Rock",
    "Sonnenschein",
    "Sushi by",
    "Travis",
    "Zoë's",
    "北京",
    "Café",
    "Ñandú",
    "Blue \"Sky\"",
    "Back\\Slash",
    "Über",
    "Kookies by",
    "Mark's",
    "Pye's",
];
const COMPANY_B: &[&str] = &[
    "Bird Sanctuary",
    "Windsurf Shop",
    "Car Rental",
    "Basketball Club",
    "Sporting Goods",
    "Design",
    "Pest Control",
    "Plumbing",
    "Pizza 🍕",
    "Family Store",
    "Landscaping",
    "Garden Supplies",
    "贸易有限公司",
    "Bäckerei",
    "& Sons",
    "Consulting, Inc.",
    "Traders Ltd.",
    "Café \"Le Bon\"",
    "Tools \\ Hardware",
    "Bakery",
];
const CITIES: &[(&str, &str, &str, &str, &str)] = &[
    ("Bayshore", "CA", "94326", "37.7", "-122.4"),
    ("Half Moon Bay", "CA", "94213", "37.46", "-122.43"),
    ("Middlefield", "CA", "94303", "37.45", "-122.11"),
    ("Sunnyvale", "CA", "94086", "37.37", "-122.04"),
    ("Tucson", "AZ", "85719", "32.24", "-110.95"),
    ("Seattle", "WA", "98101", "47.61", "-122.33"),
    ("Portland", "OR", "97201", "45.51", "-122.68"),
    ("San José", "CA", "95112", "37.34", "-121.89"),
    ("Española", "NM", "87532", "35.99", "-106.08"),
];
const STREETS: &[&str] = &[
    "Finch St.",
    "Duck St.",
    "Blackhawk Road",
    "Main St",
    "Lake Ave",
    "Calle Peñasco",
    "Rue de l'Église",
    "Ocean Blvd",
    "Maple \"Old\" Rd",
    "Elm Court",
];
const NOTES: &[&str] = &[
    "Prefers email.",
    "Call before delivery.\nGate code: 4421",
    "Files at C:\\Shared\\Invoices\\2023",
    "Says \"thanks\" a lot",
    "Línea 1\nLínea 2\r\n\tindented",
    "Emoji ok 👍 — em dash, “curly quotes”",
    "Control char \u{1} kept",
    "",
];
const PRODUCTS: &[&str] = &[
    "Rock Fountain",
    "Concrete",
    "Design",
    "Gardening",
    "Hours",
    "Installation",
    "Lighting",
    "Maintenance & Repair",
    "Pest Control",
    "Pump",
    "Rocks",
    "Sod",
    "Soil",
    "Sprinkler Heads",
    "Sprinkler Pipes",
    "Trimming",
    "Café Crème",
    "Widget \"Pro\"",
    "Bolt 1/4\\\"",
    "Ñoquis",
    "配件",
    "Schraube M8",
    "Zoë's Special",
    "Tile 30×30",
];
const MEMOS: &[&str] = &[
    "Thank you for your business and have a great day!",
    "Merci — à bientôt",
    "Payment due in 30 days.\nLate fee 1.5%/month.",
    "Ref: \"PO-7781\"; path \\\\srv\\po",
    "谢谢惠顾",
    "Thanks! 🙏",
];

fn pick<'a, R: Rng>(r: &mut R, pool: &[&'a str]) -> &'a str {
    pool[r.random_range(0..pool.len())]
}

/// A customer or vendor, as far as names and contact details go.
struct Party {
    given: &'static str,
    family: &'static str,
    company: Option<String>,
    /// Display name before any " (deleted)" suffix.
    display: String,
    parent: Option<(u32, String)>,
    email: String,
    phone: String,
    bill: Addr,
    ship: Addr,
    balance_cents: i64,
    taxable: bool,
    notes: &'static str,
    delivery: &'static str,
}

struct Addr {
    line1: String,
    city: &'static (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ),
}

/// An item, as far as invoices and queries need it.
struct ItemDesc {
    name: String,
    parent: Option<(u32, String)>,
    ty: &'static str,
    description: String,
    unit_price_milli: i64,
    purchase_cost_milli: i64,
    taxable: bool,
    qty_on_hand: i64,
}

impl ItemDesc {
    fn fqn(&self) -> String {
        match &self.parent {
            Some((_, p)) => format!("{p}:{}", self.name),
            None => self.name.clone(),
        }
    }
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
            Kind::Customer => r.random_bool(0.92),
            Kind::Item | Kind::Vendor => r.random_bool(0.90),
            _ => true,
        };
        let txn_day = if kind == Kind::Invoice {
            let local = tz::to_pacific(secs_to_time(create)).date();
            let back = if r.random_bool(0.25) {
                r.random_range(1..=5)
            } else {
                0
            };
            (local - Duration::days(back)).to_julian_day()
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
        let txn_day = if kind == Kind::Invoice {
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

    // ---------- descriptors ----------

    fn party(&self, kind: Kind, id: u32) -> Party {
        let mut r = self.rng(kind, id, STREAM_CONTENT);
        let parent = match (kind, self.generated(kind, id)) {
            (Kind::Customer, Some(k)) if k >= 5 && r.random_bool(0.15) => {
                let pk = r.random_range(0..k);
                let mut pid = id_of(pk);
                if let Some(pp) = self.party_parent_id(kind, pid) {
                    pid = pp;
                }
                Some((pid, self.party_display(kind, pid)))
            }
            _ => None,
        };
        let (given, family, company, display) = self.party_names(&mut r, id);
        let city_i = r.random_range(0..CITIES.len());
        let num = r.random_range(1..9999);
        let bill = Addr {
            line1: format!("{num} {}", pick(&mut r, STREETS)),
            city: &CITIES[city_i],
        };
        let ship = if r.random_bool(0.7) {
            Addr {
                line1: bill.line1.clone(),
                city: bill.city,
            }
        } else {
            Addr {
                line1: format!("{} {}", r.random_range(1..9999), pick(&mut r, STREETS)),
                city: &CITIES[r.random_range(0..CITIES.len())],
            }
        };
        let email = format!(
            "{}.{}{}@example.com",
            ascii_slug(given),
            ascii_slug(family),
            id
        );
        let phone = format!(
            "({}) 555-{:04}",
            r.random_range(200..999),
            r.random_range(0..10000)
        );
        let balance_cents = if r.random_bool(0.4) {
            0
        } else {
            r.random_range(0..2_500_000)
        };
        let taxable = r.random_bool(0.7);
        let notes = pick(&mut r, NOTES);
        let delivery = if r.random_bool(0.5) { "Print" } else { "Email" };
        Party {
            given,
            family,
            company,
            display,
            parent,
            email,
            phone,
            bill,
            ship,
            balance_cents,
            taxable,
            notes,
            delivery,
        }
    }

    fn party_names(
        &self,
        r: &mut ChaCha8Rng,
        id: u32,
    ) -> (&'static str, &'static str, Option<String>, String) {
        let given = pick(r, GIVEN);
        let family = pick(r, FAMILY);
        let company = if r.random_bool(0.65) {
            Some(format!("{} {}", pick(r, COMPANY_A), pick(r, COMPANY_B)))
        } else {
            None
        };
        let display = match &company {
            Some(c) => format!("{c} {id}"),
            None => format!("{given} {family} {id}"),
        };
        (given, family, company, display)
    }

    /// The parent of a generated customer, drawing only what decides it.
    fn party_parent_id(&self, kind: Kind, id: u32) -> Option<u32> {
        let k = self.generated(kind, id)?;
        if kind != Kind::Customer || k < 5 {
            return None;
        }
        let mut r = self.rng(kind, id, STREAM_CONTENT);
        if !r.random_bool(0.15) {
            return None;
        }
        let pk = r.random_range(0..k);
        let pid = id_of(pk);
        Some(self.party_parent_id(kind, pid).unwrap_or(pid))
    }

    /// Display name of a root customer/vendor (no parent resolution needed).
    fn party_display(&self, kind: Kind, id: u32) -> String {
        let mut r = self.rng(kind, id, STREAM_CONTENT);
        if kind == Kind::Customer
            && self.generated(kind, id).is_some_and(|k| k >= 5)
            && r.random_bool(0.15)
        {
            let _ = r.random_range(0..self.generated(kind, id).unwrap_or(1).max(1));
        }
        self.party_names(&mut r, id).3
    }

    fn party_fqn(&self, p: &Party) -> String {
        match &p.parent {
            Some((_, pd)) => format!("{pd}:{}", p.display),
            None => p.display.clone(),
        }
    }

    fn item(&self, id: u32) -> ItemDesc {
        let mut r = self.rng(Kind::Item, id, STREAM_CONTENT);
        let roll = r.random_range(0..100);
        let ty = match roll {
            0..40 => "Service",
            40..65 => "NonInventory",
            65..90 => "Inventory",
            _ => "Category",
        };
        let parent = match self.generated(Kind::Item, id) {
            Some(k) if k >= 5 && r.random_bool(0.2) => {
                let pk = r.random_range(0..k);
                let pid = id_of(pk);
                let pid = self.item_parent_id(pid).unwrap_or(pid);
                let parent_ty = self.item_type(pid);
                // Categories nest only under categories.
                if ty == "Category" && parent_ty != "Category" {
                    None
                } else {
                    Some((pid, self.item_name(pid)))
                }
            }
            _ => None,
        };
        let name = self.item_name_from(&mut r, id);
        let note = pick(&mut r, NOTES);
        let description = if r.random_bool(0.15) {
            format!("{name} — {}", note.lines().next().unwrap_or(""))
        } else {
            name.clone()
        };
        let unit_price_milli = if r.random_bool(0.15) {
            r.random_range(1..2_000_000) // mills: prices like 12.345
        } else {
            r.random_range(1..500_000) * 10
        };
        let purchase_cost_milli = unit_price_milli * r.random_range(30..90) / 100;
        let taxable = r.random_bool(0.6);
        let qty_on_hand = r.random_range(0..500);
        ItemDesc {
            name,
            parent,
            ty,
            description,
            unit_price_milli,
            purchase_cost_milli,
            taxable,
            qty_on_hand,
        }
    }

    fn item_name_from(&self, r: &mut ChaCha8Rng, id: u32) -> String {
        format!("{} {id}", pick(r, PRODUCTS))
    }

    fn item_type(&self, id: u32) -> &'static str {
        let mut r = self.rng(Kind::Item, id, STREAM_CONTENT);
        match r.random_range(0..100) {
            0..40 => "Service",
            40..65 => "NonInventory",
            65..90 => "Inventory",
            _ => "Category",
        }
    }

    fn item_parent_id(&self, id: u32) -> Option<u32> {
        let k = self.generated(Kind::Item, id)?;
        if k < 5 {
            return None;
        }
        let mut r = self.rng(Kind::Item, id, STREAM_CONTENT);
        let ty = match r.random_range(0..100) {
            0..90 => "Item",
            _ => "Category",
        };
        if !r.random_bool(0.2) {
            return None;
        }
        let pk = r.random_range(0..k);
        let pid = id_of(pk);
        let pid = self.item_parent_id(pid).unwrap_or(pid);
        if ty == "Category" && self.item_type(pid) != "Category" {
            return None;
        }
        Some(pid)
    }

    fn item_name(&self, id: u32) -> String {
        let mut r = self.rng(Kind::Item, id, STREAM_CONTENT);
        let _ = r.random_range(0..100);
        if self.generated(Kind::Item, id).is_some_and(|k| k >= 5) && r.random_bool(0.2) {
            let _ = r.random_range(0..self.generated(Kind::Item, id).unwrap_or(1).max(1));
        }
        self.item_name_from(&mut r, id)
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
            Kind::Invoice => match field {
                Field::DocNumber => doc_number(e.id),
                _ => String::new(),
            },
            Kind::EmptyNameList | Kind::EmptyTxn => String::new(),
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

    /// A reference field's id (`CustomerRef`).
    pub(crate) fn reference(&self, kind: Kind, e: &Entry, _field: Field) -> u64 {
        if kind == Kind::Invoice {
            let mut r = self.rng(kind, e.id, STREAM_CONTENT);
            u64::from(self.invoice_customer(&mut r))
        } else {
            0
        }
    }

    /// A date field's value (`TxnDate`, `DueDate`).
    pub(crate) fn date(&self, kind: Kind, e: &Entry, field: Field) -> Date {
        match (kind, field) {
            (Kind::Invoice, Field::TxnDate) => e.txn_date(),
            (Kind::Invoice, Field::DueDate) => {
                let mut r = self.rng(kind, e.id, STREAM_CONTENT);
                let _ = self.invoice_customer(&mut r);
                let (_, _, days) = invoice_terms(&mut r);
                e.txn_date() + Duration::days(days)
            }
            _ => Date::MIN,
        }
    }

    fn invoice_customer(&self, r: &mut ChaCha8Rng) -> u32 {
        let n = self.cfg.customers.max(1);
        id_of(r.random_range(0..n))
    }

    // ---------- rendering ----------

    /// Appends a record's JSON.
    pub(crate) fn render(&self, kind: Kind, e: &Entry, out: &mut String) {
        match kind {
            Kind::Customer => self.render_customer(e, out),
            Kind::Vendor => self.render_vendor(e, out),
            Kind::Item => self.render_item(e, out),
            Kind::Invoice => self.render_invoice(e, out),
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

    fn render_customer(&self, e: &Entry, out: &mut String) {
        let p = self.party(Kind::Customer, e.id);
        let suffix = if e.active() { "" } else { " (deleted)" };
        out.push_str("{\"Taxable\":");
        boolean(out, p.taxable);
        out.push_str(",\"BillAddr\":");
        addr(out, &p.bill, e.id * 2);
        out.push_str(",\"ShipAddr\":");
        addr(out, &p.ship, e.id * 2 + 1);
        if !p.notes.is_empty() {
            out.push_str(",\"Notes\":");
            js(out, p.notes);
        }
        out.push_str(",\"Job\":");
        boolean(out, p.parent.is_some());
        out.push_str(",\"BillWithParent\":");
        boolean(out, p.parent.is_some());
        if let Some((pid, _)) = &p.parent {
            out.push_str(",\"ParentRef\":{\"value\":\"");
            push_u64(out, u64::from(*pid));
            out.push_str("\"},\"Level\":1");
        }
        out.push_str(",\"Balance\":");
        dec(out, p.balance_cents, 2);
        out.push_str(",\"BalanceWithJobs\":");
        dec(out, p.balance_cents, 2);
        out.push_str(",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"PreferredDeliveryMethod\":");
        js(out, p.delivery);
        out.push_str(",\"IsProject\":false,\"ClientEntityId\":\"0\",\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push_str(",\"GivenName\":");
        js(out, p.given);
        out.push_str(",\"FamilyName\":");
        js(out, p.family);
        out.push_str(",\"FullyQualifiedName\":");
        js(out, &format!("{}{suffix}", self.party_fqn(&p)));
        if let Some(c) = &p.company {
            out.push_str(",\"CompanyName\":");
            js(out, c);
        }
        out.push_str(",\"DisplayName\":");
        js(out, &format!("{}{suffix}", p.display));
        out.push_str(",\"PrintOnCheckName\":");
        js(
            out,
            &p.company
                .clone()
                .unwrap_or_else(|| format!("{} {}", p.given, p.family)),
        );
        out.push_str(",\"Active\":");
        boolean(out, e.active());
        out.push_str(",\"V4IDPseudonym\":\"");
        hex(out, splitmix(self.cfg.seed ^ u64::from(e.id)));
        hex(out, splitmix(u64::from(e.id)));
        out.push_str("\",\"PrimaryPhone\":{\"FreeFormNumber\":");
        js(out, &p.phone);
        out.push_str("},\"PrimaryEmailAddr\":{\"Address\":");
        js(out, &p.email);
        out.push_str("}}");
    }

    fn render_vendor(&self, e: &Entry, out: &mut String) {
        let p = self.party(Kind::Vendor, e.id);
        let suffix = if e.active() { "" } else { " (deleted)" };
        out.push_str("{\"PrimaryEmailAddr\":{\"Address\":");
        js(out, &p.email);
        out.push_str("},\"Vendor1099\":");
        boolean(out, p.taxable);
        out.push_str(",\"domain\":\"QBO\",\"DisplayName\":");
        js(out, &format!("{}{suffix}", p.display));
        out.push_str(
            ",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"GivenName\":",
        );
        js(out, p.given);
        out.push_str(",\"FamilyName\":");
        js(out, p.family);
        if let Some(c) = &p.company {
            out.push_str(",\"CompanyName\":");
            js(out, c);
        }
        out.push_str(",\"PrintOnCheckName\":");
        js(
            out,
            &p.company
                .clone()
                .unwrap_or_else(|| format!("{} {}", p.given, p.family)),
        );
        out.push_str(",\"AcctNum\":\"V-");
        push_u64(out, u64::from(e.id) * 7 + 1000);
        out.push_str("\",\"BillAddr\":");
        addr(out, &p.bill, e.id * 2);
        out.push_str(",\"Balance\":");
        dec(out, p.balance_cents, 2);
        out.push_str(",\"TermRef\":{\"value\":\"3\"},\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push_str(",\"Active\":");
        boolean(out, e.active());
        if !p.notes.is_empty() {
            out.push_str(",\"Notes\":");
            js(out, p.notes);
        }
        out.push_str(",\"PrimaryPhone\":{\"FreeFormNumber\":");
        js(out, &p.phone);
        out.push_str("}}");
    }

    fn render_item(&self, e: &Entry, out: &mut String) {
        let it = self.item(e.id);
        let suffix = if e.active() { "" } else { " (deleted)" };
        out.push_str("{\"Name\":");
        js(out, &format!("{}{suffix}", it.name));
        if it.ty != "Category" {
            out.push_str(",\"Description\":");
            js(out, &it.description);
        }
        out.push_str(",\"Active\":");
        boolean(out, e.active());
        out.push_str(",\"SubItem\":");
        boolean(out, it.parent.is_some());
        if let Some((pid, pname)) = &it.parent {
            out.push_str(",\"ParentRef\":{\"value\":\"");
            push_u64(out, u64::from(*pid));
            out.push_str("\",\"name\":");
            js(out, pname);
            out.push_str("},\"Level\":1");
        }
        out.push_str(",\"FullyQualifiedName\":");
        js(out, &format!("{}{suffix}", it.fqn()));
        if it.ty != "Category" {
            out.push_str(",\"Taxable\":");
            boolean(out, it.taxable);
            out.push_str(",\"UnitPrice\":");
            dec(out, it.unit_price_milli, 3);
        }
        out.push_str(",\"Type\":");
        js(out, it.ty);
        match it.ty {
            "Service" | "NonInventory" => {
                out.push_str(",\"IncomeAccountRef\":{\"value\":\"1\",\"name\":\"Services\"},\"PurchaseCost\":");
                dec(out, it.purchase_cost_milli, 3);
                out.push_str(",\"TrackQtyOnHand\":false");
            }
            "Inventory" => {
                out.push_str(",\"IncomeAccountRef\":{\"value\":\"79\",\"name\":\"Sales of Product Income\"},\"PurchaseDesc\":");
                js(out, &format!("{} (purchase)", it.name));
                out.push_str(",\"PurchaseCost\":");
                dec(out, it.purchase_cost_milli, 3);
                out.push_str(",\"ExpenseAccountRef\":{\"value\":\"80\",\"name\":\"Cost of Goods Sold\"},\"AssetAccountRef\":{\"value\":\"81\",\"name\":\"Inventory Asset\"},\"TrackQtyOnHand\":true,\"QtyOnHand\":");
                push_u64(out, it.qty_on_hand.unsigned_abs());
                out.push_str(",\"InvStartDate\":\"");
                tz::write_date(out, tz::to_pacific(e.create_time()).date());
                out.push('"');
            }
            _ => {}
        }
        out.push_str(",\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push('}');
    }

    fn render_invoice(&self, e: &Entry, out: &mut String) {
        let mut r = self.rng(Kind::Invoice, e.id, STREAM_CONTENT);
        let customer_id = self.invoice_customer(&mut r);
        let (term_id, term_name, term_days) = invoice_terms(&mut r);
        let line_count: u32 = match r.random_range(0..1000) {
            0..700 => r.random_range(1..=5),
            700..950 => r.random_range(6..=20),
            950..995 => r.random_range(21..=100),
            _ => r.random_range(101..=400),
        };
        let tax_pct_milli: i64 = match r.random_range(0..4) {
            0 => 0,
            1 => 8_000,
            2 => 8_250,
            _ => 9_500,
        };
        let cust = if self.cfg.customers > 0 {
            Some(self.party(Kind::Customer, customer_id))
        } else {
            None
        };
        let cust_name = cust
            .as_ref()
            .map_or_else(|| "Walk-in customer".to_string(), |c| c.display.clone());

        out.push_str("{\"AllowIPNPayment\":false,\"AllowOnlinePayment\":false,\"AllowOnlineCreditCardPayment\":");
        boolean(out, r.random_bool(0.5));
        out.push_str(",\"AllowOnlineACHPayment\":");
        boolean(out, r.random_bool(0.5));
        out.push_str(",\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push_str(",\"CustomField\":[");
        if r.random_bool(0.5) {
            out.push_str("{\"DefinitionId\":\"1\",\"Name\":\"Crew #\",\"Type\":\"StringType\",\"StringValue\":\"");
            push_u64(out, r.random_range(100..200));
            out.push_str("\"}");
        }
        out.push_str("],\"DocNumber\":");
        js(out, &doc_number(e.id));
        out.push_str(",\"TxnDate\":\"");
        tz::write_date(out, e.txn_date());
        out.push_str("\",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"ExchangeRate\":1,\"LinkedTxn\":[");
        let paid_roll = r.random_range(0..100);
        if paid_roll < 40 {
            out.push_str("{\"TxnId\":\"");
            push_u64(out, u64::from(e.id) * 3 + 7);
            out.push_str("\",\"TxnType\":\"Payment\"}");
        }
        out.push_str("],\"Line\":[");
        let mut subtotal: i64 = 0;
        let mut taxable_total: i64 = 0;
        let n_items = self.cfg.items;
        for i in 1..=line_count {
            let (item_id, item) = if n_items > 0 {
                let mut id = id_of(r.random_range(0..n_items));
                let mut it = self.item(id);
                let mut tries = 0;
                while it.ty == "Category" && tries < 4 {
                    id = id_of(r.random_range(0..n_items));
                    it = self.item(id);
                    tries += 1;
                }
                (id, Some(it))
            } else {
                (1, None)
            };
            let qty_centi: i64 = if r.random_bool(0.2) {
                r.random_range(1..2000) * 50
            } else {
                r.random_range(1..=20) * 100
            };
            let price_milli = item.as_ref().map_or_else(
                || r.random_range(100..100_000) * 10,
                |it| it.unit_price_milli,
            );
            let amount_cents = (qty_centi * price_milli + 500) / 1000;
            let taxable = item.as_ref().is_some_and(|it| it.taxable) && tax_pct_milli > 0;
            subtotal += amount_cents;
            if taxable {
                taxable_total += amount_cents;
            }
            out.push_str("{\"Id\":\"");
            push_u64(out, u64::from(i));
            out.push_str("\",\"LineNum\":");
            push_u64(out, u64::from(i));
            out.push_str(",\"Description\":");
            match &item {
                Some(it) => js(out, &it.description),
                None => js(out, "Services rendered"),
            }
            out.push_str(",\"Amount\":");
            dec(out, amount_cents, 2);
            out.push_str(",\"DetailType\":\"SalesItemLineDetail\",\"SalesItemLineDetail\":{\"ItemRef\":{\"value\":\"");
            push_u64(out, u64::from(item_id));
            out.push_str("\",\"name\":");
            match &item {
                Some(it) => js(out, &it.fqn()),
                None => js(out, "Services"),
            }
            out.push_str("},\"UnitPrice\":");
            dec(out, price_milli, 3);
            out.push_str(",\"Qty\":");
            dec(out, qty_centi, 2);
            out.push_str(",\"TaxCodeRef\":{\"value\":\"");
            out.push_str(if taxable { "TAX" } else { "NON" });
            out.push_str("\"}}},");
        }
        out.push_str("{\"Amount\":");
        dec(out, subtotal, 2);
        out.push_str(",\"DetailType\":\"SubTotalLineDetail\",\"SubTotalLineDetail\":{}}]");
        // tax = taxable_total * pct / 100, pct in milli-percent; round half up to cents.
        let tax = (taxable_total * tax_pct_milli + 50_000) / 100_000;
        out.push_str(",\"TxnTaxDetail\":{");
        if tax_pct_milli > 0 {
            out.push_str("\"TxnTaxCodeRef\":{\"value\":\"2\"},\"TotalTax\":");
            dec(out, tax, 2);
            out.push_str(",\"TaxLine\":[{\"Amount\":");
            dec(out, tax, 2);
            out.push_str(",\"DetailType\":\"TaxLineDetail\",\"TaxLineDetail\":{\"TaxRateRef\":{\"value\":\"3\"},\"PercentBased\":true,\"TaxPercent\":");
            dec(out, tax_pct_milli, 3);
            out.push_str(",\"NetAmountTaxable\":");
            dec(out, taxable_total, 2);
            out.push_str("}}]");
        } else {
            out.push_str("\"TotalTax\":0");
        }
        out.push_str("},\"CustomerRef\":{\"value\":\"");
        push_u64(out, u64::from(customer_id));
        out.push_str("\",\"name\":");
        js(out, &cust_name);
        out.push_str("},\"CustomerMemo\":{\"value\":");
        js(out, pick(&mut r, MEMOS));
        out.push('}');
        if let Some(c) = &cust {
            out.push_str(",\"BillAddr\":");
            addr(out, &c.bill, customer_id * 2);
            out.push_str(",\"ShipAddr\":");
            addr(out, &c.ship, customer_id * 2 + 1);
        }
        out.push_str(",\"FreeFormAddress\":true,\"ShipFromAddr\":{\"Id\":\"");
        push_u64(out, u64::from(e.id) + 100_000);
        out.push_str("\",\"Line1\":\"123 Sierra Way\",\"Line2\":\"San Pablo, CA  87999 US\"},\"SalesTermRef\":{\"value\":\"");
        out.push_str(term_id);
        out.push_str("\",\"name\":");
        js(out, term_name);
        out.push_str("},\"DueDate\":\"");
        tz::write_date(out, e.txn_date() + Duration::days(term_days));
        let total = subtotal + tax;
        out.push_str("\",\"TotalAmt\":");
        dec(out, total, 2);
        out.push_str(",\"ApplyTaxAfterDiscount\":false,\"PrintStatus\":\"");
        out.push_str(if r.random_bool(0.3) {
            "NeedToPrint"
        } else {
            "NotSet"
        });
        out.push_str("\",\"EmailStatus\":\"");
        out.push_str(if r.random_bool(0.5) {
            "EmailSent"
        } else {
            "NotSet"
        });
        out.push('"');
        if let Some(c) = &cust {
            out.push_str(",\"BillEmail\":{\"Address\":");
            js(out, &c.email);
            out.push('}');
        }
        let balance = match paid_roll {
            0..40 => 0,
            40..55 => total / 2,
            _ => total,
        };
        out.push_str(",\"Balance\":");
        dec(out, balance, 2);
        out.push_str(",\"Deposit\":0}");
    }
}

fn invoice_terms(r: &mut ChaCha8Rng) -> (&'static str, &'static str, i64) {
    match r.random_range(0..4) {
        0 => ("1", "Due on receipt", 0),
        1 => ("2", "Net 15", 15),
        _ => ("3", "Net 30", 30),
    }
}

fn doc_number(id: u32) -> String {
    (1000 + u64::from(id)).to_string()
}

fn ascii_slug(s: &str) -> String {
    let slug: String = s
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    if slug.is_empty() {
        "x".to_string()
    } else {
        slug
    }
}

// ---------- JSON writing helpers ----------

fn meta(out: &mut String, e: &Entry) {
    out.push_str(",\"MetaData\":{\"CreateTime\":\"");
    tz::write_pacific_secs(out, e.create_time());
    out.push_str("\",\"LastUpdatedTime\":\"");
    tz::write_pacific_secs(out, e.updated_time());
    out.push_str("\"}");
}

fn addr(out: &mut String, a: &Addr, id: u32) {
    out.push_str("{\"Id\":\"");
    push_u64(out, u64::from(id));
    out.push_str("\",\"Line1\":");
    js(out, &a.line1);
    out.push_str(",\"City\":");
    js(out, a.city.0);
    out.push_str(",\"CountrySubDivisionCode\":\"");
    out.push_str(a.city.1);
    out.push_str("\",\"PostalCode\":\"");
    out.push_str(a.city.2);
    out.push_str("\",\"Lat\":\"");
    out.push_str(a.city.3);
    out.push_str("\",\"Long\":\"");
    out.push_str(a.city.4);
    out.push_str("\"}");
}

fn boolean(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

pub(crate) fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(char::from(*b));
    }
}

fn hex(out: &mut String, v: u64) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(H[((v >> (shift * 4)) & 0xF) as usize]));
    }
}

/// A decimal number `v / 10^scale`, trailing zeros trimmed: exact text, never via f64.
pub(crate) fn dec(out: &mut String, v: i64, scale: u32) {
    if v < 0 {
        out.push('-');
    }
    let a = v.unsigned_abs();
    let p = 10u64.pow(scale);
    push_u64(out, a / p);
    let mut frac = a % p;
    let mut digits = scale;
    while digits > 0 && frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    if digits > 0 {
        out.push('.');
        let s = frac.to_string();
        for _ in s.len()..digits as usize {
            out.push('0');
        }
        out.push_str(&s);
    }
}

/// A JSON string literal.
pub(crate) fn js(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xF)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    fn gen_small() -> Generator {
        Generator::new(GenConfig {
            seed: 7,
            customers: 300,
            items: 200,
            invoices: 2000,
            vendors: 50,
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
    fn decimals_are_exact_text() {
        let mut s = String::new();
        dec(&mut s, 36207, 2);
        s.push(' ');
        dec(&mut s, 27500, 2);
        s.push(' ');
        dec(&mut s, 12345, 3);
        s.push(' ');
        dec(&mut s, 5, 2);
        s.push(' ');
        dec(&mut s, -250, 2);
        s.push(' ');
        dec(&mut s, 0, 2);
        assert_eq!(s, "362.07 275 12.345 0.05 -2.5 0");
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        js(&mut s, "a\"b\\c\nd\u{1}é🍕");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é🍕""#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é🍕");
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
