//! Bills: what the company owes a vendor, with account-based and item-based expense lines,
//! some billable to a customer, and a `LinkedTxn` to the bill payment once paid.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use time::Duration;

use super::json::{dec, js, meta, money, push_u64};
use super::transactions::invoice_terms;
use super::words::{EXPENSE_NOTES, pick};
use super::{Entry, Generator, STREAM_CONTENT, id_of};
use crate::schema::Kind;
use crate::tz;

/// The draws filters need: vendor, terms, the vendor's invoice number.
pub(super) struct BillHead {
    pub(super) vendor_id: u32,
    pub(super) term: (&'static str, &'static str, i64),
    pub(super) doc_number: Option<String>,
}

impl Generator {
    pub(super) fn bill_head(&self, r: &mut ChaCha8Rng, id: u32) -> BillHead {
        let vendor_id = id_of(r.random_range(0..self.cfg.vendors.max(1)));
        let term = invoice_terms(r);
        let doc_number = r
            .random_bool(0.7)
            .then(|| format!("INV-{}", 5000 + u64::from(id) * 3));
        BillHead {
            vendor_id,
            term,
            doc_number,
        }
    }

    pub(super) fn bill_head_of(&self, id: u32) -> BillHead {
        let mut r = self.rng(Kind::Bill, id, STREAM_CONTENT);
        self.bill_head(&mut r, id)
    }

    pub(super) fn render_bill(&self, e: &Entry, out: &mut String) {
        let mut r = self.rng(Kind::Bill, e.id, STREAM_CONTENT);
        let head = self.bill_head(&mut r, e.id);
        let vendor = (self.cfg.vendors > 0).then(|| self.party(Kind::Vendor, head.vendor_id));
        let lines = match r.random_range(0..100) {
            0..85 => r.random_range(1..=4),
            _ => r.random_range(5..=30),
        };
        let paid = r.random_bool(0.45);
        let ap = self.chart_account("Accounts Payable (A/P)");
        out.push_str("{\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push_str("\",\"domain\":\"QBO\",\"APAccountRef\":{\"value\":\"");
        push_u64(out, u64::from(ap.0));
        out.push_str("\",\"name\":");
        js(out, &ap.1);
        out.push_str("},\"VendorRef\":{\"value\":\"");
        push_u64(out, u64::from(head.vendor_id));
        out.push_str("\",\"name\":");
        match &vendor {
            Some(v) => js(out, &v.display),
            None => js(out, "Miscellaneous vendor"),
        }
        out.push_str("},\"TxnDate\":\"");
        tz::write_date(out, e.txn_date());
        out.push_str("\",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"LinkedTxn\":[");
        if paid {
            out.push_str("{\"TxnId\":\"");
            push_u64(out, u64::from(e.id) * 5 + 3);
            out.push_str("\",\"TxnType\":\"BillPayment\"}");
        }
        out.push_str("],\"SalesTermRef\":{\"value\":\"");
        out.push_str(head.term.0);
        out.push_str("\"},\"DueDate\":\"");
        tz::write_date(out, e.txn_date() + Duration::days(head.term.2));
        out.push_str("\",\"sparse\":false,\"Line\":[");
        let mut total = 0i64;
        for i in 1..=lines {
            if i > 1 {
                out.push(',');
            }
            out.push_str("{\"Id\":\"");
            push_u64(out, i);
            out.push_str("\",\"LineNum\":");
            push_u64(out, i);
            let note = pick(&mut r, EXPENSE_NOTES);
            if !note.is_empty() {
                out.push_str(",\"Description\":");
                js(out, note);
            }
            let billable = (self.cfg.customers > 0 && r.random_bool(0.15))
                .then(|| self.invoice_customer(&mut r));
            let by_item = self.cfg.items > 0 && r.random_bool(0.3);
            if by_item {
                let id = id_of(r.random_range(0..self.cfg.items));
                let it = self.item(id);
                let qty: i64 = r.random_range(1..=50) * 100;
                let cost = it.purchase_cost_cents.max(1);
                let amount = (qty * cost + 50) / 100;
                total += amount;
                out.push_str(",\"Amount\":");
                money(out, amount);
                out.push_str(",\"DetailType\":\"ItemBasedExpenseLineDetail\",\"ItemBasedExpenseLineDetail\":{\"ItemRef\":{\"value\":\"");
                push_u64(out, u64::from(id));
                out.push_str("\",\"name\":");
                js(out, &it.fqn());
                out.push_str("},\"UnitPrice\":");
                money(out, cost);
                out.push_str(",\"Qty\":");
                dec(out, qty, 2);
            } else {
                let account =
                    self.account_ref(&mut r, &["Expense", "Cost of Goods Sold", "Other Expense"]);
                let amount = r.random_range(500..400_000);
                total += amount;
                out.push_str(",\"Amount\":");
                money(out, amount);
                out.push_str(",\"DetailType\":\"AccountBasedExpenseLineDetail\",\"AccountBasedExpenseLineDetail\":{\"AccountRef\":{\"value\":\"");
                push_u64(out, u64::from(account.0));
                out.push_str("\",\"name\":");
                js(out, &account.1);
                out.push('}');
            }
            if let Some(c) = billable {
                out.push_str(",\"CustomerRef\":{\"value\":\"");
                push_u64(out, u64::from(c));
                out.push_str("\"},\"BillableStatus\":\"Billable\"");
            } else {
                out.push_str(",\"BillableStatus\":\"NotBillable\"");
            }
            out.push_str(",\"TaxCodeRef\":{\"value\":\"NON\"}}}");
        }
        out.push_str("],\"Balance\":");
        money(out, if paid { 0 } else { total });
        out.push_str(",\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push('"');
        if let Some(d) = &head.doc_number {
            out.push_str(",\"DocNumber\":");
            js(out, d);
        }
        out.push_str(",\"TotalAmt\":");
        money(out, total);
        meta(out, e);
        out.push('}');
    }
}
