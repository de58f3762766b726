//! `serve`: the read-only status page and `/metrics` of the ledger (crate `status-page`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use raw_sink::{PgConfig, Sink};
use status_page::{Access, Scope, Source};

use crate::entity::{ENTITIES, EntityInfo};
use crate::{Entity, Error, ExitStatus};

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; a non-loopback one needs --auth-token-file.
    #[arg(long, value_name = "ADDR", default_value_t = status_page::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// File holding the access token every request must then carry
    /// (Authorization: Bearer <token>).
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// How many of the latest runs the page lists.
    #[arg(long, default_value = "50")]
    pub runs: u32,
}

/// The entities a binary's page covers: every built-in one, and its own should it not be.
pub(super) fn entities<E: Entity>() -> Vec<EntityInfo> {
    let mut entities = ENTITIES.to_vec();
    if !entities.contains(&EntityInfo::of::<E>()) {
        entities.push(EntityInfo::of::<E>());
    }
    entities
}

/// `serve`: checks the access rule, applies pending migrations, then serves until SIGINT or
/// SIGTERM.
pub(super) async fn serve_cmd(
    args: &ServeArgs,
    entities: Vec<EntityInfo>,
) -> Result<ExitStatus, Error> {
    // The access rule is checked before anything else: a refused address touches nothing.
    let access = Access::for_listen(args.listen, args.auth_token_file.as_deref())
        .map_err(Error::StatusPage)?;
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let scope = Scope {
        sources: entities
            .iter()
            .map(|e| Source::new(e.pipeline, e.name, e.table))
            .collect(),
        runs_limit: args.runs,
    };
    let server = status_page::bind(args.listen, sink, scope, access)
        .await
        .map_err(Error::StatusPage)?;
    let addr = server.local_addr();
    tracing::info!(listen = %addr, "status_page_listening");
    println!("status page: http://{addr}/ (metrics: http://{addr}/metrics)");
    server.run(stop_signal()).await.map_err(Error::StatusPage)?;
    Ok(ExitStatus::Success)
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Command, parse};

    #[test]
    fn serve_subcommand_parses() {
        let cli = parse(&["serve"]).unwrap();
        let Some(Command::Serve(s)) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.listen, status_page::DEFAULT_LISTEN);
        assert!(s.auth_token_file.is_none());
        let cli = parse(&[
            "serve",
            "--listen",
            "0.0.0.0:9000",
            "--auth-token-file",
            "/run/secrets/t",
        ])
        .unwrap();
        let Some(Command::Serve(s)) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.listen.port(), 9000);
        assert!(parse(&["serve", "--listen", "localhost"]).is_err());
    }
}
