//! `CompanyInfo`: the one record describing the company (`Id` 1), read by
//! `GET /v3/company/{realm}/companyinfo/{realm}` and by `SELECT * FROM CompanyInfo`.

use rand::Rng;

use super::json::{addr, js, meta, push_u64};
use super::names::Addr;
use super::words::{CITIES, COMPANY_A, COMPANY_B, STREETS, pick};
use super::{Entry, Generator, STREAM_CONTENT};
use crate::schema::Kind;
use crate::tz;

impl Generator {
    pub(super) fn render_company_info(&self, e: &Entry, out: &mut String) {
        let mut r = self.rng(Kind::CompanyInfo, e.id, STREAM_CONTENT);
        let name = format!("{} {}", pick(&mut r, COMPANY_A), pick(&mut r, COMPANY_B));
        let place = Addr {
            line1: format!("{} {}", r.random_range(1..9999), pick(&mut r, STREETS)),
            city: &CITIES[r.random_range(0..CITIES.len())],
        };
        let email = format!("office{}@example.com", self.cfg.seed % 1000);
        let phone = format!(
            "({}) 555-{:04}",
            r.random_range(200..999),
            r.random_range(0..10000)
        );
        out.push_str("{\"CompanyName\":");
        js(out, &name);
        out.push_str(",\"LegalName\":");
        js(out, &format!("{name} LLC"));
        for key in ["CompanyAddr", "CustomerCommunicationAddr", "LegalAddr"] {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            addr(out, &place, 1);
        }
        out.push_str(",\"CustomerCommunicationEmailAddr\":{\"Address\":");
        js(out, &email);
        out.push_str("},\"PrimaryPhone\":{\"FreeFormNumber\":");
        js(out, &phone);
        out.push_str("},\"CompanyStartDate\":\"");
        tz::write_date(
            out,
            tz::to_pacific(super::secs_to_time(self.cfg.start)).date(),
        );
        out.push_str(
            "\",\"FiscalYearStartMonth\":\"January\",\"Country\":\"US\",\"Email\":{\"Address\":",
        );
        js(out, &email);
        out.push_str("},\"WebAddr\":{\"URI\":\"https://example.com\"},\"SupportedLanguages\":\"en\",\"NameValue\":[");
        let values = [
            ("NeoEnabled", "true"),
            ("IndustryType", "Landscaping Services"),
            ("CompanyType", "Other/None"),
            ("SubscriptionStatus", "PAID"),
            ("OfferingSku", "QuickBooks Online Plus"),
            ("PayrollFeature", "false"),
            ("AccountantFeature", "false"),
            ("IsQbdtMigrated", "false"),
            ("ItemCategoriesFeature", "true"),
            ("AssignedTime", "03/14/2023 09:12:40"),
        ];
        for (i, (k, v)) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"Name\":");
            js(out, k);
            out.push_str(",\"Value\":");
            js(out, v);
            out.push('}');
        }
        out.push_str("],\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push('}');
    }
}
