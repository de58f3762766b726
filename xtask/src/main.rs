//! `cargo xtask`: qb-backfill's development chores, in Rust.
//!
//! ```text
//! cargo xtask pg start|stop|status|url   throwaway PostgreSQL cluster under target/
//! cargo xtask test                       fmt, clippy, the whole test suite, the small demo, advisories
//! cargo xtask demo [--small]             the main job end to end on PostgreSQL + qbo-sim
//! cargo xtask mage                       the Mage project's pipelines headless (a step of test)
//! ```

mod bench;
mod demo;
mod mage;
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  pg start     start a throwaway PostgreSQL cluster (127.0.0.1, free port, fsync off) and print its URL
  pg stop      stop it and delete its data
  pg status    say whether it runs, and its URL
  pg url       print its URL (fails when it does not run)
  demo         the main job end to end: throwaway PostgreSQL + qbo-sim, the pipelines over a sample
               company, the volumetry report, a forced re-run; `--small`, `--out DIR`, `--keep`
  mage         the Mage project (integrations/mage) headless against qbo-sim and the throwaway
               cluster (or DATABASE_URL's): pinned mage-ai in a cached venv under target/, rows, skips, failures, secrets
  test         the full check: cargo fmt --check, clippy -D warnings, the test suite against a
               throwaway cluster (DATABASE_URL), `demo --small`, `mage`, and the offline RustSec
               advisory check
  bench        performance scenarios (ingest, api, sparse, rerun, scale); `cargo xtask bench --help`
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[&str]) -> Result<ExitCode> {
    let root = workspace_root()?;
    match args {
        ["pg", sub] => {
            let cluster = pg::Cluster::locate(&root)?;
            match *sub {
                "start" => println!("{}", cluster.start()?),
                "stop" => cluster.stop()?,
                "status" => match cluster.url()? {
                    Some(url) => println!("running: {url}"),
                    None => println!("not running"),
                },
                "url" => match cluster.url()? {
                    Some(url) => println!("{url}"),
                    None => bail!(
                        "the throwaway cluster is not running; start it with `cargo xtask pg start`"
                    ),
                },
                other => bail!("unknown pg task `{other}`\n{USAGE}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ["test"] => test(&root),
        ["mage"] => {
            // A cluster given by DATABASE_URL (its admin database) is used as it is.
            if let Ok(url) = std::env::var("DATABASE_URL") {
                let checked = mage_step(&root, &url);
                return Ok(if checked.ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let cluster = pg::Cluster::locate(&root)?;
            let was_running = cluster.is_running()?;
            let url = cluster.start()?;
            let checked = mage_step(&root, &url);
            if !was_running && let Err(e) = cluster.stop() {
                eprintln!("xtask: stopping the throwaway cluster failed: {e:#}");
            }
            Ok(if checked.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ["demo", "--help" | "-h"] => {
            print!("{}", demo::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        ["demo", rest @ ..] => {
            demo::demo(&root, &demo::Options::parse(rest)?)?;
            Ok(ExitCode::SUCCESS)
        }
        ["bench", rest @ ..] => bench::bench(&root, rest),
        [] | ["help"] | ["--help"] | ["-h"] => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("unknown task {args:?}\n{USAGE}"),
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}

/// One named step of `cargo xtask test` and whether it passed.
struct Step {
    name: &'static str,
    ok: bool,
}

fn test(root: &Path) -> Result<ExitCode> {
    let cluster = pg::Cluster::locate(root)?;
    let was_running = cluster.is_running()?;
    let url = cluster.start()?;
    eprintln!("xtask: PostgreSQL for tests at {url}");

    let steps = run_checks(root, &url);

    if !was_running && let Err(e) = cluster.stop() {
        eprintln!("xtask: stopping the throwaway cluster failed: {e:#}");
    }

    let steps = steps?;
    eprintln!("\nxtask test summary:");
    for s in &steps {
        eprintln!("  {:<12} {}", s.name, if s.ok { "ok" } else { "FAILED" });
    }
    // The closing line CI reads: the test suite's own totals, from nextest's JUnit report.
    if let Some((passed, failed)) = junit_totals(root) {
        println!("tests: {passed} passed, {failed} failed");
    }
    if steps.iter().all(|s| s.ok) {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// `(passed, failed)` from the JUnit report of the last nextest run, when there is one.
fn junit_totals(root: &Path) -> Option<(u64, u64)> {
    let xml = std::fs::read_to_string(root.join("target/nextest/default/junit.xml")).ok()?;
    let head = &xml[xml.find("<testsuites")?..];
    let head = &head[..head.find('>')?];
    let attr = |name: &str| -> Option<u64> {
        let at = head.find(&format!(" {name}=\""))? + name.len() + 3;
        head[at..].split('"').next()?.parse().ok()
    };
    let tests = attr("tests")?;
    let failed = attr("failures")? + attr("errors").unwrap_or(0);
    let skipped = attr("skipped").unwrap_or(0);
    Some((tests.saturating_sub(failed + skipped), failed))
}

fn run_checks(root: &Path, database_url: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let mut fmt = Command::new(&cargo);
    fmt.args(["fmt", "--all", "--check"]);
    steps.push(step("fmt", &mut fmt, root)?);

    let mut clippy = Command::new(&cargo);
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    steps.push(step("clippy", &mut clippy, root)?);

    let mut tests = Command::new(&cargo);
    if has_nextest(&cargo) {
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]);
    } else {
        tests.args(["test", "--workspace", "--locked", "--no-fail-fast"]);
    }
    tests.env("DATABASE_URL", database_url);
    // A report left by an earlier run must not stand in for this one.
    let _ = std::fs::remove_file(root.join("target/nextest/default/junit.xml"));
    steps.push(step("tests", &mut tests, root)?);

    // Doc tests are not run by nextest; run them (they are quick) so crate examples stay true.
    let mut doctests = Command::new(&cargo);
    doctests.args(["test", "--workspace", "--locked", "--doc"]);
    doctests.env("DATABASE_URL", database_url);
    steps.push(step("doctests", &mut doctests, root)?);

    // The README's first command, end to end on the small sample, checking its own evidence.
    eprintln!("\nxtask: == demo --small ==");
    let demo = demo::Options {
        small: true,
        out: root.join("target/demo-small-evidence"),
        keep: true,
        // Nothing may outlive the test run.
        serve: false,
    };
    let ok = match demo::demo(root, &demo) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("xtask: demo --small failed: {e:#}");
            false
        }
    };
    steps.push(Step { name: "demo", ok });

    steps.push(mage_step(root, database_url));

    steps.push(advisories(root, &cargo)?);
    Ok(steps)
}

/// The Mage project's check ([`mage::check`]), reported like the other steps.
fn mage_step(root: &Path, database_url: &str) -> Step {
    eprintln!("\nxtask: == mage ==");
    let started = std::time::Instant::now();
    let ok = match mage::check(root, database_url) {
        Ok(checked) => {
            for c in &checked {
                println!("  ok  {c}");
            }
            true
        }
        Err(e) => {
            eprintln!("xtask: the Mage check failed: {e:#}");
            false
        }
    };
    eprintln!(
        "xtask: mage step took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Step { name: "mage", ok }
}

fn step(name: &'static str, cmd: &mut Command, root: &Path) -> Result<Step> {
    eprintln!("\nxtask: == {name} ==");
    let status = cmd
        .current_dir(root)
        .status()
        .with_context(|| format!("running the {name} step"))?;
    Ok(Step {
        name,
        ok: status.success(),
    })
}

fn has_nextest(cargo: &str) -> bool {
    Command::new(cargo)
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo deny --offline check advisories` against the offline RustSec snapshot in `../shared`.
fn advisories(root: &Path, cargo: &str) -> Result<Step> {
    eprintln!("\nxtask: == advisories ==");
    let tool = root.join("../shared/tools/advisory-db");
    if !tool.is_file() {
        eprintln!(
            "xtask: {} is missing: the offline RustSec snapshot ships beside the checkout in shared/",
            tool.display()
        );
        return Ok(Step {
            name: "advisories",
            ok: false,
        });
    }
    let db_root = root.join("target/advisory-dbs");
    let out = Command::new("bash")
        .arg(&tool)
        .arg(&db_root)
        .current_dir(root)
        .output()
        .context("preparing the offline advisory database")?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return Ok(Step {
            name: "advisories",
            ok: false,
        });
    }
    let deny_ok = Command::new(cargo)
        .args(["deny", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !deny_ok {
        eprintln!(
            "xtask: cargo-deny is not installed; install it with: cargo install --locked cargo-deny"
        );
        return Ok(Step {
            name: "advisories",
            ok: false,
        });
    }
    // `--offline` keeps cargo-deny off the network for the advisory database, and also for the
    // crate metadata: fetch every platform's crates first (from the registry, which CI reaches).
    let fetched = Command::new(cargo)
        .args(["fetch", "--locked"])
        .current_dir(root)
        .status()
        .context("running cargo fetch")?;
    if !fetched.success() {
        return Ok(Step {
            name: "advisories",
            ok: false,
        });
    }
    let mut deny = Command::new(cargo);
    deny.args(["deny", "--offline", "check", "advisories"]);
    let status = deny
        .current_dir(root)
        .status()
        .context("running cargo deny")?;
    Ok(Step {
        name: "advisories",
        ok: status.success(),
    })
}
