use raw_sink::testing::TestDb;

use crate::common::*;

/// Loads three entities, forces one range again, and checks every figure of `report --out`
/// against direct SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_match_direct_sql() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let range = ["--start", "2023-01-01", "--end", "2023-01-11"];
    for entity in ["Customer", "Item", "Invoice"] {
        let mut args = vec!["--entity", entity];
        args.extend(range);
        run_expect(command(&sim, &url, &args), 0).await;
    }
    let mut forced = vec!["--entity", "Invoice", "--force"];
    forced.extend(range);
    run_expect(command(&sim, &url, &forced), 0).await;

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("evidence");
    let o = run_expect(
        command(&sim, &url, &["report", "--out", out_dir.to_str().unwrap()]),
        0,
    )
    .await;
    let (stdout, _) = text(&o);
    assert!(
        stdout.contains("raw.qb_invoices") && stdout.contains("500"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing moved"), "{stdout}");
    assert!(stdout.contains("report.json"), "{stdout}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["realm_id"], sim.realm_id());
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    for t in json["tables"].as_array().unwrap() {
        let table = t["table"].as_str().unwrap();
        let direct: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(t["rows"].as_i64(), Some(direct), "{table}");
    }
    for p in json["pipelines"].as_array().unwrap() {
        let v = &p["verification"];
        assert_eq!(v["windows"], 10, "{}", p["pipeline"]);
        assert_eq!(v["match"], 10, "{}", p["pipeline"]);
        assert_eq!(v["source_total"], v["loaded_total"]);
    }
    let runs: i64 = client
        .query_one("SELECT count(*) FROM backfill.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(json["runs"].as_array().unwrap().len() as i64, runs);
    let rerun = &json["reruns"][0];
    assert_eq!(rerun["pipeline"], "qb_invoices_backfill");
    assert_eq!(rerun["previous"]["inserted"], 500);
    assert_eq!(rerun["latest"]["inserted"], 0);
    assert_eq!(rerun["latest"]["updated"], 0);
    assert_eq!(rerun["latest"]["unchanged"], 500);
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("Every window matches its source COUNT."),
        "{md}"
    );
    let svg = std::fs::read_to_string(out_dir.join("rows_per_day.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("raw.qb_invoices"));

    // A window whose COUNT disagreed with what its attempt loaded turns the report red: exit 1
    // and the window listed first. (The evidence is the ledger's: what each attempt loaded
    // against the COUNT it took, not raw rows matched by their window columns.)
    client
        .execute(
            "UPDATE backfill.windows SET source_count = source_count + 1 \
             WHERE id = (SELECT min(id) FROM backfill.windows WHERE pipeline = 'qb_invoices_backfill')",
            &[],
        )
        .await
        .unwrap();
    let o = run_expect(command(&sim, &url, &["--entity", "invoice", "report"]), 1).await;
    let (stdout, _) = text(&o);
    assert!(
        stdout.contains("1 mismatch") && stdout.contains("PROBLEMS"),
        "{stdout}"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_realms_is_accepted_while_qbo_realm_id_is_set() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let dir = tempfile::tempdir().unwrap();
    // `command` sets QBO_REALM_ID, as a deployment's environment does.
    let o = run_expect(
        command(
            &sim,
            &url,
            &[
                "report",
                "--all-realms",
                "--out",
                dir.path().to_str().unwrap(),
            ],
        ),
        0,
    )
    .await;
    assert!(
        text(&o).1.is_empty() || !text(&o).1.contains("error"),
        "{:?}",
        text(&o)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["realm_id"], serde_json::Value::Null);
    // An explicit --realm with --all-realms is still contradictory.
    run_expect(
        command(&sim, &url, &["report", "--realm", "1", "--all-realms"]),
        2,
    )
    .await;
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_of_an_unreachable_database_exits_5() {
    let sim = sim().await;
    let o = run_expect(
        command(&sim, "postgres://nobody@127.0.0.1:1/none", &["report"]),
        5,
    )
    .await;
    assert!(text(&o).1.contains("cannot connect"), "{}", text(&o).1);
    sim.shutdown().await.unwrap();
}

/// The connections section: each company's expiries and days left, a warning under 30 days,
/// the same in text, Markdown and JSON as the published query says, and no token anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_warns_of_token_expiry_per_company() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    run_expect(
        command(
            &sim,
            &url,
            &[
                "--entity",
                "Customer",
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-11",
            ],
        ),
        0,
    )
    .await;
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    let realm = sim.realm_id();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("evidence");
    let report =
        |out: &std::path::Path| command(&sim, &url, &["report", "--out", out.to_str().unwrap()]);

    // Fresh from a refresh: ~100 and ~1825 days left, no warning.
    let o = run_expect(report(&out), 0).await;
    let (stdout, _) = text(&o);
    assert!(stdout.contains("connections (token expiry):"), "{stdout}");
    assert!(!stdout.contains("WARNING"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let c = &json["connections"][0];
    assert_eq!(c["realm_id"], realm.as_str());
    assert_eq!(c["expiring"], false);
    assert!(c["refresh_days_left"].as_i64().unwrap() >= 99, "{c}");
    assert!(c["hard_days_left"].as_i64().unwrap() >= 4 * 365, "{c}");

    // The grant 10 days (and a minute) from its hard expiry: warned everywhere.
    client
        .execute(
            "UPDATE backfill.oauth_tokens SET hard_expires_at = now() + interval '10 days 1 minute'",
            &[],
        )
        .await
        .unwrap();
    let o = run_expect(report(&out), 0).await;
    let (stdout, stderr) = text(&o);
    assert!(
        stdout.contains("WARNING: the connection (hard) expires in 10 days"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Connections (token expiry)"), "{md}");
    assert!(
        md.contains("(10 days)") && md.contains("**WARNING**"),
        "{md}"
    );
    let json_text = std::fs::read_to_string(out.join("report.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    let c = &json["connections"][0];
    assert_eq!(c["expiring"], true);
    assert_eq!(c["hard_days_left"], 10);
    assert_eq!(c["warnings"].as_array().unwrap().len(), 1, "{c}");
    // The figures are the published query's.
    let direct = client
        .query_one(raw_sink::volumetry::CONNECTIONS_SQL, &[&realm, &30i32])
        .await
        .unwrap();
    assert_eq!(
        c["refresh_days_left"].as_i64(),
        direct.get::<_, Option<i64>>("refresh_days_left")
    );
    assert!(direct.get::<_, bool>("expiring"));
    // Nothing secret in any of it.
    let token: String = client
        .query_one("SELECT refresh_token FROM backfill.oauth_tokens", &[])
        .await
        .unwrap()
        .get(0);
    for s in [token.as_str(), &sim.client_secret()] {
        assert!(!stdout.contains(s) && !stderr.contains(s) && !md.contains(s));
        assert!(!json_text.contains(s));
    }
    sim.shutdown().await.unwrap();
}
