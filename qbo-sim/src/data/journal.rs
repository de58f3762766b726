//! Journal entries: balanced debit and credit lines on the chart of accounts, some naming a
//! customer, vendor or employee; reversing entries are dated the first of the next month,
//! after they were created (post-dated `TxnDate`).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::json::{boolean, js, meta, money, push_u64};
use super::words::{EXPENSE_NOTES, pick};
use super::{Entry, Generator, STREAM_CONTENT, id_of};
use crate::schema::Kind;
use crate::tz;

impl Generator {
    /// `DocNumber` of a journal entry: most have one (`JE-…`), some none.
    pub(super) fn journal_doc_number(&self, r: &mut ChaCha8Rng, id: u32) -> Option<String> {
        r.random_bool(0.6)
            .then(|| format!("JE-{}", 100 + u64::from(id)))
    }

    fn journal_entity(&self, r: &mut ChaCha8Rng) -> Option<(&'static str, u32, String)> {
        match r.random_range(0..10) {
            0 if self.cfg.customers > 0 => {
                let id = id_of(r.random_range(0..self.cfg.customers));
                Some(("Customer", id, self.party(Kind::Customer, id).display))
            }
            1 if self.cfg.vendors > 0 => {
                let id = id_of(r.random_range(0..self.cfg.vendors));
                Some(("Vendor", id, self.party(Kind::Vendor, id).display))
            }
            2 if self.cfg.employees > 0 => {
                let id = id_of(r.random_range(0..self.cfg.employees));
                Some(("Employee", id, self.employee(id).display))
            }
            _ => None,
        }
    }

    pub(super) fn render_journal_entry(&self, e: &Entry, out: &mut String) {
        let mut r = self.rng(Kind::JournalEntry, e.id, STREAM_CONTENT);
        let doc = self.journal_doc_number(&mut r, e.id);
        let pairs = match r.random_range(0..10) {
            0..7 => 1,
            7..9 => 2,
            _ => r.random_range(3..=12),
        };
        let reversing = e.txn_date() > tz::to_pacific(e.create_time()).date();
        out.push_str("{\"Adjustment\":");
        boolean(out, reversing);
        out.push_str(",\"TxnTaxDetail\":{},\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        if let Some(d) = &doc {
            out.push_str(",\"DocNumber\":");
            js(out, d);
        }
        out.push_str(",\"TxnDate\":\"");
        tz::write_date(out, e.txn_date());
        out.push_str("\",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"}");
        if reversing {
            out.push_str(",\"PrivateNote\":\"Reverses the month-end accrual\"");
        }
        out.push_str(",\"Line\":[");
        let mut total = 0i64;
        let mut line = 0u64;
        for _ in 0..pairs {
            let amount = r.random_range(100..2_500_000);
            let note = pick(&mut r, EXPENSE_NOTES);
            total += amount;
            for posting in ["Debit", "Credit"] {
                let account = self.account_ref(&mut r, &[]);
                let entity = self.journal_entity(&mut r);
                if line > 0 {
                    out.push(',');
                }
                out.push_str("{\"Id\":\"");
                push_u64(out, line);
                line += 1;
                out.push('"');
                if !note.is_empty() {
                    out.push_str(",\"Description\":");
                    js(out, note);
                }
                out.push_str(",\"Amount\":");
                money(out, amount);
                out.push_str(",\"DetailType\":\"JournalEntryLineDetail\",\"JournalEntryLineDetail\":{\"PostingType\":\"");
                out.push_str(posting);
                out.push('"');
                if let Some((ty, id, name)) = entity {
                    out.push_str(",\"Entity\":{\"Type\":\"");
                    out.push_str(ty);
                    out.push_str("\",\"EntityRef\":{\"value\":\"");
                    push_u64(out, u64::from(id));
                    out.push_str("\",\"name\":");
                    js(out, &name);
                    out.push_str("}}");
                }
                out.push_str(",\"AccountRef\":{\"value\":\"");
                push_u64(out, u64::from(account.0));
                out.push_str("\",\"name\":");
                js(out, &account.1);
                out.push_str("}}}");
            }
        }
        out.push_str("],\"TotalAmt\":");
        money(out, total);
        out.push('}');
    }
}
