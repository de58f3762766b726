//! The peers' environment: a Python 3.11, the pinned venvs, the throwaway CA and the TLS
//! proxy that answers for Intuit's hosts from the simulator.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::super::sim::Sim;
use super::{Ctx, sim_var};

/// The throwaway CA and the Intuit hosts' certificate and key.
pub(super) struct Tls {
    pub(super) ca: PathBuf,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

pub(super) fn find_python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PEERS_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    // The pins were made with CPython 3.11 (airbyte-cdk 4 and pipelinewise need < 3.12).
    let pyenv = PathBuf::from("/root/.pyenv/versions/3.11.7/bin/python3.11");
    if pyenv.is_file() {
        return Ok(pyenv);
    }
    for name in ["python3.11", "python3"] {
        if let Ok(o) = Command::new(name).arg("--version").output()
            && o.status.success()
        {
            return Ok(PathBuf::from(name));
        }
    }
    bail!("no Python 3.11 found (set PEERS_PYTHON to one)")
}

/// Creates `target/peers/<name>-venv` from the pinned requirements unless it already holds
/// exactly them.
pub(super) fn ensure_venv(root: &Path, peers_dir: &Path, python: &Path, name: &str) -> Result<()> {
    let reqs = root
        .join("xtask")
        .join("peers")
        .join("requirements")
        .join(format!("{name}.txt"));
    let pinned =
        fs::read_to_string(&reqs).with_context(|| format!("reading {}", reqs.display()))?;
    let venv = peers_dir.join(format!("{name}-venv"));
    let marker = venv.join(".qb-bench-requirements");
    if fs::read_to_string(&marker).is_ok_and(|m| m == pinned) {
        return Ok(());
    }
    eprintln!(
        "xtask bench peers: installing {name} into {} (pinned in {})",
        venv.display(),
        reqs.display()
    );
    let started = Instant::now();
    if !venv.join("bin").join("python").is_file() {
        let st = Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .with_context(|| format!("running {} -m venv", python.display()))?;
        if !st.success() {
            bail!("creating the venv {} failed", venv.display());
        }
    }
    let st = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--disable-pip-version-check", "-q", "-r"])
        .arg(&reqs)
        .status()
        .context("running pip")?;
    if !st.success() {
        bail!("pip install -r {} failed", reqs.display());
    }
    fs::write(&marker, pinned)?;
    eprintln!(
        "xtask bench peers: {name} installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A throwaway CA and a certificate for the Intuit hosts under `target/peers/tls/`, the CA
/// appended to the certifi bundle of the proxied peers' venvs.
pub(super) fn ensure_tls(peers_dir: &Path, venvs: &[&str]) -> Result<Tls> {
    let dir = peers_dir.join("tls");
    fs::create_dir_all(&dir)?;
    let tls = Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("intuit.pem"),
        key: dir.join("intuit.key"),
    };
    if !(tls.ca.is_file() && tls.cert.is_file() && tls.key.is_file()) {
        let ca_key = dir.join("ca.key");
        let csr = dir.join("intuit.csr");
        let ext = dir.join("intuit.ext");
        fs::write(
            &ext,
            "subjectAltName=DNS:quickbooks.api.intuit.com,DNS:sandbox-quickbooks.api.intuit.com,DNS:oauth.platform.intuit.com\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        let openssl = |args: &[&str]| -> Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .context("running openssl (apt-get install -y openssl)")?;
            if !out.status.success() {
                bail!(
                    "openssl {} failed: {}",
                    args.first().unwrap_or(&""),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "365",
            "-subj",
            "/CN=qb-backfill bench throwaway CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "intuit.key",
            "-out",
            "intuit.csr",
            "-subj",
            "/CN=quickbooks.api.intuit.com",
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "intuit.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "intuit.pem",
            "-days",
            "365",
            "-extfile",
            "intuit.ext",
        ])?;
        let _ = fs::remove_file(csr);
        let _ = fs::remove_file(ext);
        let _ = ca_key;
    }
    let ca = fs::read_to_string(&tls.ca)?;
    for v in venvs
        .iter()
        .filter(|v| matches!(**v, "airbyte-source" | "singer-tap"))
    {
        let py = peers_dir
            .join(format!("{v}-venv"))
            .join("bin")
            .join("python");
        let out = Command::new(&py)
            .args(["-c", "import certifi; print(certifi.where())"])
            .output()
            .with_context(|| format!("asking {} for certifi's bundle", py.display()))?;
        if !out.status.success() {
            bail!("{v}: certifi is not importable");
        }
        let bundle = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let text = fs::read_to_string(&bundle)?;
        if !text.contains(ca.trim()) {
            let mut t = text;
            if !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str("# qb-backfill bench peers: throwaway CA of xtask/peers/intuit_proxy.py\n");
            t.push_str(&ca);
            fs::write(&bundle, t).with_context(|| format!("writing {}", bundle.display()))?;
        }
    }
    Ok(tls)
}

/// The TLS proxy process (killed when dropped).
pub(super) struct Proxy {
    child: Child,
    pub(super) port: u16,
}

impl Proxy {
    pub(super) fn start(ctx: &Ctx<'_>, sim: &Sim, tls: &Tls, mode: &str) -> Result<Proxy> {
        let base = sim_var(sim, "QBO_BASE_URL")?;
        let addr = base.trim_start_matches("http://").trim_end_matches('/');
        let log = fs::File::create(
            ctx.env
                .out_dir
                .join("logs")
                .join(format!("peers-proxy-{mode}.log")),
        )?;
        let mut child = Command::new(&ctx.python)
            .arg(
                ctx.env
                    .root
                    .join("xtask")
                    .join("peers")
                    .join("intuit_proxy.py"),
            )
            .arg(addr)
            .arg(&tls.cert)
            .arg(&tls.key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting intuit_proxy.py")?;
        let mut out = child.stdout.take().context("proxy stdout")?;
        let mut line = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut byte = [0u8; 1];
        while Instant::now() < deadline {
            match std::io::Read::read(&mut out, &mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&line);
        let port = text
            .trim()
            .strip_prefix("PORT=")
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => Ok(Proxy { child, port }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("intuit_proxy.py printed {text:?} instead of PORT=<n>")
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
