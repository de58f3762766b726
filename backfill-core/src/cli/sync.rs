//! `sync`: keeps a backfilled entity current (changed records, CDC deletions), one entity or,
//! with `--all` in `qb-backfill`, every entity backfilled in the company; in one company
//! (`QBO_REALM_ID`) or, with `--realm` / `--all-realms`, in each company they select.

use std::future::Future;
use std::time::Duration;

use clap::Args;
use qbo_client::QboConfig;

use super::connect::{self, Session};
use super::realms::{self, Selection, Share};
use super::reports::QboArgs;
use super::run::RunArgs;
use crate::entity::ENTITIES;
use crate::entity::EntityInfo;
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
    /// The sync's configuration: the run options' page size, the session's request budget
    /// (`--max-requests`, lowered to the monthly reservation) and its stop request.
    pub(super) fn config(&self, run: &RunArgs, session: &Session) -> SyncConfig {
        SyncConfig {
            overlap: self.overlap,
            page_size: run.page_size,
            max_requests: session.max_requests,
            shutdown: Some(session.shutdown.clone()),
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

fn print_sync(name: &str, realm: &str, r: &SyncReport) {
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
        "{} sync {} of realm {realm}: inserted {}, updated {}, unchanged {}, tombstoned {} (CDC \
         deletes refuted by a read: {}), QBO calls {}{marks}{}",
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

/// Runs `one` for the company of `QBO_REALM_ID`, or with `--realm` / `--all-realms` for every
/// company they select ([`realms::for_each_company`]: each with its own session, token, worker
/// and share of `--monthly-requests`; the exit status the worst of them).
pub(super) async fn per_company<F, Fut>(
    run: &RunArgs,
    what: &str,
    one: F,
) -> Result<ExitStatus, Error>
where
    F: Fn(QboConfig, Option<Share>) -> Fut,
    Fut: Future<Output = Result<ExitStatus, Error>>,
{
    if !run.realms.names_companies() {
        let qbo = QboConfig::from_env().map_err(Error::QboConfig)?;
        return one(qbo, None).await;
    }
    let sel = Selection {
        realms: &run.realms,
        token_store: &run.token_store,
        max_requests: run.max_requests,
        what,
    };
    realms::for_each_company(sel, |qbo, share| one(qbo, Some(share))).await
}

/// `sync` of entity `E`, for each company the options name.
pub(super) async fn sync_cmd<E: Entity>(
    args: &SyncArgs,
    run: &RunArgs,
) -> Result<ExitStatus, Error> {
    if args.all {
        return Err(Error::Usage(
            "--all syncs every backfilled entity: use it with qb-backfill, without --entity".into(),
        ));
    }
    per_company(run, "sync", |qbo, share| async move {
        let session = connect::session_for(&QboArgs::from(run), "sync", qbo, share).await?;
        let result =
            crate::sync::sync::<E>(&session.client, &session.sink, &args.config(run, &session))
                .await;
        let realm = session.client.realm_id().to_owned();
        session.end(ended(&result)).await;
        print_sync(E::NAME, &realm, &result?);
        Ok(ExitStatus::Success)
    })
    .await
}

/// `qb-backfill sync --all`: every entity backfilled in the company (in each company the
/// options name), synced together (one CDC call names them all, [`crate::sync::sync_many`]).
/// A failing entity does not stop the others; a company's exit status is its first failure's.
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
    let many = run.realms.names_companies();
    per_company(run, "sync", |qbo, share| async move {
        let session = connect::session_for(&QboArgs::from(run), "sync", qbo, share).await?;
        let realm = session.client.realm_id().to_owned();
        let label = if many {
            format!("{bin}: realm {realm}")
        } else {
            bin.to_owned()
        };
        sync_company(&label, args, run, session).await
    })
    .await
}

/// Every entity backfilled in the session's company, synced together.
async fn sync_company(
    label: &str,
    args: &SyncArgs,
    run: &RunArgs,
    session: Session,
) -> Result<ExitStatus, Error> {
    let realm = session.client.realm_id().to_owned();
    let entities = match session.sink.ledger().backfilled_pipelines(&realm).await {
        Ok(pipelines) => ENTITIES
            .iter()
            .filter(|e| pipelines.iter().any(|p| p == e.pipeline))
            .copied()
            .collect::<Vec<EntityInfo>>(),
        Err(e) => {
            session.end("sync stopped on an error").await;
            return Err(Error::Database(e));
        }
    };
    if entities.is_empty() {
        session.end("nothing to sync").await;
        return Err(Error::Usage(format!(
            "no entity is backfilled in company {realm}: run a backfill first"
        )));
    }
    let cfg = args.config(run, &session);
    let mut status = ExitStatus::Success;
    for (info, outcome) in
        crate::sync::sync_many(&session.client, &session.sink, &cfg, &entities).await
    {
        match outcome {
            Ok(report) => print_sync(info.name, &realm, &report),
            Err(err) => {
                super::progress_safe_eprintln(label, &err);
                if status == ExitStatus::Success {
                    status = err.exit_status();
                }
            }
        }
    }
    session
        .end(if status == ExitStatus::Success {
            "sync finished"
        } else {
            "sync stopped; the next sync resumes"
        })
        .await;
    Ok(status)
}

/// The worker's note for a sync or reconcile that ended with `result`.
pub(super) fn ended<T>(result: &Result<T, Error>) -> &'static str {
    if result.is_ok() {
        "finished"
    } else {
        "stopped; the next run resumes"
    }
}
