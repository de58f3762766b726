use std::process::{Command, Output, Stdio};

use qbo_sim::{Sim, SimHandle};
use raw_sink::Sink;
use raw_sink::testing::TestDb;
use time::macros::datetime;

pub const BIN: &str = env!("CARGO_BIN_EXE_qb-invoices-backfill");

pub async fn sim_with(b: qbo_sim::SimBuilder) -> SimHandle {
    b.spawn().await.unwrap()
}

pub async fn small_sim() -> SimHandle {
    sim_with(Sim::builder().seed(4).invoices(300).span(
        datetime!(2023-01-01 00:00 UTC),
        datetime!(2023-01-11 00:00 UTC),
    ))
    .await
}

/// The URL of a test database: `DATABASE_URL` with the database name replaced.
pub fn db_url(db: &TestDb) -> String {
    let base =
        std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a PostgreSQL server");
    let (head, tail) = match base.split_once('?') {
        Some((h, t)) => (h.to_owned(), format!("?{t}")),
        None => (base.clone(), String::new()),
    };
    let cut = head.rfind('/').unwrap();
    format!("{}/{}{}", &head[..cut], db.name(), tail)
}

/// A command with a clean environment holding only the QBO and database settings.
pub fn command(sim: &SimHandle, database_url: &str) -> Command {
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

pub async fn has_schema(sink: &Sink, schema: &str) -> bool {
    let c = sink.pool().get().await.unwrap();
    c.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .unwrap()
        .is_some()
}

/// Whether a table exists (committed) yet, e.g. while a child process runs the migrations.
pub async fn has_table(sink: &Sink, table: &str) -> bool {
    let c = sink.pool().get().await.unwrap();
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0)
}

pub async fn count(sink: &Sink, sql: &str) -> i64 {
    let c = sink.pool().get().await.unwrap();
    c.query_one(sql, &[]).await.unwrap().get(0)
}
