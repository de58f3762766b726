//! The QBO connection every pipeline-like command builds the same way: the token store the
//! command line names (`--token-store db|file:PATH`), this process registered as a worker of
//! the realm with its share of the realm's QBO budget, and the client built with that share.
//! The pipelines (`cli/run.rs`) use these functions, and `sync`, `reconcile`, `reports` and
//! `check-books` a [`Session`] built from them; none builds its client otherwise.

use std::sync::Arc;
use std::time::Duration;

use qbo_client::{QboClient, QboConfig, RateLimit, RetryPolicy, TokenCipher, TokenStore};
use raw_sink::{BudgetReservation, PgConfig, Sink};

use super::realms::Share;
use super::reliability::{self, ReliabilityArgs};
use super::reports::QboArgs;
use super::run::{RunArgs, TokenStoreSpec};
use crate::claim::Worker;
use crate::{Error, Shutdown};

/// The token file of `spec`, opened (and checked) before the database is touched, so a bad
/// path writes nothing; `None` for the database store.
pub(crate) async fn file_token_store(
    spec: &TokenStoreSpec,
    realm_id: &str,
    key: Option<TokenCipher>,
) -> Result<Option<Arc<dyn TokenStore>>, Error> {
    match spec {
        TokenStoreSpec::File(path) => Ok(Some(
            crate::open_token_store(crate::TokenStoreLocation::File(path), realm_id, key).await?,
        )),
        TokenStoreSpec::Db => Ok(None),
    }
}

/// The token store: the file one already opened, or `backfill.oauth_tokens` on `sink`.
pub(crate) async fn token_store(
    file: Option<Arc<dyn TokenStore>>,
    sink: &Sink,
    realm_id: &str,
    key: Option<TokenCipher>,
) -> Result<Arc<dyn TokenStore>, Error> {
    match file {
        Some(store) => Ok(store),
        None => {
            crate::open_token_store(crate::TokenStoreLocation::Database(sink), realm_id, key).await
        }
    }
}

/// The realm's whole QBO budget and the retry horizon, as the command line gives them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    /// The realm's budget, shared by every process of the realm.
    pub(crate) realm_budget: RateLimit,
    /// The realm's batch requests per minute (QBO: 40), shared like `realm_budget`.
    pub(crate) realm_batch_per_minute: u32,
    /// `--give-up-after`.
    pub(crate) give_up_after: Duration,
}

/// The realm's budget from `--requests-per-min`, `--requests-per-sec` and `--max-in-flight`:
/// QBO's 10 requests a second apply with QBO's 500 a minute unless a pace is given; a
/// per-minute figure of one's own (a smaller share of the realm, another limit) is spread
/// evenly over the minute unless a per-second pace is given with it.
pub(crate) fn realm_budget(per_minute: u32, per_second: Option<u32>, in_flight: u32) -> RateLimit {
    let per_second = per_second.unwrap_or(if per_minute == RateLimit::QBO.per_minute {
        RateLimit::QBO.per_second
    } else {
        0
    });
    RateLimit {
        per_minute,
        per_second,
        max_concurrency: in_flight,
    }
}

/// Registers this process as a worker of `pipeline` in the company of `qbo`, waits for its
/// share of the realm's budget (other processes of the realm, whatever their command, hold
/// the rest), and builds the QBO client with that share. The worker is stopped again when the
/// client cannot be built.
pub(crate) async fn client_with_share(
    pipeline: &str,
    qbo: QboConfig,
    store: Arc<dyn TokenStore>,
    sink: &Sink,
    limits: ClientLimits,
    args: &ReliabilityArgs,
    shutdown: &Shutdown,
) -> Result<(QboClient, Worker), Error> {
    let worker = reliability::start_worker(
        sink,
        pipeline,
        &qbo.realm_id,
        limits.realm_budget,
        args,
        shutdown,
    )
    .await?;
    let rate = worker.rate_limit().unwrap_or(limits.realm_budget);
    // The batch budget is split like the request budget, so that the workers of a realm
    // together stay within it.
    let batch = batch_share(limits.realm_batch_per_minute, args.workers);
    match build_client(qbo, store, rate, batch, limits.give_up_after) {
        Ok(client) => Ok((client, worker)),
        Err(e) => {
            worker.stop("the QBO client could not be built").await;
            Err(Error::Qbo(e))
        }
    }
}

/// One worker's share of the realm's `per_minute` batch requests when `workers` processes
/// share the realm (as [`crate::claim::BudgetRequest::share`] splits the request budget): at
/// least one a minute.
pub(crate) fn batch_share(per_minute: u32, workers: u32) -> u32 {
    (per_minute / workers.max(1)).max(1)
}

/// The QBO client with `store`, limited to `rate` and `batch_per_minute`, retrying for
/// `give_up_after`.
fn build_client(
    qbo: QboConfig,
    store: Arc<dyn TokenStore>,
    rate: RateLimit,
    batch_per_minute: u32,
    give_up_after: Duration,
) -> Result<QboClient, qbo_client::QboError> {
    QboClient::builder(qbo)
        .token_store(store)
        .rate_limit(rate)
        .batch_rate_limit(batch_per_minute)
        .retry_policy(RetryPolicy::default().with_give_up_after(give_up_after))
        .build()
}

/// What a single-company command (`sync`, `reconcile`, `reports`, `check-books`) runs with:
/// the client (built as the pipelines build theirs), the migrated database, this process's
/// worker, the stop request, the request budget and the monthly reservation it came from.
pub(crate) struct Session {
    /// The QBO client, limited to this worker's share of the realm's budget.
    pub(crate) client: QboClient,
    /// The database, migrated.
    pub(crate) sink: Sink,
    /// This process's worker row (its budget share); none when the month's budget is spent
    /// (nothing will be asked, so no share is waited for).
    worker: Option<Worker>,
    /// SIGINT / SIGTERM.
    pub(crate) shutdown: Shutdown,
    /// `--max-requests`, lowered to what the monthly reservation granted.
    pub(crate) max_requests: Option<u64>,
    /// The monthly reservation, released by [`Session::end`].
    reservation: Option<BudgetReservation>,
    /// `--monthly-requests`, when the app had nothing left of it (`max_requests` is then 0).
    month_spent: Option<u64>,
}

impl Session {
    /// Ends the session: the last successful call noted for `auth status`, the worker stopped
    /// (`how` is its ledger note) and the unspent monthly reservation returned.
    pub(crate) async fn end(self, how: &str) {
        self.client.note_last_success().await;
        if let Some(worker) = self.worker {
            worker.stop(how).await;
        }
        if let Some(grant) = self.reservation {
            release_monthly(&self.sink, grant, self.client.realm_id()).await;
        }
    }
}

/// Connects as a pipeline does, all configuration checked before anything is called or
/// written: the token store of `--token-store`, the company's own Intuit app, the expiry
/// warning, under `--monthly-requests` a reservation of what the app has left this month, and
/// this process registered as a worker of `pipeline` with its share of the realm's budget.
/// When the month's budget is spent, `max_requests` is 0 and no worker is registered (no share
/// is waited for): the command stops before its first call (and records that it did).
/// The company is `QBO_REALM_ID`'s; [`session_for`] names another.
pub(crate) async fn session(args: &QboArgs, pipeline: &str) -> Result<Session, Error> {
    let qbo = QboConfig::from_env().map_err(Error::QboConfig)?;
    session_for(args, pipeline, qbo, None).await
}

/// [`session`] for the company of `qbo`. With `share` (one company of several,
/// [`super::realms::for_each_company`], which reserved the app's month for it) the session
/// spends at most that and reserves nothing itself.
pub(crate) async fn session_for(
    args: &QboArgs,
    pipeline: &str,
    qbo: QboConfig,
    share: Option<Share>,
) -> Result<Session, Error> {
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let token_key = crate::token_key_from_env()?;
    let file_store = file_token_store(&args.token_store, &qbo.realm_id, token_key.clone()).await?;
    let shutdown = reliability::install_signal_handlers(pipeline);
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let store = token_store(file_store, &sink, &qbo.realm_id, token_key).await?;
    // The company's own app, when it was connected with another than QBO_CLIENT_ID.
    let qbo = super::apps::with_company_app(store.as_ref(), qbo).await?;
    // Expiries within 30 days are warned about in every run's log.
    super::auth::warn_expiring(store.as_ref(), &qbo.realm_id, &qbo.credentials.client_id).await;
    let (max_requests, reservation, month_spent) = match (share, args.monthly_requests) {
        (Some(share), _) => (share.max_requests, None, share.month_spent),
        (None, None) => (args.max_requests, None, None),
        (None, Some(quota)) => {
            let grant = reserve_monthly(
                &sink,
                &qbo.credentials.client_id,
                &qbo.realm_id,
                quota,
                1,
                args.max_requests,
            )
            .await?;
            let spent = (grant.granted == 0).then_some(quota);
            (
                Some(grant.granted),
                Some(grant).filter(|g| g.granted > 0),
                spent,
            )
        }
    };
    let limits = ClientLimits {
        realm_budget: realm_budget(
            args.requests_per_min,
            args.requests_per_sec,
            args.max_in_flight,
        ),
        realm_batch_per_minute: qbo_client::BATCH_REQUESTS_PER_MINUTE,
        give_up_after: args.give_up_after.as_duration(),
    };
    let realm = qbo.realm_id.clone();
    let (client, worker) = if month_spent.is_some() {
        // Nothing will be asked: no share of the realm's budget to wait for.
        let client = build_client(
            qbo,
            store,
            limits.realm_budget,
            limits.realm_batch_per_minute,
            limits.give_up_after,
        )
        .map_err(Error::Qbo)?;
        (client, None)
    } else {
        let shared = client_with_share(
            pipeline,
            qbo,
            store,
            &sink,
            limits,
            &args.reliability,
            &shutdown,
        )
        .await;
        match shared {
            Ok((client, worker)) => (client, Some(worker)),
            Err(e) => {
                if let Some(grant) = reservation {
                    release_monthly(&sink, grant, &realm).await;
                }
                return Err(e);
            }
        }
    };
    Ok(Session {
        client,
        sink,
        worker,
        shutdown,
        max_requests,
        reservation,
        month_spent,
    })
}

/// [`session`] for a command that asks nothing once the month's budget is spent (`reports`,
/// `check-books`): `None`, printed, then.
pub(crate) async fn session_within_month(
    args: &QboArgs,
    pipeline: &str,
) -> Result<Option<Session>, Error> {
    let session = session(args, pipeline).await?;
    let Some(quota) = session.month_spent else {
        return Ok(Some(session));
    };
    println!(
        "{pipeline}: the app's QBO calls this month reached --monthly-requests {quota}: nothing \
         asked; run again next month (UTC) or with a larger budget"
    );
    session.end("the month's budget is spent").await;
    Ok(None)
}

/// Reserves for company `realm` of app `app` a `companies`-th of what the app has left of its
/// monthly `quota` (at most `max_requests`), atomically across processes
/// ([`raw_sink::Ledger::reserve_app_calls`]); a grant of 0 is warned about.
pub(crate) async fn reserve_monthly(
    sink: &Sink,
    app: &str,
    realm: &str,
    quota: u64,
    companies: u64,
    max_requests: Option<u64>,
) -> Result<BudgetReservation, Error> {
    let grant = sink
        .ledger()
        .reserve_app_calls(app, realm, quota, companies, max_requests)
        .await
        .map_err(Error::Database)?;
    if grant.granted == 0 {
        tracing::warn!(
            realm,
            used = grant.used,
            quota,
            "monthly_budget_reached: the app's calls this month (runs and other runs' \
             reservations) reached --monthly-requests; this company runs again next month \
             (UTC), with a larger budget, or when other runs return unspent calls"
        );
    } else {
        tracing::info!(
            realm,
            client_id = app,
            reserved = grant.granted,
            used = grant.used,
            quota,
            "monthly_budget_reserved"
        );
    }
    Ok(grant)
}

/// Returns what reservation `grant` did not spend (its run has recorded its calls). A failure
/// is only warned about: an open reservation stops counting after a day.
pub(crate) async fn release_monthly(sink: &Sink, grant: BudgetReservation, realm: &str) {
    if let Err(e) = sink.ledger().release_app_calls(grant.id).await {
        tracing::warn!(realm, error = %crate::run::error_chain(&e), "budget_release_failed");
    }
}

impl From<&RunArgs> for QboArgs {
    /// The connection options of a run (given before `sync` / `reconcile`).
    fn from(run: &RunArgs) -> Self {
        Self {
            token_store: run.token_store.clone(),
            requests_per_min: run.requests_per_min,
            requests_per_sec: run.requests_per_sec,
            max_in_flight: run.max_in_flight,
            give_up_after: run.give_up_after,
            max_requests: run.max_requests,
            monthly_requests: run.realms.monthly_requests,
            reliability: run.reliability.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use qbo_client::RateLimit;

    use super::{batch_share, realm_budget};

    #[test]
    fn qbos_per_second_pace_comes_with_qbos_per_minute_budget_only() {
        assert_eq!(realm_budget(500, None, 10), RateLimit::QBO);
        // A per-minute figure of one's own is spread evenly unless a pace is given with it.
        assert_eq!(realm_budget(250, None, 5).per_second, 0);
        assert_eq!(realm_budget(250, Some(4), 5).per_second, 4);
        assert_eq!(realm_budget(500, Some(5), 10).per_second, 5);
    }

    #[test]
    fn the_batch_budget_is_split_between_workers() {
        assert_eq!(batch_share(40, 1), 40);
        assert_eq!(batch_share(40, 2), 20);
        assert_eq!(batch_share(40, 3), 13);
        assert_eq!(batch_share(40, 0), 40);
        assert_eq!(batch_share(40, 100), 1);
    }
}
