//! OAuth 2.0 token provider: a cached access token, single-flight refresh, refresh-token
//! rotation persisted before use, and the store-then-configuration fallback of SPEC §3.
//!
//! The provider's state machine lives here; the token endpoint's exchange in `endpoint.rs`,
//! saving a rotated token (retry, then rescue) in `persist.rs`.

mod authorize;
mod cipher;
mod endpoint;
mod meta;
mod persist;
mod rescue;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

pub use authorize::{
    ACCOUNTING_SCOPE, AUTHORIZE_URL, Authorization, Callback, ConnectedTokens, OAuthApp, REVOKE_URL,
};
pub use cipher::{TOKEN_KEY_ENV, TokenCipher, is_encrypted, stored_form, token_from_stored};
pub use meta::{TokenMetadata, TokenNote};
pub use store::{FileTokenStore, MemoryTokenStore, RefreshGuard, TokenStore, TokenStoreError};

use crate::error::{AuthError, QboError};
use crate::retry::{Outage, RetryPolicy};
use endpoint::{Granted, RefreshFailure};
use rescue::RescuePlaces;

/// An access token handed to a request, with the generation it belongs to (so that a 401
/// forces at most one refresh however many requests saw it).
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub(crate) value: SecretString,
    pub(crate) generation: u64,
}

#[derive(Clone)]
struct Cached {
    value: SecretString,
    expires_at: Instant,
    lifetime: Duration,
    buffer: Duration,
    generation: u64,
}

impl Cached {
    fn token(&self) -> AccessToken {
        AccessToken {
            value: self.value.clone(),
            generation: self.generation,
        }
    }
}

#[derive(Default)]
struct State {
    initialized: bool,
    /// The refresh token to use next (the newest known).
    current: Option<SecretString>,
    /// Whether `current` is known to be in the store.
    persisted: bool,
    /// Tokens the endpoint answered `invalid_grant` for: never sent again.
    rejected: Vec<SecretString>,
    last_rejection: Option<AuthError>,
    generation: u64,
}

fn same(a: &SecretString, b: &SecretString) -> bool {
    a.expose_secret() == b.expose_secret()
}

/// Settings of the token provider.
pub(crate) struct TokenSettings {
    pub(crate) http: reqwest::Client,
    pub(crate) token_url: Url,
    pub(crate) realm_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) configured_refresh_token: SecretString,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) retry: RetryPolicy,
    pub(crate) expiry_buffer: Duration,
    /// How long retryable failures to save a rotated token are retried before the rescue file.
    pub(crate) save_retry_for: Duration,
    /// The client's run of transient failures (the give-up horizon).
    pub(crate) outage: Arc<Outage>,
}

pub(crate) struct TokenProvider {
    s: TokenSettings,
    rescue: RescuePlaces,
    cache: std::sync::Mutex<Option<Cached>>,
    state: tokio::sync::Mutex<State>,
    /// Whether the first successful API answer was recorded in the store.
    first_success_noted: AtomicBool,
    /// Successful API answers since the last one recorded.
    successes_unnoted: AtomicU64,
    /// One more than the newest access-token generation QBO accepted (0: none yet).
    proven: AtomicU64,
}

impl TokenProvider {
    pub(crate) fn new(settings: TokenSettings) -> Self {
        let rescue = RescuePlaces::new(settings.store.rescue_dir(), settings.store.cipher());
        Self {
            s: settings,
            rescue,
            cache: std::sync::Mutex::new(None),
            state: tokio::sync::Mutex::new(State::default()),
            first_success_noted: AtomicBool::new(false),
            successes_unnoted: AtomicU64::new(0),
            proven: AtomicU64::new(0),
        }
    }

    /// An API call answered successfully: the first one of this client is recorded in the
    /// store at once ([`TokenNote::Succeeded`]); later ones are only counted, for
    /// [`TokenProvider::note_last_success`]. A refresh alone is not a successful call.
    pub(crate) async fn api_call_succeeded(&self, generation: u64) {
        self.proven
            .fetch_max(generation.saturating_add(1), Ordering::Relaxed);
        if self.first_success_noted.swap(true, Ordering::AcqRel) {
            self.successes_unnoted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.note_success().await;
        }
    }

    /// Records a success now if an API call succeeded since the last one recorded (the end of
    /// a run); one store write at most.
    pub(crate) async fn note_last_success(&self) {
        if self.successes_unnoted.swap(0, Ordering::AcqRel) > 0 {
            self.note_success().await;
        }
    }

    async fn note_success(&self) {
        let realm = self.s.realm_id.as_str();
        if let Err(e) = self.s.store.note(realm, &TokenNote::Succeeded).await {
            // The fact is for `auth status`; the call itself succeeded.
            tracing::warn!(realm, error = %crate::error::chain(&e), "token_note_failed");
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached token if it stays valid for `need` (default: the expiry buffer).
    fn cached_valid(&self, need: Option<Duration>) -> Option<AccessToken> {
        let cache = self.cache();
        let c = cache.as_ref()?;
        let margin = match need {
            None => c.buffer,
            Some(d) => d.min(c.lifetime / 2),
        };
        (Instant::now() + margin < c.expires_at).then(|| c.token())
    }

    /// A valid access token, refreshing first if it expires within the buffer.
    pub(crate) async fn access_token(&self) -> Result<AccessToken, QboError> {
        self.valid_for(None).await
    }

    /// Refreshes only if the access token expires within `d` (capped at half its lifetime).
    pub(crate) async fn ensure_valid_for(&self, d: Duration) -> Result<AccessToken, QboError> {
        self.valid_for(Some(d)).await
    }

    async fn valid_for(&self, need: Option<Duration>) -> Result<AccessToken, QboError> {
        if let Some(t) = self.cached_valid(need) {
            return Ok(t);
        }
        let mut state = self.state.lock().await;
        // Whoever held the lock may have refreshed already: single flight.
        if let Some(t) = self.cached_valid(need) {
            return Ok(t);
        }
        self.refresh_locked(&mut state).await
    }

    /// Whether QBO has accepted the access token of `generation` (or a newer one): a 401 for
    /// it then means the token expired or was revoked since, not that fresh credentials are
    /// refused.
    pub(crate) fn proven(&self, generation: u64) -> bool {
        self.proven.load(Ordering::Relaxed) > generation
    }

    /// After a 401 with the token of `stale_generation`: refresh, unless another request did.
    pub(crate) async fn force_refresh(
        &self,
        stale_generation: u64,
    ) -> Result<AccessToken, QboError> {
        let mut state = self.state.lock().await;
        if let Some(t) = self.cached_valid(None)
            && t.generation != stale_generation
        {
            return Ok(t);
        }
        *self.cache() = None;
        self.refresh_locked(&mut state).await
    }

    /// Refreshes under the store's cross-process lock, when it has one.
    async fn refresh_locked(&self, st: &mut State) -> Result<AccessToken, QboError> {
        let realm = self.s.realm_id.as_str();
        let Some(guard) = self.s.store.lock_refresh(realm).await? else {
            return self.refresh_single_flight(st).await;
        };
        // Another process may have rotated the token since this one last read it: theirs is
        // the newest (saves happen under this lock, in order).
        let result = match self.adopt_stored(st).await {
            Ok(()) => self.refresh_single_flight(st).await,
            Err(e) => Err(e),
        };
        guard.release().await;
        result
    }

    /// Takes the stored token as the one to use next if it differs from the current one and was
    /// never rejected.
    async fn adopt_stored(&self, st: &mut State) -> Result<(), QboError> {
        let realm = self.s.realm_id.as_str();
        if !st.initialized {
            return Ok(());
        }
        // A token rescued by a process whose save failed is newer than the store's.
        if let Some(r) = self.find_rescued().await?
            && !st.current.as_ref().is_some_and(|c| same(c, &r.token))
            && !st.rejected.iter().any(|x| same(x, &r.token))
        {
            tracing::warn!(realm, path = %r.path.display(), "using the refresh token rescued by another process");
            st.current = Some(r.token);
            st.persisted = false;
            return Ok(());
        }
        if let Some(stored) = self.s.store.load(realm).await?
            && !st.current.as_ref().is_some_and(|c| same(c, &stored))
            && !st.rejected.iter().any(|r| same(r, &stored))
        {
            tracing::info!(realm, "using the refresh token another process saved");
            st.current = Some(stored);
            st.persisted = true;
        }
        Ok(())
    }

    async fn refresh_single_flight(&self, st: &mut State) -> Result<AccessToken, QboError> {
        let realm = self.s.realm_id.as_str();
        if !st.initialized {
            let stored = self.s.store.load(realm).await?;
            if let Some(r) = self.find_rescued().await? {
                // The last run could not save its rotated token: that one is the newest. The
                // store's and the configured tokens stay the fallbacks (next_candidate).
                tracing::warn!(
                    realm,
                    path = %r.path.display(),
                    "using the refresh token rescued by an earlier run; it moves into the token store after the refresh"
                );
                st.current = Some(r.token);
                st.persisted = false;
            } else if let Some(stored) = stored {
                tracing::debug!(realm, "using the refresh token from the token store");
                st.current = Some(stored);
                st.persisted = true;
            } else if self.s.configured_refresh_token.expose_secret().is_empty() {
                return Err(QboError::Auth(AuthError::NoRefreshToken {
                    realm_id: realm.to_owned(),
                }));
            } else {
                st.current = Some(self.s.configured_refresh_token.clone());
                st.persisted = false;
            }
            st.initialized = true;
        }
        loop {
            let usable = st
                .current
                .clone()
                .filter(|c| !st.rejected.iter().any(|r| same(r, c)));
            let candidate = match usable {
                Some(c) => c,
                None => match self.next_candidate(st).await? {
                    Some(c) => c,
                    None => {
                        return Err(QboError::Auth(st.last_rejection.clone().unwrap_or(
                            AuthError::InvalidGrant {
                                description: None,
                                intuit_tid: None,
                            },
                        )));
                    }
                },
            };
            match self.call_endpoint(&candidate).await {
                Ok(granted) => return self.accept(st, &candidate, granted).await,
                Err(RefreshFailure::InvalidGrant(err)) => {
                    tracing::warn!(
                        realm,
                        intuit_tid = err.intuit_tid(),
                        "refresh token rejected (invalid_grant)"
                    );
                    st.rejected.push(candidate);
                    st.last_rejection = Some(err);
                }
                Err(RefreshFailure::Other(e)) => return Err(e),
            }
        }
    }

    /// After a rejection: the store's token if another process saved a newer one, else the
    /// configured token if it differs (an operator rotated it per the runbook). Each at most once.
    async fn next_candidate(&self, st: &mut State) -> Result<Option<SecretString>, QboError> {
        let realm = self.s.realm_id.as_str();
        let untried = |t: &SecretString| !st.rejected.iter().any(|r| same(r, t));
        if let Some(stored) = self.s.store.load(realm).await?
            && untried(&stored)
        {
            tracing::info!(realm, "trying the refresh token found in the token store");
            st.current = Some(stored.clone());
            st.persisted = true;
            return Ok(Some(stored));
        }
        let configured = self.s.configured_refresh_token.clone();
        if untried(&configured) && !configured.expose_secret().is_empty() {
            tracing::warn!(
                realm,
                "the stored refresh token was rejected; trying the configured one (QBO_REFRESH_TOKEN) once"
            );
            st.current = Some(configured.clone());
            st.persisted = false;
            return Ok(Some(configured));
        }
        Ok(None)
    }

    async fn accept(
        &self,
        st: &mut State,
        used: &SecretString,
        granted: Granted,
    ) -> Result<AccessToken, QboError> {
        let realm = self.s.realm_id.as_str();
        let newest = granted.refresh_token.unwrap_or_else(|| used.clone());
        let rotated = !same(&newest, used);
        if rotated {
            st.persisted = false;
        }
        st.current = Some(newest.clone());
        if !st.persisted {
            // Persist before the new access token is used by anyone.
            self.persist(&newest).await?;
            st.persisted = true;
        }
        st.generation += 1;
        let lifetime = Duration::from_secs(granted.expires_in);
        let cached = Cached {
            value: granted.access_token,
            expires_at: granted.requested_at + lifetime,
            lifetime,
            buffer: self.s.expiry_buffer.min(lifetime / 4),
            generation: st.generation,
        };
        let token = cached.token();
        *self.cache() = Some(cached);
        let note = TokenNote::Refreshed {
            refresh_expires_in: granted.refresh_expires_in,
            hard_expires_in: granted.refresh_hard_expires_in,
            client_id: self.s.client_id.clone(),
            rotated,
        };
        if let Err(e) = self.s.store.note(realm, &note).await {
            // The facts are for `auth status`; the token itself is saved.
            tracing::warn!(realm, error = %crate::error::chain(&e), "token_note_failed");
        }
        tracing::info!(
            realm,
            expires_in = granted.expires_in,
            refresh_token_expires_in = granted.refresh_expires_in,
            refresh_token_hard_expires_in = granted.refresh_hard_expires_in,
            rotated,
            generation = st.generation,
            "token_refreshed"
        );
        Ok(token)
    }
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("realm_id", &self.s.realm_id)
            .field("token_url", &self.s.token_url.as_str())
            .field("client_id", &self.s.client_id)
            .finish_non_exhaustive()
    }
}
