//! Sales forms: invoices, and the line and tax blocks that estimates and sales receipts share
//! with them.
//!
//! Every draw of an invoice happens in [`Generator::invoice`], in the order the rendered fields
//! need them, so that other records (payments) can read an invoice's totals without rendering
//! it, and the bytes stay what they were when the draws were interleaved with the output.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use time::Duration;

use super::items::ItemDesc;
use super::json::{addr, boolean, dec, js, meta, money, push_u64};
use super::names::Party;
use super::words::{MEMOS, pick};
use super::{Entry, Generator, STREAM_CONTENT, id_of};
use crate::schema::Kind;
use crate::tz;

/// One `SalesItemLineDetail` line.
pub(super) struct SalesLine {
    pub(super) item_id: u32,
    pub(super) item: Option<ItemDesc>,
    pub(super) qty_centi: i64,
    pub(super) price_cents: i64,
    pub(super) amount_cents: i64,
}

/// Totals of a form's lines: the subtotal, what is taxable, the tax.
#[derive(Debug, Clone, Copy)]
pub(super) struct Totals {
    pub(super) subtotal: i64,
    pub(super) taxable: i64,
    pub(super) tax: i64,
}

impl Totals {
    pub(super) fn total(&self) -> i64 {
        self.subtotal + self.tax
    }
}

/// Everything drawn for one invoice.
pub(super) struct InvoiceDesc {
    pub(super) customer_id: u32,
    pub(super) term: (&'static str, &'static str, i64),
    pub(super) tax_pct_milli: i64,
    allow_card: bool,
    allow_ach: bool,
    crew: Option<u64>,
    paid_roll: u32,
    pub(super) lines: Vec<SalesLine>,
    memo: &'static str,
    need_to_print: bool,
    email_sent: bool,
}

impl InvoiceDesc {
    pub(super) fn totals(&self) -> Totals {
        totals(&self.lines, self.tax_pct_milli)
    }

    /// The open balance: paid (40%), half paid (15%) or open.
    pub(super) fn balance(&self) -> i64 {
        let total = self.totals().total();
        match self.paid_roll {
            0..40 => 0,
            40..55 => total / 2,
            _ => total,
        }
    }
}

/// Sums lines: a line is taxable when its item is and the form has a tax rate.
pub(super) fn totals(lines: &[SalesLine], tax_pct_milli: i64) -> Totals {
    let mut t = Totals {
        subtotal: 0,
        taxable: 0,
        tax: 0,
    };
    for l in lines {
        t.subtotal += l.amount_cents;
        if line_taxable(l, tax_pct_milli) {
            t.taxable += l.amount_cents;
        }
    }
    // tax = taxable * pct / 100, pct in milli-percent; round half up to cents.
    t.tax = (t.taxable * tax_pct_milli + 50_000) / 100_000;
    t
}

fn line_taxable(l: &SalesLine, tax_pct_milli: i64) -> bool {
    l.item.as_ref().is_some_and(|it| it.taxable) && tax_pct_milli > 0
}

/// A sales tax rate in milli-percent: none, 8, 8.25 or 9.5 %.
pub(super) fn tax_rate(r: &mut ChaCha8Rng) -> i64 {
    match r.random_range(0..4) {
        0 => 0,
        1 => 8_000,
        2 => 8_250,
        _ => 9_500,
    }
}

impl Generator {
    pub(super) fn invoice_customer(&self, r: &mut ChaCha8Rng) -> u32 {
        let n = self.cfg.customers.max(1);
        id_of(r.random_range(0..n))
    }

    /// The customer of a sales form, when the company has customers.
    pub(super) fn form_customer(&self, customer_id: u32) -> Option<Party> {
        (self.cfg.customers > 0).then(|| self.party(Kind::Customer, customer_id))
    }

    /// Draws one line: an item (not a category, when one can be found), a quantity, its price.
    pub(super) fn sales_line(&self, r: &mut ChaCha8Rng) -> SalesLine {
        let n_items = self.cfg.items;
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
        SalesLine {
            item_id,
            item,
            qty_centi,
            price_cents,
            amount_cents,
        }
    }

    /// Every draw of an invoice, in rendering order.
    pub(super) fn invoice(&self, id: u32) -> InvoiceDesc {
        let mut r = self.rng(Kind::Invoice, id, STREAM_CONTENT);
        let customer_id = self.invoice_customer(&mut r);
        let term = invoice_terms(&mut r);
        let line_count: u32 = match r.random_range(0..1000) {
            0..700 => r.random_range(1..=5),
            700..950 => r.random_range(6..=20),
            950..995 => r.random_range(21..=100),
            _ => r.random_range(101..=400),
        };
        let tax_pct_milli = tax_rate(&mut r);
        let allow_card = r.random_bool(0.5);
        let allow_ach = r.random_bool(0.5);
        let crew = r.random_bool(0.5).then(|| r.random_range(100..200));
        let paid_roll = r.random_range(0..100);
        let lines = (0..line_count).map(|_| self.sales_line(&mut r)).collect();
        let memo = pick(&mut r, MEMOS);
        let need_to_print = r.random_bool(0.3);
        let email_sent = r.random_bool(0.5);
        InvoiceDesc {
            customer_id,
            term,
            tax_pct_milli,
            allow_card,
            allow_ach,
            crew,
            paid_roll,
            lines,
            memo,
            need_to_print,
            email_sent,
        }
    }

    pub(super) fn render_invoice(&self, e: &Entry, out: &mut String) {
        let inv = self.invoice(e.id);
        let (term_id, term_name, term_days) = inv.term;
        let cust = self.form_customer(inv.customer_id);
        out.push_str("{\"AllowIPNPayment\":false,\"AllowOnlinePayment\":false,\"AllowOnlineCreditCardPayment\":");
        boolean(out, inv.allow_card);
        out.push_str(",\"AllowOnlineACHPayment\":");
        boolean(out, inv.allow_ach);
        out.push_str(",\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push_str(",\"CustomField\":[");
        if let Some(crew) = inv.crew {
            out.push_str("{\"DefinitionId\":\"1\",\"Name\":\"Crew #\",\"Type\":\"StringType\",\"StringValue\":\"");
            push_u64(out, crew);
            out.push_str("\"}");
        }
        out.push_str("],\"DocNumber\":");
        js(out, &doc_number(e.id));
        out.push_str(",\"TxnDate\":\"");
        tz::write_date(out, e.txn_date());
        out.push_str("\",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"ExchangeRate\":1,\"LinkedTxn\":[");
        if inv.paid_roll < 40 {
            out.push_str("{\"TxnId\":\"");
            push_u64(out, u64::from(e.id) * 3 + 7);
            out.push_str("\",\"TxnType\":\"Payment\"}");
        }
        out.push(']');
        let t = render_lines_and_tax(out, &inv.lines, inv.tax_pct_milli);
        render_customer_block(out, inv.customer_id, cust.as_ref(), inv.memo);
        out.push_str(",\"FreeFormAddress\":true,\"ShipFromAddr\":{\"Id\":\"");
        push_u64(out, u64::from(e.id) + 100_000);
        out.push_str("\",\"Line1\":\"123 Sierra Way\",\"Line2\":\"San Pablo, CA  87999 US\"},\"SalesTermRef\":{\"value\":\"");
        out.push_str(term_id);
        out.push_str("\",\"name\":");
        js(out, term_name);
        out.push_str("},\"DueDate\":\"");
        tz::write_date(out, e.txn_date() + Duration::days(term_days));
        out.push_str("\",\"TotalAmt\":");
        money(out, t.total());
        render_statuses(out, inv.need_to_print, inv.email_sent, cust.as_ref());
        out.push_str(",\"Balance\":");
        money(out, inv.balance());
        out.push_str(",\"Deposit\":0.00}");
    }
}

/// `,"Line":[…]` (sales lines and the closing subtotal line) and `,"TxnTaxDetail":{…}`.
pub(super) fn render_lines_and_tax(
    out: &mut String,
    lines: &[SalesLine],
    tax_pct_milli: i64,
) -> Totals {
    out.push_str(",\"Line\":[");
    for (i, l) in (1u64..).zip(lines) {
        out.push_str("{\"Id\":\"");
        push_u64(out, i);
        out.push_str("\",\"LineNum\":");
        push_u64(out, i);
        out.push_str(",\"Description\":");
        match &l.item {
            Some(it) => js(out, &it.description),
            None => js(out, "Services rendered"),
        }
        out.push_str(",\"Amount\":");
        money(out, l.amount_cents);
        out.push_str(",\"DetailType\":\"SalesItemLineDetail\",\"SalesItemLineDetail\":{\"ItemRef\":{\"value\":\"");
        push_u64(out, u64::from(l.item_id));
        out.push_str("\",\"name\":");
        match &l.item {
            Some(it) => js(out, &it.fqn()),
            None => js(out, "Services"),
        }
        out.push_str("},\"UnitPrice\":");
        money(out, l.price_cents);
        out.push_str(",\"Qty\":");
        dec(out, l.qty_centi, 2);
        out.push_str(",\"TaxCodeRef\":{\"value\":\"");
        out.push_str(if line_taxable(l, tax_pct_milli) {
            "TAX"
        } else {
            "NON"
        });
        out.push_str("\"}}},");
    }
    let t = totals(lines, tax_pct_milli);
    out.push_str("{\"Amount\":");
    money(out, t.subtotal);
    out.push_str(",\"DetailType\":\"SubTotalLineDetail\",\"SubTotalLineDetail\":{}}]");
    out.push_str(",\"TxnTaxDetail\":{");
    if tax_pct_milli > 0 {
        out.push_str("\"TxnTaxCodeRef\":{\"value\":\"2\"},\"TotalTax\":");
        money(out, t.tax);
        out.push_str(",\"TaxLine\":[{\"Amount\":");
        money(out, t.tax);
        out.push_str(",\"DetailType\":\"TaxLineDetail\",\"TaxLineDetail\":{\"TaxRateRef\":{\"value\":\"3\"},\"PercentBased\":true,\"TaxPercent\":");
        dec(out, tax_pct_milli, 3);
        out.push_str(",\"NetAmountTaxable\":");
        money(out, t.taxable);
        out.push_str("}}]");
    } else {
        out.push_str("\"TotalTax\":0.00");
    }
    out.push('}');
    t
}

/// `,"CustomerRef":{…},"CustomerMemo":{…}` and the customer's addresses.
pub(super) fn render_customer_block(
    out: &mut String,
    customer_id: u32,
    cust: Option<&Party>,
    memo: &str,
) {
    out.push_str(",\"CustomerRef\":{\"value\":\"");
    push_u64(out, u64::from(customer_id));
    out.push_str("\",\"name\":");
    match cust {
        Some(c) => js(out, &c.display),
        None => js(out, "Walk-in customer"),
    }
    out.push_str("},\"CustomerMemo\":{\"value\":");
    js(out, memo);
    out.push('}');
    if let Some(c) = cust {
        out.push_str(",\"BillAddr\":");
        addr(out, &c.bill, customer_id * 2);
        out.push_str(",\"ShipAddr\":");
        addr(out, &c.ship, customer_id * 2 + 1);
    }
}

/// `,"ApplyTaxAfterDiscount":false,"PrintStatus":…,"EmailStatus":…` and `BillEmail`.
pub(super) fn render_statuses(
    out: &mut String,
    need_to_print: bool,
    email_sent: bool,
    cust: Option<&Party>,
) {
    out.push_str(",\"ApplyTaxAfterDiscount\":false,\"PrintStatus\":\"");
    out.push_str(if need_to_print {
        "NeedToPrint"
    } else {
        "NotSet"
    });
    out.push_str("\",\"EmailStatus\":\"");
    out.push_str(if email_sent { "EmailSent" } else { "NotSet" });
    out.push('"');
    if let Some(c) = cust {
        out.push_str(",\"BillEmail\":{\"Address\":");
        js(out, &c.email);
        out.push('}');
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
