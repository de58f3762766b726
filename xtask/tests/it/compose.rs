//! `docker-compose.yml` is checked by reading it: no Docker engine runs here, so this test is what
//! keeps its wiring (services, dependencies, healthcheck, secrets as files) honest.

use std::collections::BTreeSet;
use std::path::PathBuf;

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Resolves YAML merge keys (`<<: *anchor`), which Compose honours and yaml-rust2 leaves as keys.
fn merged(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = Hash::new();
            if let Some(base) = h.get(&Yaml::String("<<".into()))
                && let Yaml::Hash(b) = merged(base)
            {
                out.extend(b);
            }
            for (k, v) in h {
                if k.as_str() != Some("<<") {
                    out.insert(k.clone(), merged(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.iter().map(merged).collect()),
        other => other.clone(),
    }
}

fn compose() -> Yaml {
    let docs = YamlLoader::load_from_str(&repo_file("docker-compose.yml")).expect("valid YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    merged(&docs[0])
}

fn keys(y: &Yaml) -> BTreeSet<String> {
    y.as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

const PIPELINES: [&str; 8] = [
    "customers",
    "items",
    "invoices",
    "backfill",
    "demo-customers",
    "demo-items",
    "demo-invoices",
    "demo-backfill",
];

/// Variables that hold secrets: they may appear only as `X_FILE` pointing at a mounted secret.
const SECRET_VARS: [&str; 5] = [
    "PG_PASSWORD",
    "DATABASE_URL",
    "QBO_CLIENT_SECRET",
    "QBO_REFRESH_TOKEN",
    "QBO_CLIENT_ID",
];

#[test]
fn services_are_all_there() {
    let c = compose();
    let services = keys(&c["services"]);
    for s in ["postgres", "qbo-sim", "report", "mage", "mage-bins"]
        .iter()
        .chain(PIPELINES.iter())
    {
        assert!(services.contains(*s), "service {s} missing: {services:?}");
    }
}

#[test]
fn postgres_has_a_healthcheck_and_a_volume() {
    let c = compose();
    let pg = &c["services"]["postgres"];
    let test = strings(&pg["healthcheck"]["test"]);
    assert!(
        test.iter().any(|t| t.contains("pg_isready")),
        "healthcheck must run pg_isready: {test:?}"
    );
    let volumes = strings(&pg["volumes"]);
    let named = volumes
        .iter()
        .find(|v| v.ends_with(":/var/lib/postgresql/data"))
        .expect("a volume for the data directory");
    let name = named.split(':').next().unwrap();
    assert!(keys(&c["volumes"]).contains(name), "volume {name} declared");
    assert_eq!(
        pg["environment"]["POSTGRES_PASSWORD_FILE"].as_str(),
        Some("/run/secrets/pg_password")
    );
}

#[test]
fn pipelines_wait_for_a_healthy_database_and_reach_it_by_service_name() {
    let c = compose();
    for p in PIPELINES {
        let s = &c["services"][p];
        assert_eq!(
            s["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_healthy"),
            "{p} waits for postgres' healthcheck"
        );
        assert_eq!(
            s["environment"]["PG_HOST"].as_str(),
            Some("postgres"),
            "{p}"
        );
        assert_eq!(s["restart"].as_str(), Some("no"), "{p} is one-shot");
        let cmd = strings(&s["command"]);
        assert!(
            cmd.first()
                .is_some_and(|b| b.starts_with("qb-") && b.ends_with("-backfill")),
            "{p} runs a pipeline binary: {cmd:?}"
        );
    }
}

#[test]
fn the_simulator_and_its_pipelines_live_under_the_demo_profile() {
    let c = compose();
    for s in [
        "qbo-sim",
        "demo-customers",
        "demo-items",
        "demo-invoices",
        "demo-backfill",
    ] {
        assert_eq!(strings(&c["services"][s]["profiles"]), vec!["demo"], "{s}");
    }
    let demo = &c["services"]["demo-invoices"];
    assert!(
        demo["environment"]["QBO_BASE_URL"]
            .as_str()
            .is_some_and(|u| u.contains("//qbo-sim:")),
        "demo pipelines reach the simulator by service name"
    );
    assert!(keys(&demo["depends_on"]).contains("qbo-sim"));
    // The real pipelines never talk plain HTTP.
    assert!(c["services"]["invoices"]["environment"]["QBO_ALLOW_INSECURE_HTTP"].is_badvalue());
}

#[test]
fn secrets_are_files_never_values() {
    let c = compose();
    let declared = keys(&c["secrets"]);
    for name in &declared {
        let file = c["secrets"][name.as_str()]["file"].as_str();
        assert!(
            file.is_some_and(|f| f.starts_with("./secrets/")),
            "secret {name} comes from a file under ./secrets"
        );
    }
    for (name, svc) in c["services"].as_hash().unwrap() {
        let name = name.as_str().unwrap();
        let mounted: BTreeSet<String> = strings(&svc["secrets"]).into_iter().collect();
        for m in &mounted {
            assert!(declared.contains(m), "{name} mounts undeclared secret {m}");
        }
        let Some(env) = svc["environment"].as_hash() else {
            continue;
        };
        for (k, v) in env {
            let k = k.as_str().unwrap();
            assert!(
                !SECRET_VARS.contains(&k) && k != "POSTGRES_PASSWORD",
                "{name} sets secret variable {k} directly; use {k}_FILE"
            );
            if let Some(base) = k.strip_suffix("_FILE") {
                let path = v.as_str().unwrap_or_default();
                let secret = path.strip_prefix("/run/secrets/").unwrap_or_else(|| {
                    panic!("{name}: {k} must point into /run/secrets, not {path}")
                });
                assert!(
                    mounted.contains(secret),
                    "{name}: {k} reads secret {secret}, which the service does not mount ({base})"
                );
            }
        }
    }
}

#[test]
fn dockerfile_is_multi_stage_and_runs_as_a_non_root_user() {
    let d = repo_file("Dockerfile");
    let froms = d.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage build");
    let user = d
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    assert!(
        !matches!(user.trim(), "root" | "0"),
        "runtime user is not root"
    );
    for bin in [
        "qb-customers-backfill",
        "qb-items-backfill",
        "qb-invoices-backfill",
        "qb-backfill",
        "qbo-sim",
    ] {
        assert!(d.contains(bin), "the image ships {bin}");
    }
    assert!(
        d.contains("-p bin-backfill"),
        "the build stage builds the generic binary's package"
    );
    assert!(
        d.contains("mkdir /evidence && chown qb /evidence"),
        "the runtime user can write the evidence volume"
    );
}

#[test]
fn the_generic_pipeline_takes_its_entity_from_the_environment() {
    let c = compose();
    for (svc, default) in [
        ("backfill", "${QB_ENTITY:-}"),
        ("demo-backfill", "${QB_ENTITY:-Vendor}"),
    ] {
        let s = &c["services"][svc];
        assert_eq!(strings(&s["command"]), vec!["qb-backfill"], "{svc}");
        assert_eq!(
            s["environment"]["QB_ENTITY"].as_str(),
            Some(default),
            "{svc}"
        );
        // It keeps the shared pipeline settings (merged from the anchors).
        assert_eq!(
            s["environment"]["QBO_REFRESH_TOKEN_FILE"].as_str(),
            Some("/run/secrets/qbo_refresh_token"),
            "{svc}"
        );
    }
    assert!(
        c["services"]["demo-backfill"]["environment"]["QBO_BASE_URL"]
            .as_str()
            .is_some_and(|u| u.contains("//qbo-sim:"))
    );
}

#[test]
fn the_report_writes_evidence_to_a_volume_and_needs_no_qbo_secret() {
    let c = compose();
    let r = &c["services"]["report"];
    let cmd = strings(&r["command"]);
    assert_eq!(cmd.first().map(String::as_str), Some("qb-backfill"));
    assert!(cmd.iter().any(|a| a == "report"), "{cmd:?}");
    let out = cmd
        .iter()
        .skip_while(|a| *a != "--out")
        .nth(1)
        .expect("report --out DIR");
    let mount = strings(&r["volumes"])
        .into_iter()
        .find(|v| v.ends_with(&format!(":{out}")))
        .expect("a volume mounted at the --out directory");
    let volume = mount.split(':').next().unwrap();
    assert!(
        keys(&c["volumes"]).contains(volume),
        "volume {volume} declared"
    );
    assert_eq!(
        r["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert_eq!(r["environment"]["PG_HOST"].as_str(), Some("postgres"));
    assert_eq!(
        strings(&r["secrets"]),
        vec!["pg_password"],
        "least privilege"
    );
    assert_eq!(r["restart"].as_str(), Some("no"));
}

#[test]
fn no_secret_value_is_passed_on_a_command_line() {
    let c = compose();
    for (name, svc) in c["services"].as_hash().unwrap() {
        let cmd = strings(&svc["command"]);
        for flag in [
            "--client-id",
            "--client-secret",
            "--refresh-token",
            "--password",
        ] {
            assert!(
                !cmd.iter()
                    .any(|a| a == flag || a.starts_with(&format!("{flag}="))),
                "{name:?} passes {flag} by value; use the -file variant"
            );
        }
    }
}

#[test]
fn the_mage_profile_runs_the_project_with_secrets_loaded_at_start() {
    let c = compose();
    let mage = &c["services"]["mage"];
    let bins = &c["services"]["mage-bins"];
    assert_eq!(strings(&mage["profiles"]), vec!["mage"]);
    assert_eq!(strings(&bins["profiles"]), vec!["mage"]);

    // The image is the version the project pins and CI tests.
    let pin = repo_file("integrations/mage/requirements.txt")
        .lines()
        .find_map(|l| l.trim().strip_prefix("mage-ai==").map(str::to_owned))
        .expect("requirements.txt pins mage-ai");
    assert_eq!(
        mage["image"].as_str(),
        Some(format!("mageai/mageai:{pin}").as_str())
    );
    // The UI on :6789, loopback only.
    assert_eq!(strings(&mage["ports"]), vec!["127.0.0.1:6789:6789"]);
    // PostgreSQL by service name, once healthy; the binaries copied before Mage starts.
    assert_eq!(mage["environment"]["PG_HOST"].as_str(), Some("postgres"));
    assert_eq!(
        mage["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert_eq!(
        mage["depends_on"]["mage-bins"]["condition"].as_str(),
        Some("service_completed_successfully")
    );

    // The project and the binaries are mounted where the environment says.
    let volumes = strings(&mage["volumes"]);
    assert!(
        volumes.iter().any(|v| v == "./integrations/mage:/home/src"),
        "{volumes:?}"
    );
    let bin_dir = mage["environment"]["QB_BIN_DIR"].as_str().unwrap();
    let bin_volume = volumes
        .iter()
        .find(|v| v.split(':').nth(1) == Some(bin_dir))
        .unwrap_or_else(|| panic!("nothing mounted at QB_BIN_DIR {bin_dir}: {volumes:?}"));
    let volume_name = bin_volume.split(':').next().unwrap();
    assert!(keys(&c["volumes"]).contains(volume_name));
    assert!(
        strings(&bins["volumes"])
            .iter()
            .any(|v| v.starts_with(&format!("{volume_name}:"))),
        "mage-bins fills {volume_name}"
    );
    let copy = strings(&bins["command"]).join(" ");
    for b in [
        "qb-customers-backfill",
        "qb-items-backfill",
        "qb-invoices-backfill",
    ] {
        assert!(copy.contains(&format!("/usr/local/bin/{b}")), "{copy}");
    }

    // At every start the secret files become Mage Secrets, before Mage itself starts.
    let cmd = strings(&mage["command"]).join(" ");
    let load = cmd
        .find("set_secrets.py /home/src/qb_backfill --from-dir /run/secrets")
        .unwrap_or_else(|| panic!("secrets not loaded at start: {cmd}"));
    let start = cmd.find("mage start qb_backfill").expect("mage start");
    assert!(load < start, "{cmd}");
    assert!(
        cmd.contains("&&"),
        "Mage must not start when the secrets did not load: {cmd}"
    );
    // Every mounted secret but the owner's password is one the blocks read.
    let runner = repo_file("integrations/mage/qb_backfill/utils/qb_runner.py");
    let mounted = strings(&mage["secrets"]);
    for s in [
        "qbo_client_id",
        "qbo_client_secret",
        "qbo_refresh_token",
        "pg_password",
    ] {
        assert!(mounted.iter().any(|m| m == s), "{s} not mounted");
    }
    for m in mounted.iter().filter(|m| *m != "mage_owner_password") {
        assert!(
            runner.contains(&format!("'{m}': '")),
            "{m} is mounted but the blocks do not read it"
        );
    }
    // Auth stays on; the owner's password comes from a secret file, not the environment.
    assert_ne!(
        mage["environment"]["REQUIRE_USER_AUTHENTICATION"].as_str(),
        Some("0")
    );
    assert!(mage["environment"]["DEFAULT_OWNER_PASSWORD"].is_badvalue());
    assert!(cmd.contains("DEFAULT_OWNER_PASSWORD=\"$$(cat /run/secrets/mage_owner_password)\""));
    // The data directory is a volume, not the mounted project.
    assert_eq!(
        mage["environment"]["MAGE_DATA_DIR"].as_str(),
        Some("/mage-data")
    );
}
