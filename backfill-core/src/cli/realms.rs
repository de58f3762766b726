//! Many companies in one invocation: `--realm ID` (repeatable) or `--all-realms` (every
//! company with a stored token), `--realms-in-flight N`, and the app's `--monthly-requests`.
//!
//! Each company runs the ordinary pipeline with its own configuration, token, worker row,
//! rate limiter and concurrency cap (they are per realm), so one company's limits never
//! borrow another's. The monthly budget is Intuit's metered read quota of the app: the calls
//! recorded in the ledger this calendar month (UTC) by every run and process for the app's
//! companies, plus the calls reserved by runs in progress: each company reserves its share of
//! what is left atomically (`Ledger::reserve_app_calls`), runs with it, and returns what it did
//! not spend, so companies run in parallel and processes at once without passing the budget;
//! a run stops cleanly (windows back to pending, exit 1) when its share is spent, and the next
//! month's run resumes.

use clap::Args;
use futures::StreamExt as _;
use qbo_client::{FileTokenStore, QboConfig, TokenMetadata, TokenStore};
use raw_sink::{BudgetReservation, PgConfig, Sink};

use super::run::{RunArgs, TokenStoreSpec, ValidatedRun, pipeline_for};
use crate::run::error_chain;
use crate::{Entity, Error, ExitStatus, PgTokenStore, Progress};

/// Options for running several companies.
#[derive(Debug, Clone, Default, Args)]
pub struct RealmsArgs {
    /// Run for this company (repeatable; default QBO_REALM_ID alone).
    #[arg(long = "realm", value_name = "ID")]
    pub realms: Vec<String>,
    /// Run for every company with a stored token connected with this app (QBO_CLIENT_ID) or
    /// one whose secret QBO_APPS_FILE holds.
    #[arg(long, conflicts_with = "realms")]
    pub all_realms: bool,
    /// Companies run at once, each with its own token and per-realm limits.
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub realms_in_flight: u32,
    /// The app's QBO API calls allowed per calendar month (UTC), counted in the ledger across
    /// runs and processes: a run stops cleanly (exit 1) before the quota; next month resumes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub monthly_requests: Option<u64>,
}

impl RealmsArgs {
    /// Whether these options take the run away from the single-company path.
    #[must_use]
    pub fn is_many(&self) -> bool {
        !self.realms.is_empty() || self.all_realms || self.monthly_requests.is_some()
    }
}

/// The configuration of company `realm`: the process environment with its realm id.
fn config_for(realm: &str) -> Result<QboConfig, Error> {
    QboConfig::from_lookup(|name| {
        if name == "QBO_REALM_ID" {
            Some(realm.to_owned())
        } else {
            std::env::var(name).ok()
        }
    })
    .map_err(Error::QboConfig)
}

/// The facts of every company in the configured token store (no tokens).
async fn stored_facts(args: &RunArgs) -> Result<Vec<TokenMetadata>, Error> {
    let store: std::sync::Arc<dyn TokenStore> = match &args.token_store {
        TokenStoreSpec::File(path) => std::sync::Arc::new(FileTokenStore::new(path)),
        TokenStoreSpec::Db => {
            let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
            let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
            sink.migrate().await.map_err(Error::Migrations)?;
            std::sync::Arc::new(PgTokenStore::new(&sink))
        }
    };
    store.metadata(None).await.map_err(Error::TokenStore)
}

/// The companies to run, in realm-id order, without repeats.
async fn realms_of(args: &RunArgs) -> Result<Vec<String>, Error> {
    let r = &args.realms;
    let mut list: Vec<String> = if r.all_realms {
        // Companies connected with another app are run with its credentials when
        // QBO_APPS_FILE has them, else left to that app's runs.
        let app = config_for("0")?.credentials.client_id;
        let known = super::apps::apps_file_ids()?;
        let (mine, others): (Vec<_>, Vec<_>) = stored_facts(args)
            .await?
            .into_iter()
            .filter(|m| m.has_token)
            .partition(|m| {
                m.client_id
                    .as_deref()
                    .is_none_or(|c| c == app || known.iter().any(|k| k == c))
            });
        if !others.is_empty() {
            let names: Vec<&str> = others.iter().map(|m| m.realm_id.as_str()).collect();
            tracing::info!(
                client_id = app.as_str(),
                realms = %names.join(","),
                "realms_of_other_apps_skipped: list their apps' secrets in QBO_APPS_FILE, or run them with their own app's QBO_CLIENT_ID and QBO_CLIENT_SECRET[_FILE]"
            );
        }
        mine.into_iter().map(|m| m.realm_id).collect()
    } else if r.realms.is_empty() {
        vec![config_for_env_realm()?]
    } else {
        r.realms.iter().map(|s| s.trim().to_owned()).collect()
    };
    list.sort();
    list.dedup();
    if list.is_empty() {
        return Err(Error::Usage(
            "--all-realms found no connected company: connect one with `qb-backfill auth connect`"
                .to_owned(),
        ));
    }
    Ok(list)
}

fn config_for_env_realm() -> Result<String, Error> {
    QboConfig::from_env()
        .map(|c| c.realm_id)
        .map_err(Error::QboConfig)
}

/// One company's run within its reservation, which is released when it ends.
async fn budgeted<E: Entity>(
    args: &RunArgs,
    valid: &ValidatedRun,
    sink: &Sink,
    grant: BudgetReservation,
    cfg: QboConfig,
) -> Result<ExitStatus, Error> {
    if grant.granted == 0 {
        return Ok(ExitStatus::WindowsFailed);
    }
    let realm = cfg.realm_id.clone();
    let r = pipeline_for::<E>(args, valid, cfg, Some(grant.granted), Progress::hidden()).await;
    // An open reservation stops counting after a day; the run's calls are recorded either way.
    super::connect::release_monthly(sink, grant, &realm).await;
    r
}

/// Runs the pipeline of `E` for every company the options name.
pub(super) async fn pipeline_realms<E: Entity>(
    args: &RunArgs,
    valid: &ValidatedRun,
) -> Result<ExitStatus, Error> {
    let realms = realms_of(args).await?;
    // Every company's configuration is checked before anything is called.
    let configs = realms
        .iter()
        .map(|r| config_for(r).map(|c| (r.clone(), c)))
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(
        pipeline = E::PIPELINE,
        realms = realms.len(),
        realms_in_flight = args.realms.realms_in_flight,
        monthly_requests = args.realms.monthly_requests,
        "realms_planned"
    );
    let outcomes: Vec<(String, Result<ExitStatus, Error>)> = match args.realms.monthly_requests {
        Some(quota) => {
            let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
            let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
            sink.migrate().await.map_err(Error::Migrations)?;
            // Each company's calls count against the budget of the app it was connected with.
            let apps: std::collections::HashMap<String, String> = stored_facts(args)
                .await?
                .into_iter()
                .filter_map(|m| m.client_id.map(|c| (m.realm_id, c)))
                .collect();
            // Companies run in parallel (--realms-in-flight), each with a reservation of the
            // app's month: an even share of what is left among the companies not yet started,
            // taken atomically in the ledger, so the total never passes the budget whatever
            // else runs; unspent calls return when the company ends.
            // Every company of the invocation reserves before any starts (so a company that
            // ends early, its calls recorded but its reservation not yet returned, does not
            // starve those after it), then they run side by side.
            let mut planned = Vec::with_capacity(configs.len());
            let mut companies = configs.len() as u64;
            for (realm, cfg) in configs {
                let app = apps.get(&realm).unwrap_or(&cfg.credentials.client_id);
                let grant = super::connect::reserve_monthly(
                    &sink,
                    app,
                    &realm,
                    quota,
                    companies,
                    args.max_requests,
                )
                .await?;
                companies = companies.saturating_sub(1);
                planned.push((realm, cfg, grant));
            }
            let sink = &sink;
            futures::stream::iter(planned)
                .map(|(realm, cfg, grant)| async move {
                    let r = budgeted::<E>(args, valid, sink, grant, cfg).await;
                    (realm, r)
                })
                .buffer_unordered(args.realms.realms_in_flight as usize)
                .collect()
                .await
        }
        None => {
            futures::stream::iter(configs)
                .map(|(realm, cfg)| async move {
                    let r =
                        pipeline_for::<E>(args, valid, cfg, args.max_requests, Progress::hidden())
                            .await;
                    (realm, r)
                })
                .buffer_unordered(args.realms.realms_in_flight as usize)
                .collect()
                .await
        }
    };
    let mut worst = ExitStatus::Success;
    for (realm, outcome) in outcomes {
        let status = match outcome {
            Ok(s) => s,
            Err(e) => {
                eprintln!("realm {realm}: error: {}", error_chain(&e));
                e.exit_status()
            }
        };
        tracing::info!(
            realm = realm.as_str(),
            exit = status.code(),
            "realm_finished"
        );
        if status.code() > worst.code() {
            worst = status;
        }
    }
    Ok(worst)
}
