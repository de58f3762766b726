//! Transactions: invoices.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use time::Duration;

use super::json::{addr, boolean, dec, js, meta, money, push_u64};
use super::words::{MEMOS, pick};
use super::{Entry, Generator, STREAM_CONTENT, id_of};
use crate::schema::Kind;
use crate::tz;

impl Generator {
    pub(super) fn invoice_customer(&self, r: &mut ChaCha8Rng) -> u32 {
        let n = self.cfg.customers.max(1);
        id_of(r.random_range(0..n))
    }

    pub(super) fn render_invoice(&self, e: &Entry, out: &mut String) {
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
            let price_cents = item
                .as_ref()
                .map_or_else(|| r.random_range(100..100_000), |it| it.unit_price_cents);
            // Qty in hundredths × price in cents, rounded half up to cents.
            let amount_cents = (qty_centi * price_cents + 50) / 100;
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
            money(out, amount_cents);
            out.push_str(",\"DetailType\":\"SalesItemLineDetail\",\"SalesItemLineDetail\":{\"ItemRef\":{\"value\":\"");
            push_u64(out, u64::from(item_id));
            out.push_str("\",\"name\":");
            match &item {
                Some(it) => js(out, &it.fqn()),
                None => js(out, "Services"),
            }
            out.push_str("},\"UnitPrice\":");
            money(out, price_cents);
            out.push_str(",\"Qty\":");
            dec(out, qty_centi, 2);
            out.push_str(",\"TaxCodeRef\":{\"value\":\"");
            out.push_str(if taxable { "TAX" } else { "NON" });
            out.push_str("\"}}},");
        }
        out.push_str("{\"Amount\":");
        money(out, subtotal);
        out.push_str(",\"DetailType\":\"SubTotalLineDetail\",\"SubTotalLineDetail\":{}}]");
        // tax = taxable_total * pct / 100, pct in milli-percent; round half up to cents.
        let tax = (taxable_total * tax_pct_milli + 50_000) / 100_000;
        out.push_str(",\"TxnTaxDetail\":{");
        if tax_pct_milli > 0 {
            out.push_str("\"TxnTaxCodeRef\":{\"value\":\"2\"},\"TotalTax\":");
            money(out, tax);
            out.push_str(",\"TaxLine\":[{\"Amount\":");
            money(out, tax);
            out.push_str(",\"DetailType\":\"TaxLineDetail\",\"TaxLineDetail\":{\"TaxRateRef\":{\"value\":\"3\"},\"PercentBased\":true,\"TaxPercent\":");
            dec(out, tax_pct_milli, 3);
            out.push_str(",\"NetAmountTaxable\":");
            money(out, taxable_total);
            out.push_str("}}]");
        } else {
            out.push_str("\"TotalTax\":0.00");
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
        money(out, total);
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
        money(out, balance);
        out.push_str(",\"Deposit\":0.00}");
    }
}

pub(super) fn invoice_terms(r: &mut ChaCha8Rng) -> (&'static str, &'static str, i64) {
    match r.random_range(0..4) {
        0 => ("1", "Due on receipt", 0),
        1 => ("2", "Net 15", 15),
        _ => ("3", "Net 30", 30),
    }
}

pub(super) fn doc_number(id: u32) -> String {
    (1000 + u64::from(id)).to_string()
}
