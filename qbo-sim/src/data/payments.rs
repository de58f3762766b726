//! Payments: money received from a customer, applied to one of its invoices (a line with a
//! `LinkedTxn` to the invoice, and the `LineEx` name/value list QBO adds) or left unapplied.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::json::{js, meta, money, push_u64};
use super::words::PAYMENT_METHODS;
use super::{Entry, Generator, STREAM_CONTENT, id_of};
use crate::schema::Kind;
use crate::tz;

/// Who paid and what the payment applies to: the draws a `CustomerRef` filter needs.
pub(super) struct PaymentHead {
    pub(super) customer_id: u32,
    /// The invoice paid, created no later than the payment when one could be found.
    pub(super) invoice: Option<u32>,
}

impl Generator {
    pub(super) fn payment_head(&self, r: &mut ChaCha8Rng, e: &Entry) -> PaymentHead {
        let n = self.cfg.invoices;
        if n > 0 && r.random_bool(0.92) {
            let mut k = r.random_range(0..n);
            for _ in 0..8 {
                if self.index_entry(Kind::Invoice, k).create <= e.create {
                    break;
                }
                k = r.random_range(0..n);
            }
            let invoice = id_of(k);
            let mut ir = self.rng(Kind::Invoice, invoice, STREAM_CONTENT);
            PaymentHead {
                customer_id: self.invoice_customer(&mut ir),
                invoice: Some(invoice),
            }
        } else {
            PaymentHead {
                customer_id: self.invoice_customer(r),
                invoice: None,
            }
        }
    }

    pub(super) fn payment_customer(&self, e: &Entry) -> u32 {
        let mut r = self.rng(Kind::Payment, e.id, STREAM_CONTENT);
        self.payment_head(&mut r, e).customer_id
    }

    pub(super) fn render_payment(&self, e: &Entry, out: &mut String) {
        let mut r = self.rng(Kind::Payment, e.id, STREAM_CONTENT);
        let head = self.payment_head(&mut r, e);
        let method = PAYMENT_METHODS[r.random_range(0..PAYMENT_METHODS.len())];
        let ref_num = r.random_bool(0.6).then(|| r.random_range(1000..99_999u64));
        let deposit = if r.random_bool(0.7) {
            self.chart_account("Undeposited Funds")
        } else {
            self.account_ref(&mut r, &["Bank"])
        };
        let partial = r.random_bool(0.2);
        let loose = r.random_range(500..250_000);
        let (applied, open_balance) = match head.invoice {
            Some(id) => {
                let inv = self.invoice(id);
                let total = inv.totals().total();
                (if partial { total / 2 } else { total }, total)
            }
            None => (0, 0),
        };
        let total = if head.invoice.is_some() {
            applied
        } else {
            loose
        };
        let cust = self.form_customer(head.customer_id);
        out.push_str("{\"CustomerRef\":{\"value\":\"");
        push_u64(out, u64::from(head.customer_id));
        out.push_str("\",\"name\":");
        match &cust {
            Some(c) => js(out, &c.display),
            None => js(out, "Walk-in customer"),
        }
        out.push_str("},\"DepositToAccountRef\":{\"value\":\"");
        push_u64(out, u64::from(deposit.0));
        out.push_str("\"},\"PaymentMethodRef\":{\"value\":\"");
        out.push_str(method.0);
        out.push_str("\",\"name\":");
        js(out, method.1);
        out.push('}');
        if let Some(n) = ref_num {
            out.push_str(",\"PaymentRefNum\":\"");
            push_u64(out, n);
            out.push('"');
        }
        let ar = self.chart_account("Accounts Receivable (A/R)");
        out.push_str(",\"ARAccountRef\":{\"value\":\"");
        push_u64(out, u64::from(ar.0));
        out.push_str("\"},\"TotalAmt\":");
        money(out, total);
        out.push_str(",\"UnappliedAmt\":");
        money(out, total - applied);
        out.push_str(",\"ProcessPayment\":false,\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push_str(",\"TxnDate\":\"");
        tz::write_date(out, e.txn_date());
        out.push_str(
            "\",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"Line\":[",
        );
        if let Some(inv) = head.invoice {
            out.push_str("{\"Amount\":");
            money(out, applied);
            out.push_str(",\"LinkedTxn\":[{\"TxnId\":\"");
            push_u64(out, u64::from(inv));
            out.push_str("\",\"TxnType\":\"Invoice\"}],\"LineEx\":{\"any\":[");
            let mut balance = String::new();
            money(&mut balance, open_balance);
            let values = [
                ("txnId", inv.to_string()),
                ("txnOpenBalance", balance),
                ("txnReferenceNumber", super::transactions::doc_number(inv)),
            ];
            for (i, (name, value)) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"name\":\"{http://schema.intuit.com/finance/v3}NameValue\",\"declaredType\":\"com.intuit.schema.finance.v3.NameValue\",\"scope\":\"javax.xml.bind.JAXBElement$GlobalScope\",\"value\":{\"Name\":");
                js(out, name);
                out.push_str(",\"Value\":");
                js(out, value);
                out.push_str("},\"nil\":false,\"globalScope\":true,\"typeSubstituted\":false}");
            }
            out.push_str("]}}");
        }
        out.push_str("]}");
    }
}
