//! Throughput of the simulator serving 1000-invoice pages at zero latency.
//!
//! `cargo run --release -p qbo-sim --example serve_bench -- [invoices] [pages] [concurrency]`
//! (defaults: 1,000,000 invoices, 200 pages, concurrency 1 and 4). Prints generation time,
//! resident memory, pages/s and MB/s.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use qbo_sim::Sim;
use time::macros::datetime;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let invoices: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let pages: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let concurrencies: Vec<usize> = match args.get(3).and_then(|s| s.parse().ok()) {
        Some(c) => vec![c],
        None => vec![1, 4],
    };

    let rss0 = rss_mb();
    let t = Instant::now();
    let sim = Sim::builder()
        .invoices(invoices)
        .customers(20_000)
        .items(2_000)
        .span(
            datetime!(2020-01-01 00:00 UTC),
            datetime!(2025-01-01 00:00 UTC),
        )
        .requests_per_min(0)
        .max_concurrency(0)
        .spawn()
        .await
        .unwrap();
    println!(
        "generated {invoices} invoices (+20,000 customers, 2,000 items) in {:.2} s; RSS {:.0} MB -> {:.0} MB",
        t.elapsed().as_secs_f64(),
        rss0,
        rss_mb()
    );
    let token = Arc::new(sim.mint_access_token(&sim.realm_id()).unwrap());
    let url = Arc::new(format!(
        "{}/v3/company/{}/query",
        sim.base_url(),
        sim.realm_id()
    ));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let total_pages = invoices / 1000;

    for conc in concurrencies {
        sim.reset_stats();
        let t = Instant::now();
        let per_worker = pages.div_ceil(conc);
        let workers = (0..conc).map(|w| {
            let http = http.clone();
            let token = Arc::clone(&token);
            let url = Arc::clone(&url);
            async move {
                let mut bytes = 0usize;
                let mut rows = 0usize;
                for i in 0..per_worker {
                    let page = (w * per_worker + i) % total_pages.max(1);
                    let q = format!(
                        "SELECT * FROM Invoice STARTPOSITION {} MAXRESULTS 1000",
                        page * 1000 + 1
                    );
                    let body = http
                        .get(url.as_str())
                        .query(&[("query", q.as_str()), ("minorversion", "75")])
                        .bearer_auth(token.as_str())
                        .header("Accept", "application/json")
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                    bytes += body.len();
                    rows += 1000;
                }
                (bytes, rows)
            }
        });
        let results = join_all(workers).await;
        let secs = t.elapsed().as_secs_f64();
        let bytes: usize = results.iter().map(|r| r.0).sum();
        let n = per_worker * conc;
        println!(
            "concurrency {conc}: {n} pages of 1000 invoices in {secs:.2} s = {:.1} pages/s, {:.1} MB/s ({:.2} MB/page avg); RSS {:.0} MB",
            n as f64 / secs,
            bytes as f64 / secs / 1e6,
            bytes as f64 / n as f64 / 1e6,
            rss_mb()
        );
    }
    let st = sim.stats();
    println!(
        "sim stats: {} requests, {} bytes served",
        st.total_requests, st.bytes_served
    );
    sim.shutdown().await.unwrap();
}
