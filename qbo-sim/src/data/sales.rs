//! Estimates and sales receipts: sales forms with the invoice's lines, tax and customer blocks.
//! An estimate the customer accepted and that was invoiced is `Closed` with a `LinkedTxn` to
//! the invoice; a sales receipt is paid on the spot (`Balance` 0.00), sometimes to a walk-in
//! customer with no `CustomerRef`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use time::Duration;

use super::json::{js, meta, money, push_u64};
use super::transactions::{
    doc_number, render_customer_block, render_lines_and_tax, render_statuses, tax_rate,
};
use super::words::{MEMOS, PAYMENT_METHODS, pick};
use super::{Entry, Generator, STREAM_CONTENT, id_of};
use crate::schema::Kind;
use crate::tz;

/// The draws filters need: customer, tax rate, line count, status.
pub(super) struct EstimateHead {
    pub(super) customer_id: u32,
    tax_pct_milli: i64,
    lines: u32,
    pub(super) status: &'static str,
}

/// The draws filters need: customer (none for a walk-in), tax rate, line count.
pub(super) struct ReceiptHead {
    pub(super) customer_id: Option<u32>,
    tax_pct_milli: i64,
    lines: u32,
}

fn form_lines(r: &mut ChaCha8Rng) -> u32 {
    match r.random_range(0..100) {
        0..80 => r.random_range(1..=4),
        80..97 => r.random_range(5..=15),
        _ => r.random_range(16..=60),
    }
}

/// String custom fields (QBO returns the first three unless asked for all).
fn custom_fields(out: &mut String, r: &mut ChaCha8Rng) {
    out.push_str(",\"CustomField\":[");
    let mut first = true;
    for (def, name) in [("1", "Crew #"), ("2", "Sales Rep"), ("3", "PO Number")] {
        if !r.random_bool(0.4) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"DefinitionId\":\"");
        out.push_str(def);
        out.push_str("\",\"Name\":");
        js(out, name);
        out.push_str(",\"Type\":\"StringType\",\"StringValue\":\"");
        push_u64(out, r.random_range(100..100_000u64));
        out.push_str("\"}");
    }
    out.push(']');
}

impl Generator {
    pub(super) fn estimate_head(&self, r: &mut ChaCha8Rng) -> EstimateHead {
        let customer_id = self.invoice_customer(r);
        let tax_pct_milli = tax_rate(r);
        let lines = form_lines(r);
        let status = match r.random_range(0..100) {
            0..40 => "Pending",
            40..65 => "Accepted",
            65..90 => "Closed",
            _ => "Rejected",
        };
        EstimateHead {
            customer_id,
            tax_pct_milli,
            lines,
            status,
        }
    }

    pub(super) fn estimate_head_of(&self, id: u32) -> EstimateHead {
        let mut r = self.rng(Kind::Estimate, id, STREAM_CONTENT);
        self.estimate_head(&mut r)
    }

    pub(super) fn receipt_head(&self, r: &mut ChaCha8Rng) -> ReceiptHead {
        let walk_in = self.cfg.customers == 0 || r.random_bool(0.15);
        let customer_id = (!walk_in).then(|| self.invoice_customer(r));
        ReceiptHead {
            customer_id,
            tax_pct_milli: tax_rate(r),
            lines: form_lines(r),
        }
    }

    pub(super) fn receipt_customer(&self, id: u32) -> Option<u32> {
        let mut r = self.rng(Kind::SalesReceipt, id, STREAM_CONTENT);
        self.receipt_head(&mut r).customer_id
    }

    pub(super) fn render_estimate(&self, e: &Entry, out: &mut String) {
        let mut r = self.rng(Kind::Estimate, e.id, STREAM_CONTENT);
        let head = self.estimate_head(&mut r);
        let lines: Vec<_> = (0..head.lines).map(|_| self.sales_line(&mut r)).collect();
        let cust = self.form_customer(head.customer_id);
        out.push_str("{\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        custom_fields(out, &mut r);
        out.push_str(",\"DocNumber\":");
        js(out, &doc_number(e.id));
        out.push_str(",\"TxnDate\":\"");
        tz::write_date(out, e.txn_date());
        out.push_str("\",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"TxnStatus\":");
        js(out, head.status);
        out.push_str(",\"LinkedTxn\":[");
        if head.status == "Closed" && self.cfg.invoices > 0 {
            // The invoice made from the estimate, created after it when one can be found.
            let mut k = r.random_range(0..self.cfg.invoices);
            for _ in 0..8 {
                if self.index_entry(Kind::Invoice, k).create >= e.create {
                    break;
                }
                k = r.random_range(0..self.cfg.invoices);
            }
            out.push_str("{\"TxnId\":\"");
            push_u64(out, u64::from(id_of(k)));
            out.push_str("\",\"TxnType\":\"Invoice\"}");
        }
        out.push(']');
        let t = render_lines_and_tax(out, &lines, head.tax_pct_milli);
        render_customer_block(out, head.customer_id, cust.as_ref(), pick(&mut r, MEMOS));
        out.push_str(",\"TotalAmt\":");
        money(out, t.total());
        render_statuses(out, r.random_bool(0.3), r.random_bool(0.5), cust.as_ref());
        out.push_str(",\"ExpirationDate\":\"");
        let valid_days = [15, 30, 60][r.random_range(0..3)];
        tz::write_date(out, e.txn_date() + Duration::days(valid_days));
        out.push('"');
        if matches!(head.status, "Accepted" | "Closed") {
            if let Some(c) = &cust {
                out.push_str(",\"AcceptedBy\":");
                js(out, &format!("{} {}", c.given, c.family));
            }
            out.push_str(",\"AcceptedDate\":\"");
            tz::write_date(
                out,
                e.txn_date() + Duration::days(r.random_range(0..valid_days)),
            );
            out.push('"');
        }
        out.push('}');
    }

    pub(super) fn render_sales_receipt(&self, e: &Entry, out: &mut String) {
        let mut r = self.rng(Kind::SalesReceipt, e.id, STREAM_CONTENT);
        let head = self.receipt_head(&mut r);
        let lines: Vec<_> = (0..head.lines).map(|_| self.sales_line(&mut r)).collect();
        let cust = head.customer_id.and_then(|id| self.form_customer(id));
        let method = PAYMENT_METHODS[r.random_range(0..PAYMENT_METHODS.len())];
        out.push_str("{\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        custom_fields(out, &mut r);
        out.push_str(",\"DocNumber\":");
        js(out, &doc_number(e.id));
        out.push_str(",\"TxnDate\":\"");
        tz::write_date(out, e.txn_date());
        out.push_str("\",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"}");
        let t = render_lines_and_tax(out, &lines, head.tax_pct_milli);
        let memo = pick(&mut r, MEMOS);
        match head.customer_id {
            Some(id) => render_customer_block(out, id, cust.as_ref(), memo),
            None => {
                out.push_str(",\"CustomerMemo\":{\"value\":");
                js(out, memo);
                out.push('}');
            }
        }
        out.push_str(",\"TotalAmt\":");
        money(out, t.total());
        render_statuses(out, r.random_bool(0.2), r.random_bool(0.4), cust.as_ref());
        out.push_str(",\"Balance\":0.00,\"PaymentMethodRef\":{\"value\":\"");
        out.push_str(method.0);
        out.push_str("\",\"name\":");
        js(out, method.1);
        out.push('}');
        if method.1 != "Cash" {
            out.push_str(",\"PaymentRefNum\":\"");
            push_u64(out, r.random_range(1000..99_999u64));
            out.push('"');
        }
        let deposit = self.chart_account("Undeposited Funds");
        out.push_str(",\"DepositToAccountRef\":{\"value\":\"");
        push_u64(out, u64::from(deposit.0));
        out.push_str("\",\"name\":");
        js(out, &deposit.1);
        out.push_str("}}");
    }
}
