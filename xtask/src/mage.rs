//! `cargo xtask mage`: the Mage project of `integrations/mage/` run headless against `qbo-sim`
//! and the throwaway PostgreSQL (also a step of `cargo xtask test`).
//!
//! Installs the pinned `mage-ai` (from `integrations/mage/requirements.txt`) into a venv under
//! `target/mage-venv-<version>`, reused while it is complete, runs the runner's unit tests
//! (`integrations/mage/tests`), sets the Mage Secrets with the project's own tool, and checks
//! with `mage run`: each of the three pipelines loads exactly the
//! simulator's rows; a second run of the same range is skipped through the binary's exit 4 and
//! succeeds; a missing variable and a failing binary fail the block with the message that says
//! why (the binary's own line for the latter); no secret set through the tool appears in Mage's
//! output or in anything under its data directory but its encrypted database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::demo::{self, Sample, SimProcess};
use crate::pg;

/// The simulator's company for the Mage check: small, the three pipelines' entities only.
const SAMPLE: Sample = Sample {
    customers: 60,
    items: 30,
    vendors: 5,
    invoices: 300,
    start: "2024-01-01",
    end: "2024-02-01",
    database: "qb_mage",
};

/// (pipeline, binary, raw table, rows the simulator holds).
fn pipelines() -> [(&'static str, &'static str, &'static str, u64); 3] {
    [
        (
            "qb_customers_backfill",
            "qb-customers-backfill",
            "raw.qb_customers",
            SAMPLE.customers,
        ),
        (
            "qb_items_backfill",
            "qb-items-backfill",
            "raw.qb_items",
            SAMPLE.items,
        ),
        (
            "qb_invoices_backfill",
            "qb-invoices-backfill",
            "raw.qb_invoices",
            SAMPLE.invoices,
        ),
    ]
}

/// The version pinned in `requirements.txt` (`mage-ai==X`).
fn pinned_version(integration: &Path) -> Result<String> {
    let path = integration.join("requirements.txt");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("mage-ai=="))
        .map(|v| v.trim().to_owned())
        .next()
        .with_context(|| format!("{} pins no mage-ai==VERSION", path.display()))
}

/// The venv holding the pinned Mage: created and installed when missing or incomplete.
fn venv(root: &Path, integration: &Path) -> Result<PathBuf> {
    let version = pinned_version(integration)?;
    let dir = root.join(format!("target/mage-venv-{version}"));
    // Written last: a venv whose install was interrupted has none and is installed again.
    let marker = dir.join(".qb-installed");
    if marker.is_file() && dir.join("bin/mage").is_file() {
        println!("reusing {} (mage-ai {version})", dir.display());
        return Ok(dir);
    }
    // mage-ai 0.9.80 is tested here on Python 3.11: prefer it when the machine has several.
    let python = std::env::var("PYTHON").unwrap_or_else(|_| {
        let has = |exe: &str| {
            Command::new(exe)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if has("python3.11") {
            "python3.11"
        } else {
            "python3"
        }
        .to_owned()
    });
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let started = Instant::now();
    let status = demo::run(
        Command::new(&python).args(["-m", "venv"]).arg(&dir),
        "creating the Mage venv",
    )?;
    ensure!(
        status.success(),
        "`{python} -m venv` failed (Debian: apt-get install python3-venv)"
    );
    let status = demo::run(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(integration.join("requirements.txt")),
        "installing mage-ai",
    )?;
    ensure!(status.success(), "pip install mage-ai=={version} failed");
    std::fs::write(&marker, &version).with_context(|| format!("writing {}", marker.display()))?;
    println!(
        "installed mage-ai {version} into {} in {:.0} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// One `mage run` and what it printed (stdout and stderr together).
struct Outcome {
    ok: bool,
    text: String,
}

impl Outcome {
    /// Whether the output holds `needle`, whitespace runs counted as one space (Mage's
    /// traceback panel wraps long messages).
    fn says(&self, needle: &str) -> bool {
        squash(&self.text).contains(&squash(needle))
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Everything a `mage run` of the check needs.
struct Mage<'a> {
    venv: PathBuf,
    project: PathBuf,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    sim: &'a SimProcess,
    log_dir: PathBuf,
}

impl Mage<'_> {
    /// A command of the venv with only what Mage and the binaries need: the simulator's
    /// non-secret settings. The secrets reach the blocks only through Mage Secrets.
    fn command(&self, exe: &str) -> Command {
        let mut c = Command::new(self.venv.join("bin").join(exe));
        c.env_clear();
        for keep in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Ok(v) = std::env::var(keep) {
                c.env(keep, v);
            }
        }
        for k in [
            "QBO_BASE_URL",
            "QBO_TOKEN_URL",
            "QBO_CLIENT_ID",
            "QBO_REALM_ID",
            "QBO_ENV",
        ] {
            c.env(k, self.sim.get(k));
        }
        c.env("MAGE_DATA_DIR", &self.data_dir)
            .env("QB_BIN_DIR", &self.bin_dir)
            // Wide enough that Mage's traceback panel keeps a message on one line.
            .env("COLUMNS", "400")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    /// `mage run` of `pipeline` with `vars` (a JSON object); its output is kept under the
    /// log directory as `<label>.log`.
    fn run(&self, label: &str, pipeline: &str, vars: &str) -> Result<Outcome> {
        let log = self.log_dir.join(format!("{label}.log"));
        let file = std::fs::File::create(&log)?;
        let mut c = self.command("mage");
        c.arg("run")
            .arg(&self.project)
            .arg(pipeline)
            .args(["--runtime-vars", vars])
            .stdout(file.try_clone()?)
            .stderr(file);
        let t = Instant::now();
        let status = demo::run(&mut c, &format!("mage run {pipeline} ({label})"))?;
        let text = std::fs::read_to_string(&log)?;
        println!(
            "  {label}: mage run {pipeline} {vars} -> {status} in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Ok(Outcome {
            ok: status.success(),
            text,
        })
    }
}

/// Runs the check on the cluster at `admin_url`; `Ok` lists what was checked.
pub(crate) fn check(root: &Path, admin_url: &str) -> Result<Vec<String>> {
    demo::install_interrupt_handler();
    let integration = root.join("integrations/mage");
    let started = Instant::now();
    let venv = venv(root, &integration)?;
    let venv_time = started.elapsed();

    // The runner's unit tests (no Mage needed), before the end-to-end runs.
    let status = demo::run(
        Command::new(venv.join("bin/python"))
            .args(["-m", "unittest", "discover", "-s"])
            .arg(integration.join("tests"))
            .current_dir(&integration),
        "the runner's unit tests",
    )?;
    ensure!(status.success(), "integrations/mage/tests failed");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = demo::run(
        Command::new(&cargo).current_dir(root).args([
            "build",
            "-p",
            "bin-customers",
            "-p",
            "bin-items",
            "-p",
            "bin-invoices",
            "-p",
            "qbo-sim",
        ]),
        "building the pipelines",
    )?;
    ensure!(status.success(), "cargo build failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin_dir = if target.is_absolute() {
        target
    } else {
        root.join(target)
    }
    .join("debug");

    let work = root.join("target/mage-check");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let (data_dir, secrets_dir, log_dir) = (
        work.join("mage-data"),
        work.join("secrets"),
        work.join("logs"),
    );
    for d in [&data_dir, &secrets_dir, &log_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    let cluster = pg::Cluster::locate(root)?;
    let database_url = demo::database_url(admin_url, SAMPLE.database)?;
    cluster.psql(
        admin_url,
        &[
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", SAMPLE.database),
            &format!("CREATE DATABASE {}", SAMPLE.database),
        ],
    )?;
    let sim = SimProcess::start(
        &bin_dir.join("qbo-sim"),
        &SAMPLE,
        &log_dir.join("qbo-sim.log"),
    )?;

    // The secrets, as files the tool reads (what the compose profile mounts).
    let secrets = [
        ("qbo_client_secret", sim.get("QBO_CLIENT_SECRET").to_owned()),
        ("qbo_refresh_token", sim.get("QBO_REFRESH_TOKEN").to_owned()),
        ("database_url", database_url.clone()),
    ];
    for (name, value) in &secrets {
        std::fs::write(secrets_dir.join(name), format!("{value}\n"))?;
    }
    let mage = Mage {
        venv,
        project: integration.join("qb_backfill"),
        data_dir,
        bin_dir,
        sim: &sim,
        log_dir,
    };
    let out = mage
        .command("python")
        .arg(integration.join("set_secrets.py"))
        .arg(&mage.project)
        .arg("--from-dir")
        .arg(&secrets_dir)
        .output()
        .context("running set_secrets.py")?;
    let tool_text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "set_secrets.py failed:\n{tool_text}");
    ensure!(
        tool_text.contains("set database_url, qbo_client_secret, qbo_refresh_token"),
        "set_secrets.py did not say it set the three secrets:\n{tool_text}"
    );
    let mut done = vec![format!(
        "mage-ai venv ready in {:.0} s; the runner's unit tests pass; secrets set with set_secrets.py --from-dir",
        venv_time.as_secs_f64()
    )];

    let range = format!(
        r#"{{"fecha_inicio": "{}", "fecha_fin": "{}"}}"#,
        SAMPLE.start, SAMPLE.end
    );
    let mut outputs = Vec::new();
    for (pipeline, binary, table, expected) in pipelines() {
        let o = mage.run(pipeline, pipeline, &range)?;
        ensure!(
            o.ok && o.says(&format!("{binary} succeeded (exit 0)")),
            "{pipeline} did not succeed:\n{}",
            o.text
        );
        // The binary's JSON lines reach the block log at their level.
        ensure!(
            o.says("INFO pipeline_finished pipeline=") && o.says("status=succeeded"),
            "{pipeline}: the binary's pipeline_finished line is not in the block log"
        );
        let rows = cluster.psql_value(&database_url, &format!("SELECT count(*) FROM {table}"))?;
        ensure!(
            rows == expected.to_string(),
            "{table} holds {rows} rows after {pipeline}, the simulator {expected}"
        );
        outputs.push(o);
    }
    done.push(
        "the three pipelines ran headless and each raw table holds exactly the simulator's rows"
            .into(),
    );

    let again = mage.run("customers-again", "qb_customers_backfill", &range)?;
    ensure!(
        again.ok
            && again.says("skipped, the trigger was already completed (exit 4)")
            && again.says("already completed"),
        "the second run was not a successful skip:\n{}",
        again.text
    );
    let rows = cluster.psql_value(&database_url, "SELECT count(*) FROM raw.qb_customers")?;
    ensure!(
        rows == SAMPLE.customers.to_string(),
        "the skip changed rows: {rows}"
    );
    let runs = cluster.psql_value(
        &database_url,
        "SELECT count(*) FROM backfill.runs WHERE pipeline = 'qb_customers_backfill'",
    )?;
    ensure!(runs == "1", "the skipped run recorded a run ({runs} runs)");
    done.push("a second run of the same range was skipped through exit 4 and succeeded".into());
    outputs.push(again);

    let missing = mage.run(
        "missing-variable",
        "qb_items_backfill",
        &format!(r#"{{"fecha_inicio": "{}"}}"#, SAMPLE.start),
    )?;
    ensure!(
        !missing.ok && missing.says("the runtime variable `fecha_fin` is missing"),
        "a run without fecha_fin did not fail with the missing variable's name:\n{}",
        missing.text
    );
    done.push("a run without fecha_fin failed its block naming the variable".into());
    outputs.push(missing);

    // A range that ends before it starts: the binary refuses it (exit 2) with one line, which
    // the block's failure must carry. The binary's own line, from running it directly.
    let (bad_start, bad_end) = ("2024-03-01", "2024-01-01");
    let direct = Command::new(mage.bin_dir.join("qb-invoices-backfill"))
        .env_clear()
        .args(["--fecha-inicio", bad_start, "--fecha-fin", bad_end])
        .stdin(Stdio::null())
        .output()
        .context("running qb-invoices-backfill directly")?;
    let stderr = String::from_utf8_lossy(&direct.stderr);
    let line = stderr
        .lines()
        .rfind(|l| l.contains("error:"))
        .with_context(|| format!("the binary printed no error line: {stderr}"))?;
    ensure!(
        direct.status.code() == Some(2),
        "the bad range exited {}",
        direct.status
    );
    let failing = mage.run(
        "failing-binary",
        "qb_invoices_backfill",
        &format!(r#"{{"fecha_inicio": "{bad_start}", "fecha_fin": "{bad_end}"}}"#),
    )?;
    ensure!(
        !failing.ok && failing.says("qb-invoices-backfill exited with 2") && failing.says(line),
        "a failing binary did not fail the block with its message {line:?}:\n{}",
        failing.text
    );
    done.push(format!(
        "a failing binary failed its block with its message: {line}"
    ));
    outputs.push(failing);

    // No secret anywhere Mage wrote, but its database (where Secrets are stored encrypted).
    let mut leaks = Vec::new();
    let mut files = Vec::new();
    walk(&mage.data_dir, &mut files)?;
    walk(&mage.project, &mut files)?;
    for f in files.iter().filter(|f| {
        f.extension().is_none_or(|e| e != "db") && !f.starts_with(mage.data_dir.join("secrets"))
    }) {
        let bytes = std::fs::read(f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for (name, value) in &secrets {
            if text.contains(value.as_str()) {
                leaks.push(format!("{name} in {}", f.display()));
            }
        }
    }
    for (o, i) in outputs.iter().zip(0..) {
        for (name, value) in &secrets {
            if o.text.contains(value.as_str()) {
                leaks.push(format!("{name} in the output of mage run #{i}"));
            }
        }
    }
    if !tool_text.is_empty() {
        for (name, value) in &secrets {
            if tool_text.contains(value.as_str()) {
                leaks.push(format!("{name} in set_secrets.py's output"));
            }
        }
    }
    if !leaks.is_empty() {
        bail!("secrets leaked: {}", leaks.join("; "));
    }
    done.push(format!(
        "no secret in Mage's output nor in the {} files under its data directory and the project",
        files.len()
    ));
    Ok(done)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_read_from_requirements() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations/mage");
        let v = pinned_version(&root).unwrap();
        assert!(v.split('.').all(|p| p.parse::<u32>().is_ok()), "{v}");
    }

    #[test]
    fn squashed_text_ignores_wrapping() {
        let o = Outcome {
            ok: false,
            text: "BackfillFailed: the runtime variable `fecha_fin` is\n   missing".into(),
        };
        assert!(o.says("the runtime variable `fecha_fin` is missing"));
        assert!(!o.says("fecha_inicio"));
    }
}
