//! `sync`: keeps a backfilled entity current (changed records, CDC deletions), one entity or,
//! with `--all` in `qb-backfill`, every entity backfilled in the company. Also the connection
//! set-up `reconcile` shares.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use qbo_client::{QboClient, QboConfig, RateLimit, RetryPolicy, TokenStore};
use raw_sink::{PgConfig, Sink};

use super::run::{RunArgs, TokenStoreSpec};
use crate::entity::ENTITIES;
use crate::entity::EntityInfo;
use crate::sync::{DEFAULT_OVERLAP, SyncConfig, SyncReport};
use crate::window::format_utc;
use crate::{Entity, Error, ExitStatus, Shutdown};

/// Options of `sync` and `reconcile`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Every entity already backfilled in this company (`qb-backfill` without `--entity`).
    #[arg(long)]
    pub all: bool,
    /// How far behind each mark a sync starts reading (QBO's eventual consistency), e.g.
    /// 10m, 1h.
    #[arg(long, value_parser = crate::parse_duration, default_value = "10m")]
    pub overlap: Duration,
}

impl SyncArgs {
    /// The sync's configuration: the run options' page size, `max_requests` calls at most,
    /// stopped by `shutdown`.
    pub(super) fn config(
        &self,
        run: &RunArgs,
        max_requests: Option<u64>,
        shutdown: &Shutdown,
    ) -> SyncConfig {
        SyncConfig {
            overlap: self.overlap,
            page_size: run.page_size,
            max_requests,
            shutdown: Some(shutdown.clone()),
        }
    }
}

/// The calls a sync or reconcile may spend: `--max-requests`, and under `--monthly-requests`
/// no more than what the app has left this month (the ledger's count of every run, sync and
/// reconcile of its companies); 0 when nothing is left (it then stops before its first call).
pub(super) async fn budget(run: &RunArgs, sink: &Sink) -> Result<Option<u64>, Error> {
    let Some(quota) = run.realms.monthly_requests else {
        return Ok(run.max_requests);
    };
    let app = QboConfig::from_env()
        .map_err(Error::QboConfig)?
        .credentials
        .client_id;
    let used = sink
        .ledger()
        .app_calls_this_month(&app)
        .await
        .map_err(Error::Database)?;
    let left = quota.saturating_sub(used);
    if left == 0 {
        tracing::warn!(
            used,
            quota,
            "monthly_budget_reached: the app's calls this month reached --monthly-requests; \
             run again next month (UTC) or with a larger budget"
        );
    }
    Ok(Some(run.max_requests.map_or(left, |m| m.min(left))))
}

impl Default for SyncArgs {
    fn default() -> Self {
        Self {
            all: false,
            overlap: DEFAULT_OVERLAP,
        }
    }
}

/// The QBO client and the migrated sink of a sync or reconcile, from the same settings as a
/// run (`QBO_*`, PostgreSQL, `--token-store`, `--requests-per-min`, `--max-in-flight`,
/// `--give-up-after` given before the subcommand).
pub(super) async fn connect(run: &RunArgs) -> Result<(QboClient, Sink), Error> {
    let qbo = QboConfig::from_env().map_err(Error::QboConfig)?;
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let token_key = crate::token_key_from_env()?;
    let file_store = match &run.token_store {
        TokenStoreSpec::File(path) => Some(
            crate::open_token_store(
                crate::TokenStoreLocation::File(path),
                &qbo.realm_id,
                token_key.clone(),
            )
            .await?,
        ),
        TokenStoreSpec::Db => None,
    };
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let store: Arc<dyn TokenStore> = match file_store {
        Some(store) => store,
        None => {
            crate::open_token_store(
                crate::TokenStoreLocation::Database(&sink),
                &qbo.realm_id,
                token_key,
            )
            .await?
        }
    };
    let client = QboClient::builder(qbo)
        .token_store(store)
        .rate_limit(RateLimit {
            per_minute: run.requests_per_min,
            max_concurrency: run.max_in_flight,
        })
        .retry_policy(RetryPolicy::default().with_give_up_after(run.give_up_after.as_duration()))
        .build()
        .map_err(Error::Qbo)?;
    Ok((client, sink))
}

fn print_sync(name: &str, r: &SyncReport) {
    let t = &r.row.tally;
    let marks = r
        .row
        .marks_after
        .map(|m| {
            format!(
                "; changes mark {}, deletions mark {}",
                format_utc(m.changes),
                format_utc(m.deletes)
            )
        })
        .unwrap_or_default();
    println!(
        "{} sync {}: inserted {}, updated {}, unchanged {}, tombstoned {} (CDC deletes refuted \
         by a read: {}), QBO calls {}{marks}{}",
        name,
        r.row.id,
        t.inserted,
        t.updated,
        t.unchanged,
        t.tombstoned,
        t.deletes_refuted,
        t.api_calls,
        if r.first {
            " (first sync: started from the backfill)"
        } else {
            ""
        }
    );
}

/// `sync` of entity `E`.
pub(super) async fn sync_cmd<E: Entity>(
    args: &SyncArgs,
    run: &RunArgs,
) -> Result<ExitStatus, Error> {
    if args.all {
        return Err(Error::Usage(
            "--all syncs every backfilled entity: use it with qb-backfill, without --entity".into(),
        ));
    }
    let (client, sink) = connect(run).await?;
    let shutdown = super::reliability::install_signal_handlers(E::PIPELINE);
    let max = budget(run, &sink).await?;
    let report = crate::sync::sync::<E>(&client, &sink, &args.config(run, max, &shutdown)).await?;
    print_sync(E::NAME, &report);
    Ok(ExitStatus::Success)
}

/// `qb-backfill sync --all`: every entity backfilled in the company, synced together (one CDC
/// call names them all, [`crate::sync::sync_many`]). A failing entity does not stop the
/// others; the exit status is the first failure's.
pub(super) async fn sync_all_cmd(
    bin: &str,
    args: &SyncArgs,
    run: &RunArgs,
) -> Result<ExitStatus, Error> {
    if !args.all {
        return Err(Error::Usage(
            "sync needs --entity NAME (or QB_ENTITY), or --all for every backfilled entity".into(),
        ));
    }
    let (client, sink) = connect(run).await?;
    let pipelines = sink
        .ledger()
        .backfilled_pipelines(client.realm_id())
        .await
        .map_err(Error::Database)?;
    let entities: Vec<EntityInfo> = ENTITIES
        .iter()
        .filter(|e| pipelines.iter().any(|p| p == e.pipeline))
        .copied()
        .collect();
    if entities.is_empty() {
        return Err(Error::Usage(format!(
            "no entity is backfilled in company {}: run a backfill first",
            client.realm_id()
        )));
    }
    let shutdown = super::reliability::install_signal_handlers(bin);
    let max = budget(run, &sink).await?;
    let cfg = args.config(run, max, &shutdown);
    let mut status = ExitStatus::Success;
    for (info, outcome) in crate::sync::sync_many(&client, &sink, &cfg, &entities).await {
        match outcome {
            Ok(report) => print_sync(info.name, &report),
            Err(err) => {
                super::progress_safe_eprintln(bin, &err);
                if status == ExitStatus::Success {
                    status = err.exit_status();
                }
            }
        }
    }
    Ok(status)
}
