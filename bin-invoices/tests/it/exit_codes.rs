use raw_sink::testing::TestDb;

use crate::common::*;

const RANGE: [&str; 4] = [
    "--fecha-inicio",
    "2023-01-01T00:00:00+00:00",
    "--fecha-fin",
    "2023-01-05T00:00:00+00:00",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_one_line_and_writes_nothing() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let dir = tempfile::tempdir().unwrap();
    let unreadable = dir.path().join("missing-secret");
    type Setup = Box<dyn Fn(&mut std::process::Command)>;
    let cases: Vec<(&str, Vec<&str>, Setup)> = vec![
        (
            "reversed range",
            vec!["--start", "2023-02-01", "--end", "2023-01-01"],
            Box::new(|_| {}),
        ),
        (
            "offset-less timestamp",
            vec!["--start", "2023-01-01T00:00:00", "--end", "2023-01-02"],
            Box::new(|_| {}),
        ),
        (
            "unknown flag",
            vec![
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-02",
                "--frobnicate",
            ],
            Box::new(|_| {}),
        ),
        (
            "bad window",
            vec![
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-02",
                "--window",
                "5h",
            ],
            Box::new(|_| {}),
        ),
        ("missing range", vec![], Box::new(|_| {})),
        (
            "trigger name with a terminal escape",
            vec![
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-02",
                "--trigger",
                "load\u{1b}[2J",
            ],
            Box::new(|_| {}),
        ),
        (
            "TxnDate on a partial day",
            vec![
                "--start",
                "2023-01-01T05:00:00Z",
                "--end",
                "2023-01-02",
                "--window-field",
                "TxnDate",
            ],
            Box::new(|_| {}),
        ),
        (
            "missing secret",
            RANGE.to_vec(),
            Box::new(|c| {
                c.env_remove("QBO_CLIENT_SECRET");
            }),
        ),
        (
            "unreadable secret file",
            RANGE.to_vec(),
            Box::new(move |c| {
                c.env_remove("QBO_CLIENT_SECRET")
                    .env("QBO_CLIENT_SECRET_FILE", &unreadable);
            }),
        ),
        (
            "secret twice",
            RANGE.to_vec(),
            Box::new(|c| {
                c.env("QBO_REFRESH_TOKEN_FILE", "/etc/hostname");
            }),
        ),
        (
            "no database settings",
            RANGE.to_vec(),
            Box::new(|c| {
                c.env_remove("DATABASE_URL");
            }),
        ),
        (
            "bad range from env",
            vec![],
            Box::new(|c| {
                c.env("FECHA_INICIO", "2023-01-01 00:00")
                    .env("FECHA_FIN", "2023-01-02");
            }),
        ),
    ];
    for (name, args, setup) in cases {
        let mut c = command(&sim, &url);
        c.args(&args);
        setup(&mut c);
        let o = output(c).await;
        let (out, err) = text(&o);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{name}: stdout {out} stderr {err}"
        );
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: expected one line, got {err}");
        assert!(lines[0].contains("error"), "{name}: {err}");
        assert!(
            !err.contains(&sim.client_secret()),
            "{name} leaked the secret"
        );
    }
    // Nothing was called or written.
    assert_eq!(sim.stats().total_requests, 0);
    let sink = db.sink().await;
    assert!(!has_schema(&sink, "backfill").await && !has_schema(&sink, "raw").await);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_exits_3_with_the_runbook() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let mut c = command(&sim, &db_url(&db));
    c.args(RANGE)
        .env("QBO_REFRESH_TOKEN", "AB11-not-a-valid-token");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("authentication failed") && last.contains("runbook"),
        "{last}"
    );
    assert!(!err.contains("AB11-not-a-valid-token"));
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_exits_5() {
    let sim = small_sim().await;
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut c = command(
        &sim,
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    );
    c.args(RANGE);
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
    assert_eq!(sim.stats().total_requests, 0);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_trigger_exits_4_and_triggers_subcommands() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let run = |extra: &[&str]| {
        let mut c = command(&sim, &url);
        c.args(RANGE)
            .args(["--trigger", "initial-load"])
            .args(extra);
        c
    };
    let o = output(run(&[])).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = output(run(&[])).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("already completed") && err.contains("--force"),
        "{err}"
    );
    let o = output(run(&["--force"])).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    let mut c = command(&sim, &url);
    c.args(["triggers", "list"]);
    let o = output(c).await;
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.lines()
            .any(|l| l.contains("initial-load") && l.starts_with("completed")),
        "{out}"
    );

    let mut c = command(&sim, &url);
    c.args(["triggers", "disable", "initial-load"]);
    assert_eq!(output(c).await.status.code(), Some(0));
    let o = output(run(&[])).await;
    assert_eq!(o.status.code(), Some(4));
    assert!(text(&o).1.contains("disabled"));
    let mut c = command(&sim, &url);
    c.args(["triggers", "disable", "no-such-trigger"]);
    assert_eq!(output(c).await.status.code(), Some(2));
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_dry_run_call_nothing() {
    let sim = small_sim().await;
    let mut c = command(&sim, "postgres://postgres@127.0.0.1:1/none");
    c.arg("--help");
    let o = output(c).await;
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.contains("Examples:") && out.contains("--fecha-inicio") && out.contains("Exit codes")
    );

    let mut c = command(&sim, "postgres://postgres@127.0.0.1:1/none");
    c.args([
        "--start",
        "2023-01-01T00:00:00-05:00",
        "--end",
        "2023-01-03",
        "--dry-run",
    ]);
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let windows: Vec<_> = out.lines().filter(|l| l.contains('\t')).collect();
    assert_eq!(
        windows,
        vec![
            "2023-01-01T05:00:00Z\t2023-01-02T00:00:00Z",
            "2023-01-02T00:00:00Z\t2023-01-03T00:00:00Z"
        ]
    );
    assert_eq!(sim.stats().total_requests, 0);
    sim.shutdown().await.unwrap();
}

/// Ledger rows that any start of a run writes (workers, runs) and the raw rows.
async fn footprint(sink: &raw_sink::Sink) -> (i64, i64, i64) {
    (
        count(sink, "SELECT count(*) FROM backfill.workers").await,
        count(sink, "SELECT count(*) FROM backfill.runs").await,
        count(sink, "SELECT count(*) FROM raw.qb_invoices").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_conflicts_and_completed_triggers_are_found_before_anything_is_written() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let run = |range: [&str; 4]| {
        let mut c = command(&sim, &url);
        c.args(range).args(["--trigger", "initial-load"]);
        c
    };
    assert_eq!(output(run(RANGE)).await.status.code(), Some(0));
    let sink = db.sink().await;
    let before = footprint(&sink).await;
    let requests = sim.stats().total_requests;

    // The same name for another range: exit 2, one line naming both ranges, nothing written.
    let other = [
        "--fecha-inicio",
        "2023-01-01T00:00:00+00:00",
        "--fecha-fin",
        "2023-01-07T00:00:00+00:00",
    ];
    let o = output(run(other)).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already used"), "{err}");
    // Completed: exit 4, nothing written either.
    let o = output(run(RANGE)).await;
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
    assert_eq!(footprint(&sink).await, before);
    assert_eq!(sim.stats().total_requests, requests);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_with_fractions_of_a_second_name_the_same_trigger_again() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let run = || {
        let mut c = command(&sim, &url);
        c.args([
            "--start",
            "2023-01-01T00:00:00.123456789Z",
            "--end",
            "2023-01-03T00:00:00.5+00:00",
        ]);
        c
    };
    assert_eq!(output(run()).await.status.code(), Some(0));
    // Not a conflict with its own stored (microsecond) copy: the trigger is recognised.
    let o = output(run()).await;
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_above_the_window_limit_exits_2_with_its_count() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let mut c = command(&sim, &db_url(&db));
    c.args([
        "--start",
        "2023-01-01",
        "--end",
        "2024-01-01",
        "--window",
        "1m",
    ]);
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("525600 windows") && err.contains("--window"),
        "{err}"
    );
    assert_eq!(sim.stats().total_requests, 0);
    assert!(!has_schema(&db.sink().await, "backfill").await);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_into_the_future_keeps_its_trigger_pending() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let run = || {
        let mut c = command(&sim, &url);
        c.args(["--start", "2023-01-01", "--end", "2099-01-01"]);
        c
    };
    let o = output(run()).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let sink = db.sink().await;
    let status = |sink: raw_sink::Sink| async move {
        let c = sink.pool().get().await.unwrap();
        c.query_one("SELECT status FROM backfill.triggers", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(status(sink.clone()).await, "pending");
    // The identical command runs again (it is not refused as completed).
    let o = output(run()).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(status(sink).await, "pending");
    assert_eq!(
        count(&db.sink().await, "SELECT count(*) FROM raw.qb_invoices").await,
        300
    );
    sim.shutdown().await.unwrap();
}

/// QBO's real fault bodies, as the simulator now sends them, reach the operator with their
/// true cause: never "rotate the refresh token" when the token is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_fault_bodies_end_with_their_true_cause() {
    use qbo_sim::ScriptedFault;
    let cases: [(ScriptedFault, i32, &str); 3] = [
        (ScriptedFault::NoSubscriptionAccess, 6, "subscription"),
        (ScriptedFault::RealmMismatch, 6, "QBO_REALM_ID"),
        (ScriptedFault::Forbidden3100, 6, "QBO_ENV"),
    ];
    for (fault, code, words) in cases {
        let sim = small_sim().await;
        let db = TestDb::new().await;
        // Every query answers with the fault (the client's retries and the forced refresh
        // included).
        sim.script(vec![fault; 40]);
        let mut c = command(&sim, &db_url(&db));
        c.args(RANGE);
        let o = output(c).await;
        let (_, err) = text(&o);
        let last = err.lines().last().unwrap_or_default();
        assert_eq!(o.status.code(), Some(code), "{fault:?}: {err}");
        assert!(last.contains(words), "{fault:?}: {last}");
        assert!(
            !last.contains("rotate"),
            "{fault:?} sent the operator to rotate: {last}"
        );
        sim.shutdown().await.unwrap();
    }
}

/// A 500 InternalServerError with code 3100 and an XML 504 are QBO's side: retried, the run
/// completes, and nothing says the access token was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_faults_with_auth_looking_codes_are_retried() {
    use qbo_sim::ScriptedFault;
    let sim = small_sim().await;
    let db = TestDb::new().await;
    sim.script(vec![
        ScriptedFault::InternalError3100,
        ScriptedFault::Status(504),
        ScriptedFault::InternalError3100,
    ]);
    let mut c = command(&sim, &db_url(&db));
    c.args(RANGE).env("RUST_LOG", "info");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(!err.contains("access token was refused"), "{err}");
    assert_eq!(sim.pending_script(), 0);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dedicated_binary_syncs_and_reconciles_its_entity() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let run = |args: &[&str]| {
        let mut c = command(&sim, &url);
        c.args(args);
        output(c)
    };
    // Before any backfill: nothing to keep current (exit 2, one line).
    let o = run(&["sync"]).await;
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("run the backfill first"),
        "{:?}",
        text(&o)
    );
    let o = run(&["--start", "2023-01-01", "--end", "2023-01-11"]).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let victim = sim.truth("Invoice")[5].id.clone();
    sim.delete("Invoice", &victim).unwrap();
    let o = run(&["sync"]).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("tombstoned 1"), "{:?}", text(&o));
    // --all belongs to the generic binary.
    let o = run(&["sync", "--all"]).await;
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    // Nothing is missing: reconcile tombstones nothing more.
    let o = run(&["reconcile"]).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("tombstoned 0"), "{:?}", text(&o));
    let sink = db.sink().await;
    let c = sink.pool().get().await.unwrap();
    let dead: Vec<String> = c
        .query(
            "SELECT id FROM raw.qb_invoices WHERE deleted_at_utc IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(dead, vec![victim]);
}
