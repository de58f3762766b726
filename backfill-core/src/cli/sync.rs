//! `sync`: keeps a backfilled entity current (changed records, CDC deletions), one entity or,
//! with `--all` in `qb-backfill`, every entity backfilled in the company. Also the connection
//! set-up `reconcile` shares.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use qbo_client::{QboClient, QboConfig, RateLimit, RetryPolicy, TokenStore};
use raw_sink::{PgConfig, Sink};

use super::run::{RunArgs, TokenStoreSpec};
use crate::entity::{ENTITIES, EntityVisitor, with_entity};
use crate::sync::{DEFAULT_OVERLAP, SyncConfig, SyncReport};
use crate::window::format_utc;
use crate::{Entity, Error, ExitStatus};

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
    fn config(&self, run: &RunArgs) -> SyncConfig {
        SyncConfig {
            overlap: self.overlap,
            page_size: run.page_size,
        }
    }
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
    let qbo = super::apps::with_company_app(store.as_ref(), qbo).await?;
    // Expiries within 30 days are warned about in every run's log.
    super::auth::warn_expiring(store.as_ref(), &qbo.realm_id, &qbo.credentials.client_id).await;
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

fn print_sync<E: Entity>(r: &SyncReport) {
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
        E::NAME,
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
    let report = crate::sync::sync::<E>(&client, &sink, &args.config(run)).await;
    client.note_last_success().await;
    let report = report?;
    print_sync::<E>(&report);
    Ok(ExitStatus::Success)
}

struct SyncOne<'a> {
    client: &'a QboClient,
    sink: &'a Sink,
    cfg: SyncConfig,
}

impl<'a> EntityVisitor for SyncOne<'a> {
    type Output = Pin<Box<dyn Future<Output = Result<(), Error>> + 'a>>;

    fn visit<E: Entity>(self) -> Self::Output {
        Box::pin(async move {
            let report = crate::sync::sync::<E>(self.client, self.sink, &self.cfg).await?;
            print_sync::<E>(&report);
            Ok(())
        })
    }
}

/// `qb-backfill sync --all`: every entity backfilled in the company, one after the other. A
/// failing entity does not stop the others; the exit status is the first failure's.
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
    let entities: Vec<_> = ENTITIES
        .iter()
        .filter(|e| pipelines.iter().any(|p| p == e.pipeline))
        .collect();
    if entities.is_empty() {
        return Err(Error::Usage(format!(
            "no entity is backfilled in company {}: run a backfill first",
            client.realm_id()
        )));
    }
    let mut status = ExitStatus::Success;
    for e in entities {
        let visit = SyncOne {
            client: &client,
            sink: &sink,
            cfg: args.config(run),
        };
        let Some(work) = with_entity(e.name, visit) else {
            continue;
        };
        if let Err(err) = work.await {
            super::progress_safe_eprintln(bin, &err);
            if status == ExitStatus::Success {
                status = err.exit_status();
            }
        }
    }
    client.note_last_success().await;
    Ok(status)
}
