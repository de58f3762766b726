use std::process::{Command, Output, Stdio};

use qbo_sim::{Sim, SimHandle};
use raw_sink::testing::TestDb;
use time::macros::datetime;

pub const BIN: &str = env!("CARGO_BIN_EXE_qb-backfill");

/// Customers, items, vendors and invoices over ten days of January 2023.
pub async fn sim() -> SimHandle {
    Sim::builder()
        .seed(8)
        .customers(120)
        .items(60)
        .vendors(30)
        .invoices(500)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-11 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap()
}

/// The URL of a test database: `DATABASE_URL` with the database name replaced.
pub fn db_url(db: &TestDb) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL");
    let (head, tail) = match base.split_once('?') {
        Some((h, t)) => (h.to_owned(), format!("?{t}")),
        None => (base.clone(), String::new()),
    };
    let cut = head.rfind('/').unwrap();
    format!("{}/{}{}", &head[..cut], db.name(), tail)
}

/// `qb-backfill ARGS` with a clean environment holding only the QBO and database settings.
pub fn command(sim: &SimHandle, database_url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("QBO_CLIENT_ID", sim.client_id())
        .env("QBO_CLIENT_SECRET", sim.client_secret())
        .env("QBO_REFRESH_TOKEN", sim.refresh_token())
        .env("QBO_REALM_ID", sim.realm_id())
        .env("QBO_ENV", "sandbox")
        .env("QBO_BASE_URL", sim.base_url())
        .env("QBO_TOKEN_URL", sim.token_url())
        .env("DATABASE_URL", database_url)
        .env("PG_CONNECT_TIMEOUT", "3")
        .args(args)
        .stdin(Stdio::null());
    c
}

pub async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs and asserts the exit code, showing the output when it differs.
pub async fn run_expect(c: Command, code: i32) -> Output {
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    o
}
