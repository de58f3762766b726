//! Page one day of invoices with `qbo-client` alone: no database, no ledger, no windows.
//!
//! ```text
//! # QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN, QBO_REALM_ID, QBO_ENV (and for the
//! # simulator QBO_BASE_URL, QBO_TOKEN_URL) in the environment, e.g. from `qbo-sim > sim.env`:
//! cargo run -p examples --example page_invoices -- 2024-01-15 [PAGE_SIZE]
//! ```
//!
//! Prints one line per page and checks the total against QBO's `COUNT(*)` for the same filter.

use std::error::Error;
use std::sync::Arc;

use futures::TryStreamExt;
use qbo_client::{MemoryTokenStore, Op, Order, QboClient, QboConfig, Query};
use time::Date;
use time::macros::format_description;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let day_text = args
        .next()
        .ok_or("usage: page_invoices YYYY-MM-DD [PAGE_SIZE]")?;
    let day = Date::parse(&day_text, format_description!("[year]-[month]-[day]"))?;
    let page_size: u32 = args.next().map_or(Ok(1000), |s| s.parse())?;

    // The refresh token rotates: a real program persists the newest one (FileTokenStore, or
    // backfill_core::PgTokenStore); this one keeps it in memory for the length of the run.
    let client = QboClient::builder(QboConfig::from_env()?)
        .token_store(Arc::new(MemoryTokenStore::new()))
        .build()?;

    // [day 00:00 UTC, next day 00:00 UTC), oldest first; QBO compares instants across offsets.
    let start = day.midnight().assume_utc();
    let end = day.next_day().ok_or("no next day")?.midnight().assume_utc();
    let query = Query::select("Invoice")
        .filter("MetaData.CreateTime", Op::Ge, start)
        .filter("MetaData.CreateTime", Op::Lt, end)
        .order_by("MetaData.CreateTime", Order::Asc)
        .max_results(page_size)
        .build()?;

    // A lazy stream: the next page is requested only after this one is handled.
    let mut pages = std::pin::pin!(client.pages(query.clone()));
    let mut loaded = 0u64;
    let mut json_bytes = 0usize;
    while let Some(page) = pages.try_next().await? {
        println!(
            "page {} (STARTPOSITION {}): {} invoices, intuit_tid {}",
            page.page_number,
            page.start_position,
            page.records.len(),
            page.intuit_tid.as_deref().unwrap_or("-")
        );
        for invoice in &page.records {
            // `raw` is QBO's exact JSON text: parse what you need, store the rest untouched.
            json_bytes += invoice.raw.get().len();
        }
        loaded += page.records.len() as u64;
    }
    let count = client.count(&query).await?;
    println!("{day}: loaded {loaded} invoices ({json_bytes} bytes of JSON); COUNT(*) says {count}");
    if loaded != count {
        return Err(format!("loaded {loaded} invoices but COUNT(*) says {count}").into());
    }
    Ok(())
}
