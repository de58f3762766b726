//! The QBO connection every pipeline-like command builds the same way: the token store the
//! command line names (`--token-store db|file:PATH`), this process registered as a worker of
//! the realm with its share of the realm's QBO budget, and the client built with that share.
//! The pipelines (`cli/run.rs`), `reports` and `check-books` use these functions; none builds
//! its client otherwise.

use std::sync::Arc;
use std::time::Duration;

use qbo_client::{QboClient, QboConfig, RateLimit, RetryPolicy, TokenCipher, TokenStore};
use raw_sink::Sink;

use super::reliability::{self, ReliabilityArgs};
use super::run::TokenStoreSpec;
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
    /// `--give-up-after`.
    pub(crate) give_up_after: Duration,
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
    let built = QboClient::builder(qbo)
        .token_store(store)
        .rate_limit(worker.rate_limit().unwrap_or(limits.realm_budget))
        .retry_policy(RetryPolicy::default().with_give_up_after(limits.give_up_after))
        .build();
    match built {
        Ok(client) => Ok((client, worker)),
        Err(e) => {
            worker.stop("the QBO client could not be built").await;
            Err(Error::Qbo(e))
        }
    }
}
