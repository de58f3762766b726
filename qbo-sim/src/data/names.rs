//! Name lists of people and companies: customers, vendors and employees.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::json::{addr, boolean, hex, js, meta, money, push_u64};
use super::words::{CITIES, COMPANY_A, COMPANY_B, FAMILY, GIVEN, NOTES, STREETS, pick};
use super::{Entry, Generator, STREAM_CONTENT, id_of, splitmix};
use crate::schema::Kind;
use crate::tz;

/// A customer or vendor, as far as names and contact details go.
pub(super) struct Party {
    pub(super) given: &'static str,
    pub(super) family: &'static str,
    pub(super) company: Option<String>,
    /// Display name before any " (deleted)" suffix.
    pub(super) display: String,
    pub(super) parent: Option<(u32, String)>,
    pub(super) email: String,
    pub(super) phone: String,
    pub(super) bill: Addr,
    pub(super) ship: Addr,
    pub(super) balance_cents: i64,
    pub(super) taxable: bool,
    pub(super) notes: &'static str,
    pub(super) delivery: &'static str,
}

pub(super) struct Addr {
    pub(super) line1: String,
    pub(super) city: &'static (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ),
}

impl Generator {
    pub(super) fn party(&self, kind: Kind, id: u32) -> Party {
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

    pub(super) fn party_names(
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
    pub(super) fn party_parent_id(&self, kind: Kind, id: u32) -> Option<u32> {
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
    pub(super) fn party_display(&self, kind: Kind, id: u32) -> String {
        let mut r = self.rng(kind, id, STREAM_CONTENT);
        if kind == Kind::Customer
            && self.generated(kind, id).is_some_and(|k| k >= 5)
            && r.random_bool(0.15)
        {
            let _ = r.random_range(0..self.generated(kind, id).unwrap_or(1).max(1));
        }
        self.party_names(&mut r, id).3
    }

    pub(super) fn party_fqn(&self, p: &Party) -> String {
        match &p.parent {
            Some((_, pd)) => format!("{pd}:{}", p.display),
            None => p.display.clone(),
        }
    }

    pub(super) fn render_customer(&self, e: &Entry, out: &mut String) {
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
        money(out, p.balance_cents);
        out.push_str(",\"BalanceWithJobs\":");
        money(out, p.balance_cents);
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

    pub(super) fn render_vendor(&self, e: &Entry, out: &mut String) {
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
        money(out, p.balance_cents);
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
}

pub(super) fn ascii_slug(s: &str) -> String {
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

/// An employee: a person, never a company.
pub(super) struct EmployeeDesc {
    pub(super) given: &'static str,
    pub(super) family: &'static str,
    pub(super) display: String,
    email: String,
    phone: String,
    addr: Addr,
    number: u64,
    hired_days_before: i64,
    hourly_cents: Option<i64>,
}

impl Generator {
    pub(super) fn employee(&self, id: u32) -> EmployeeDesc {
        let mut r = self.rng(Kind::Employee, id, STREAM_CONTENT);
        let given = pick(&mut r, GIVEN);
        let family = pick(&mut r, FAMILY);
        let display = format!("{given} {family} {id}");
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
        let addr = Addr {
            line1: format!("{} {}", r.random_range(1..9999), pick(&mut r, STREETS)),
            city: &CITIES[r.random_range(0..CITIES.len())],
        };
        let number = 100 + u64::from(id);
        let hired_days_before = r.random_range(0..2500);
        let hourly_cents = r
            .random_bool(0.6)
            .then(|| r.random_range(1500..9000) / 25 * 25);
        EmployeeDesc {
            given,
            family,
            display,
            email,
            phone,
            addr,
            number,
            hired_days_before,
            hourly_cents,
        }
    }

    pub(super) fn render_employee(&self, e: &Entry, out: &mut String) {
        let p = self.employee(e.id);
        let suffix = if e.active() { "" } else { " (deleted)" };
        out.push_str("{\"SSN\":\"XXX-XX-XXXX\",\"PrimaryAddr\":");
        addr(out, &p.addr, e.id * 2);
        out.push_str(",\"BillableTime\":");
        boolean(out, p.hourly_cents.is_some());
        if let Some(rate) = p.hourly_cents {
            out.push_str(",\"HourlyRate\":");
            money(out, rate);
        }
        out.push_str(",\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push_str(",\"GivenName\":");
        js(out, p.given);
        out.push_str(",\"FamilyName\":");
        js(out, p.family);
        out.push_str(",\"DisplayName\":");
        js(out, &format!("{}{suffix}", p.display));
        out.push_str(",\"PrintOnCheckName\":");
        js(out, &format!("{} {}", p.given, p.family));
        out.push_str(",\"Active\":");
        boolean(out, e.active());
        out.push_str(",\"V4IDPseudonym\":\"");
        hex(out, splitmix(self.cfg.seed ^ u64::from(e.id) ^ 0xE3));
        hex(out, splitmix(u64::from(e.id) ^ 0xE3));
        out.push_str("\",\"PrimaryPhone\":{\"FreeFormNumber\":");
        js(out, &p.phone);
        out.push_str("},\"PrimaryEmailAddr\":{\"Address\":");
        js(out, &p.email);
        out.push_str("},\"EmployeeNumber\":\"E-");
        push_u64(out, p.number);
        out.push_str("\",\"HiredDate\":\"");
        let created = tz::to_pacific(e.create_time()).date();
        tz::write_date(out, created - time::Duration::days(p.hired_days_before));
        out.push('"');
        if !e.active() {
            out.push_str(",\"ReleasedDate\":\"");
            tz::write_date(out, tz::to_pacific(e.updated_time()).date());
            out.push('"');
        }
        out.push('}');
    }
}
