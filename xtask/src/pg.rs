//! A throwaway PostgreSQL cluster for tests, the demo and benchmarks.
//!
//! The cluster lives in `target/xtask-pg/` (or a temp directory when the `postgres` user cannot
//! reach the checkout), listens on 127.0.0.1 on a free port, trusts local connections and runs
//! with fsync off: it is for throwaway data only.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Where a cluster lives and which binaries drive it.
pub(crate) struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    as_root: bool,
}

impl Cluster {
    /// Locates the PostgreSQL binaries and the cluster directory.
    pub(crate) fn locate(workspace: &Path) -> Result<Self> {
        let bin = find_pg_bin()?;
        let as_root = is_root()?;
        let mut dir = workspace.join("target").join("xtask-pg");
        if as_root && !postgres_can_reach(workspace)? {
            // e.g. a checkout under /root: the unprivileged user cannot traverse it.
            dir = std::env::temp_dir().join(format!("qb-backfill-pg-{}", path_tag(workspace)));
        }
        Ok(Self { dir, bin, as_root })
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn port_file(&self) -> PathBuf {
        self.dir.join("port")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The connection URL of the running cluster, if it runs.
    pub(crate) fn url(&self) -> Result<Option<String>> {
        if !self.is_running()? {
            return Ok(None);
        }
        let port = fs::read_to_string(self.port_file())
            .with_context(|| format!("reading {}", self.port_file().display()))?;
        Ok(Some(format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            port.trim()
        )))
    }

    /// Whether the cluster's postmaster answers.
    pub(crate) fn is_running(&self) -> Result<bool> {
        if !self.data().join("PG_VERSION").exists() {
            return Ok(false);
        }
        let status = self
            .pg_command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running pg_ctl status")?;
        Ok(status.success())
    }

    /// Starts a fresh cluster (or reuses the running one) and returns its URL.
    pub(crate) fn start(&self) -> Result<String> {
        if let Some(url) = self.url()? {
            return Ok(url);
        }
        // A stopped cluster is throwaway: begin from a clean directory.
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing stale {}", self.dir.display()))?;
        }
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        if self.as_root {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&self.dir))?;
        }
        run(self
            .pg_command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .stdout(Stdio::null()))?;

        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let opts = format!(
                "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 \
                 -c shared_buffers=256MB -c max_wal_size=4GB",
                sock = self.dir.display()
            );
            let status = self
                .pg_command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.log_file())
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .stdout(Stdio::null())
                .status()
                .context("running pg_ctl start")?;
            if status.success() {
                fs::write(self.port_file(), port.to_string())
                    .with_context(|| format!("writing {}", self.port_file().display()))?;
                return Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"));
            }
            last_err = Some(port);
        }
        let log = fs::read_to_string(self.log_file()).unwrap_or_default();
        bail!(
            "PostgreSQL did not start (last port tried: {:?}); its log says:\n{log}",
            last_err
        )
    }

    /// Stops the cluster and deletes its data.
    pub(crate) fn stop(&self) -> Result<()> {
        if self.is_running()? {
            run(self
                .pg_command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null()))?;
        }
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// `psql` beside `initdb` (following a symlinked `initdb` to its real directory), else the
    /// one on PATH.
    fn psql_exe(&self) -> PathBuf {
        let beside = self.bin.join("psql");
        if beside.is_file() {
            return beside;
        }
        fs::canonicalize(self.bin.join("initdb"))
            .ok()
            .and_then(|real| real.parent().map(|d| d.join("psql")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"))
    }

    /// Runs each statement with `psql` (as the connecting user, not as `postgres`) on `url`.
    pub(crate) fn psql(&self, url: &str, statements: &[&str]) -> Result<()> {
        let mut cmd = Command::new(self.psql_exe());
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
        for s in statements {
            cmd.args(["-c", s]);
        }
        run(cmd.arg(url).stdout(Stdio::null()))
    }

    /// The single value `sql` returns, as text.
    pub(crate) fn psql_value(&self, url: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.psql_exe())
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(url)
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql -c {sql:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A command for one of the PostgreSQL binaries, run as `postgres` when we are root.
    fn pg_command(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed with {status}", cmd);
    }
    Ok(())
}

/// Finds the directory holding `initdb` and `pg_ctl`: PATH first, then Debian's layout.
fn find_pg_bin() -> Result<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
             /usr/lib/postgresql; install them with: apt-get install -y postgresql"
        ),
    }
}

fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn postgres_can_reach(dir: &Path) -> Result<bool> {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .context("running runuser (needed to start PostgreSQL as root)")?;
    Ok(status.success())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn path_tag(path: &Path) -> String {
    // A stable, short tag so two checkouts never share a cluster directory.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
