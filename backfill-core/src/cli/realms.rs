//! Many companies in one invocation: `--realm ID` (repeatable) or `--all-realms` (every
//! company with a stored token), `--realms-in-flight N`, and the app's `--monthly-requests`,
//! for the pipelines, `sync` and `reconcile` alike ([`for_each_company`]).
//!
//! Each company runs the ordinary command with its own configuration, token, worker row,
//! rate limiter and concurrency cap (they are per realm), so one company's limits never
//! borrow another's. The monthly budget is Intuit's metered read quota of the app: the calls
//! recorded in the ledger this calendar month (UTC) by every run and process for the app's
//! companies, plus the calls reserved by runs in progress: each company reserves its share of
//! what is left atomically (`Ledger::reserve_app_calls`), runs with it, and returns what it did
//! not spend, so companies run in parallel and processes at once without passing the budget;
//! a run stops cleanly (windows back to pending, exit 1) when its share is spent, and the next
//! month's run resumes.

use std::future::Future;

use clap::Args;
use futures::StreamExt as _;
use qbo_client::{FileTokenStore, QboConfig, TokenMetadata, TokenStore};
use raw_sink::{PgConfig, Sink};

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
        self.names_companies() || self.monthly_requests.is_some()
    }

    /// Whether `--realm` or `--all-realms` chose the companies (else `QBO_REALM_ID` alone).
    #[must_use]
    pub fn names_companies(&self) -> bool {
        !self.realms.is_empty() || self.all_realms
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

/// The facts of every company in the token store of `spec` (no tokens).
async fn stored_facts(spec: &TokenStoreSpec) -> Result<Vec<TokenMetadata>, Error> {
    let store: std::sync::Arc<dyn TokenStore> = match spec {
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
async fn realms_of(spec: &TokenStoreSpec, r: &RealmsArgs) -> Result<Vec<String>, Error> {
    let mut list: Vec<String> = if r.all_realms {
        // Companies connected with another app are run with its credentials when
        // QBO_APPS_FILE has them, else left to that app's runs.
        let app = config_for("0")?.credentials.client_id;
        let known = super::apps::apps_file_ids()?;
        let (mine, others): (Vec<_>, Vec<_>) = stored_facts(spec)
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

/// What one company of an invocation may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share {
    /// Its API calls: `--max-requests`, lowered to its reservation of the app's month.
    pub(crate) max_requests: Option<u64>,
    /// `--monthly-requests`, when the app had nothing left of it for this company (then
    /// `max_requests` is 0 and nothing is asked).
    pub(crate) month_spent: Option<u64>,
}

/// Where the companies of an invocation come from and what they may spend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Selection<'a> {
    /// `--realm`, `--all-realms`, `--realms-in-flight`, `--monthly-requests`.
    pub(crate) realms: &'a RealmsArgs,
    /// `--token-store` (read for `--all-realms` and for each company's app).
    pub(crate) token_store: &'a TokenStoreSpec,
    /// `--max-requests`, per company.
    pub(crate) max_requests: Option<u64>,
    /// What runs, for the log (`pipeline`, `sync`, `reconcile`).
    pub(crate) what: &'a str,
}

/// Runs `each` once for every company `sel` selects, at most `--realms-in-flight` at once,
/// each with its own configuration (the environment with its realm id) and its [`Share`].
///
/// All companies' configurations are checked before anything is called. Under
/// `--monthly-requests` every company reserves its share of what its app has left this month
/// before any starts (so a company that ends early, its calls recorded but its reservation not
/// yet returned, does not starve those after it), and its unspent calls are returned when it
/// ends. Each company's outcome is logged (`realm_finished`) and its error printed with its
/// realm; the result is the worst exit status of them.
///
/// # Errors
/// A selection or configuration error before any company ran (bad `--all-realms` store, a
/// malformed `QBO_APPS_FILE`, missing QBO settings, the database for the reservations).
pub(crate) async fn for_each_company<F, Fut>(
    sel: Selection<'_>,
    each: F,
) -> Result<ExitStatus, Error>
where
    F: Fn(QboConfig, Share) -> Fut,
    Fut: Future<Output = Result<ExitStatus, Error>>,
{
    let realms = realms_of(sel.token_store, sel.realms).await?;
    let configs = realms
        .iter()
        .map(|r| config_for(r).map(|c| (r.clone(), c)))
        .collect::<Result<Vec<_>, _>>()?;
    let in_flight = sel.realms.realms_in_flight as usize;
    tracing::info!(
        command = sel.what,
        realms = realms.len(),
        realms_in_flight = sel.realms.realms_in_flight,
        monthly_requests = sel.realms.monthly_requests,
        "realms_planned"
    );
    let each = &each;
    let outcomes: Vec<(String, Result<ExitStatus, Error>)> = match sel.realms.monthly_requests {
        Some(quota) => {
            let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
            let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
            sink.migrate().await.map_err(Error::Migrations)?;
            // Each company's calls count against the budget of the app it was connected with.
            let apps: std::collections::HashMap<String, String> = stored_facts(sel.token_store)
                .await?
                .into_iter()
                .filter_map(|m| m.client_id.map(|c| (m.realm_id, c)))
                .collect();
            // An even share of what is left among the companies not yet reserved, taken
            // atomically in the ledger, so the total never passes the budget whatever else runs.
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
                    sel.max_requests,
                )
                .await?;
                companies = companies.saturating_sub(1);
                planned.push((realm, cfg, grant));
            }
            let sink = &sink;
            futures::stream::iter(planned)
                .map(|(realm, cfg, grant)| async move {
                    let share = Share {
                        max_requests: Some(grant.granted),
                        month_spent: (grant.granted == 0).then_some(quota),
                    };
                    let r = each(cfg, share).await;
                    // An open reservation stops counting after a day; the calls are recorded
                    // either way.
                    super::connect::release_monthly(sink, grant, &realm).await;
                    (realm, r)
                })
                .buffer_unordered(in_flight)
                .collect()
                .await
        }
        None => {
            let share = Share {
                max_requests: sel.max_requests,
                month_spent: None,
            };
            futures::stream::iter(configs)
                .map(|(realm, cfg)| async move { (realm, each(cfg, share).await) })
                .buffer_unordered(in_flight)
                .collect()
                .await
        }
    };
    let mut worst = ExitStatus::Success;
    for (realm, outcome) in outcomes {
        let status = match outcome {
            Ok(s) => s,
            Err(e) => {
                let mut line = format!("realm {realm}: error: {}", error_chain(&e));
                if let Some(runbook) = e.runbook() {
                    line.push_str("; ");
                    line.push_str(runbook);
                }
                eprintln!("{line}");
                e.exit_status()
            }
        };
        tracing::info!(
            command = sel.what,
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

/// Runs the pipeline of `E` for every company the options name.
pub(super) async fn pipeline_realms<E: Entity>(
    args: &RunArgs,
    valid: &ValidatedRun,
) -> Result<ExitStatus, Error> {
    let sel = Selection {
        realms: &args.realms,
        token_store: &args.token_store,
        max_requests: args.max_requests,
        what: E::PIPELINE,
    };
    for_each_company(sel, |cfg, share| async move {
        if share.month_spent.is_some() {
            return Ok(ExitStatus::WindowsFailed);
        }
        pipeline_for::<E>(args, valid, cfg, share.max_requests, Progress::hidden()).await
    })
    .await
}
