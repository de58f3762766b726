//! The simulator: a release `qbo-sim` process per scenario, its HTTP statistics and request
//! log.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::machine::proc_cpu_secs;
use super::{Env, rel, strings};

/// Simulator arguments for `n` invoices created in `[start, end)`, answered at once and without
/// rate or concurrency limits.
pub(super) fn unlimited_sim_args(n: u64, start: &str, end: &str) -> Vec<String> {
    strings(&[
        "--invoices",
        &n.to_string(),
        "--start",
        start,
        "--end",
        end,
        "--latency-ms",
        "0",
        "--requests-per-min",
        "0",
        "--max-concurrency",
        "0",
    ])
}

/// A running `qbo-sim` process (killed when dropped).
pub(super) struct Sim {
    child: Child,
    addr: String,
    pub(super) env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Sim {
    pub(super) fn start(env: &Env, name: &str, args: &[String]) -> Result<Sim> {
        let log = fs::File::create(env.out_dir.join("logs").join(format!("sim-{name}.log")))
            .context("creating the simulator log")?;
        let started = Instant::now();
        let mut child = Command::new(&env.sim_bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", env.sim_bin.display()))?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut vars = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .context("reading the simulator's output")?;
            if n == 0 {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "qbo-sim exited before printing its settings (see target/bench/logs/sim-{name}.log)"
                );
            }
            if let Some((k, v)) = line.trim().split_once('=') {
                vars.push((k.to_owned(), v.to_owned()));
                if k == "QBO_ENV" {
                    break;
                }
            }
        }
        let base = vars
            .iter()
            .find(|(k, _)| k == "QBO_BASE_URL")
            .map(|(_, v)| v.clone())
            .context("qbo-sim printed no QBO_BASE_URL")?;
        let addr = base
            .strip_prefix("http://")
            .context("QBO_BASE_URL is not http://")?
            .trim_end_matches('/')
            .to_owned();
        eprintln!(
            "{name}: qbo-sim ready at {base} after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(Sim {
            child,
            addr,
            env: vars,
            args: args.to_vec(),
        })
    }

    pub(super) fn command(&self, env: &Env) -> String {
        format!(
            "{} {} > sim.env &",
            rel(env, &env.sim_bin),
            self.args.join(" ")
        )
    }

    pub(super) fn http(&self, method: &str, path: &str) -> Result<Value> {
        let mut s = TcpStream::connect(&self.addr)
            .with_context(|| format!("connecting to the simulator at {}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .context("reading the simulator's answer")?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("malformed HTTP answer from the simulator")?;
        let status = head.split_whitespace().nth(1).unwrap_or("?");
        if !status.starts_with('2') {
            bail!("{method} {path} answered {status}");
        }
        if status == "204" || body.trim().is_empty() {
            return Ok(Value::Null);
        }
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)?
        } else {
            body.to_owned()
        };
        serde_json::from_str(&body).with_context(|| format!("decoding {path}"))
    }

    pub(super) fn stats(&self) -> Result<Value> {
        self.http("GET", "/__sim/stats")
    }

    pub(super) fn post(&self, path: &str) -> Result<()> {
        self.http("POST", path).map(|_| ())
    }

    pub(super) fn cpu_secs(&self, clk_tck: f64) -> f64 {
        proc_cpu_secs(self.child.id(), clk_tck).unwrap_or(f64::NAN)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(body: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, tail) = rest.split_once("\r\n").context("bad chunk")?;
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = tail.get(..n).context("short chunk")?;
        out.push_str(chunk);
        rest = tail.get(n + 2..).unwrap_or("");
    }
}

/// How many requests of `endpoints` (`query`, `batch`) the simulator logged, and the seconds
/// from the first one's arrival to the last response (arrival plus `elapsed_us`).
pub(super) fn api_phase(log: &Value, endpoints: &[&str]) -> Option<(u64, f64)> {
    let spans: Vec<(f64, f64)> = log
        .as_array()?
        .iter()
        .filter(|r| {
            r["endpoint"]
                .as_str()
                .is_some_and(|e| endpoints.contains(&e))
        })
        .filter_map(|r| {
            let at = r["at"].as_str().and_then(rfc3339_secs)?;
            let elapsed = r["elapsed_us"].as_u64().unwrap_or(0) as f64 / 1e6;
            Some((at, at + elapsed))
        })
        .collect();
    let first = spans.iter().map(|s| s.0).reduce(f64::min)?;
    let last = spans.iter().map(|s| s.1).reduce(f64::max)?;
    Some((spans.len() as u64, last - first))
}

/// Seconds since the Unix epoch of a UTC RFC 3339 timestamp (`2026-01-31T23:59:59.123456Z`).
fn rfc3339_secs(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, clock) = s.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut c = clock.split(':');
    let (h, min) = (
        c.next()?.parse::<f64>().ok()?,
        c.next()?.parse::<f64>().ok()?,
    );
    let sec: f64 = c.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// All responses of one simulator endpoint (`query`, `token`, ...).
pub(super) fn endpoint_total(stats: &Value, endpoint: &str) -> u64 {
    stats["by_endpoint"][endpoint]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(dechunk("4\r\nab\"}\r\n0\r\n\r\n").unwrap(), "ab\"}");
        assert_eq!(dechunk("2\r\n{}\r\n1\r\n \r\n0\r\n\r\n").unwrap(), "{} ");
    }

    #[test]
    fn endpoint_totals_sum_statuses() {
        let v = json!({"by_endpoint": {"query": {"200": 7, "429": 2}, "token": {"200": 1}}});
        assert_eq!(endpoint_total(&v, "query"), 9);
        assert_eq!(endpoint_total(&v, "cdc"), 0);
    }

    #[test]
    fn timestamps_and_spans() {
        assert_eq!(rfc3339_secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339_secs("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(rfc3339_secs("2024-02-29T12:00:00+01:00"), None);
        let log = json!([
            {"endpoint": "token", "at": "2026-01-01T00:00:00Z"},
            {"endpoint": "query", "at": "2026-01-01T00:00:01Z"},
            {"endpoint": "query", "at": "2026-01-01T00:00:03.5Z", "elapsed_us": 250_000},
        ]);
        assert_eq!(api_phase(&log, &["query"]), Some((2, 2.75)));
        assert_eq!(api_phase(&json!([]), &["query"]), None);
    }
}
