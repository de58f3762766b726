//! `/__sim/…`: statistics, truth, mutations and fault control over HTTP, mirroring the
//! library handle (for the binary and for tools written in other languages).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Shared, lock};
use crate::config::{BatchItemFault, BatchObjectCap, Consent, FaultPlan, Quirks, ScriptedFault};
use crate::error::SimError;
use crate::realm::{Realm, TruthRecord};
use crate::stats::{RequestRecord, SimStats};

impl Shared {
    /// Statistics with the live peak concurrency.
    pub(crate) fn stats_snapshot(&self) -> SimStats {
        let mut s = lock(&self.stats).stats.clone();
        s.peak_concurrency = self.gauge.peak();
        s
    }

    pub(crate) fn requests_snapshot(&self) -> Vec<RequestRecord> {
        lock(&self.stats).log.iter().cloned().collect()
    }

    pub(crate) fn reset_stats(&self) {
        lock(&self.stats).reset();
        self.gauge.reset_peak();
    }

    pub(crate) fn realm_or_err(&self, realm: Option<&str>) -> Result<Arc<Realm>, SimError> {
        match realm {
            None => self
                .realms
                .first()
                .cloned()
                .ok_or_else(|| SimError::UnknownRealm(String::new())),
            Some(id) => self
                .realm(id)
                .ok_or_else(|| SimError::UnknownRealm(id.to_string())),
        }
    }

    pub(crate) fn truth(
        &self,
        realm: Option<&str>,
        entity: &str,
    ) -> Result<Vec<TruthRecord>, SimError> {
        let r = self.realm_or_err(realm)?;
        Ok(r.truth(Realm::entity(entity)?))
    }

    pub(crate) fn create(
        &self,
        realm: Option<&str>,
        entity: &str,
        at: Option<OffsetDateTime>,
    ) -> Result<TruthRecord, SimError> {
        self.realm_or_err(realm)?.create(Realm::entity(entity)?, at)
    }

    pub(crate) fn update(
        &self,
        realm: Option<&str>,
        entity: &str,
        id: &str,
    ) -> Result<TruthRecord, SimError> {
        self.realm_or_err(realm)?.update(Realm::entity(entity)?, id)
    }

    pub(crate) fn set_active(
        &self,
        realm: Option<&str>,
        entity: &str,
        id: &str,
        active: bool,
    ) -> Result<TruthRecord, SimError> {
        self.realm_or_err(realm)?
            .set_active(Realm::entity(entity)?, id, active)
    }

    pub(crate) fn delete(
        &self,
        realm: Option<&str>,
        entity: &str,
        id: &str,
    ) -> Result<(), SimError> {
        self.realm_or_err(realm)?.delete(Realm::entity(entity)?, id)
    }

    pub(crate) fn set_faults(&self, plan: FaultPlan) {
        *lock(&self.fault_rng) =
            <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(plan.seed);
        lock(&self.settings).faults = plan;
    }

    pub(crate) fn set_script(&self, faults: Vec<ScriptedFault>) {
        *lock(&self.script) = faults.into();
    }

    pub(crate) fn set_token_script(&self, faults: Vec<ScriptedFault>) {
        *lock(&self.token_script) = faults.into();
    }

    pub(crate) fn expire_access_tokens(&self) {
        lock(&self.tokens).expire_all_access(tokio::time::Instant::now().into_std());
    }

    pub(crate) fn revoke_refresh_tokens(&self) {
        lock(&self.tokens).revoke_all_refresh();
    }
}

fn error_response(e: &SimError) -> Response {
    let status = match e {
        SimError::UnknownEntity(_) | SimError::UnknownRealm(_) | SimError::NotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

fn reply<T: serde::Serialize>(r: Result<T, SimError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
struct RealmParam {
    realm: Option<String>,
}

#[derive(Deserialize, Default)]
struct CreateBody {
    #[serde(default, with = "time::serde::rfc3339::option")]
    create_time: Option<OffsetDateTime>,
}

#[derive(Deserialize)]
struct ActiveBody {
    active: bool,
}

#[derive(Deserialize)]
struct LatencyBody {
    latency_ms: u64,
    #[serde(default)]
    jitter_ms: u64,
    #[serde(default)]
    latency_per_row_us: u64,
}

#[derive(Deserialize)]
struct LimitsBody {
    requests_per_min: Option<u32>,
    max_concurrency: Option<u32>,
    window_ms: Option<u64>,
    requests_per_sec: Option<u32>,
    batch_per_min: Option<u32>,
    batch_max_items: Option<u32>,
    batch_object_cap: Option<BatchObjectCap>,
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    Json(s.stats_snapshot()).into_response()
}

async fn stats_reset(State(s): State<Arc<Shared>>) -> Response {
    s.reset_stats();
    StatusCode::NO_CONTENT.into_response()
}

async fn requests(State(s): State<Arc<Shared>>) -> Response {
    Json(s.requests_snapshot()).into_response()
}

async fn credentials(State(s): State<Arc<Shared>>) -> Response {
    let tokens = lock(&s.tokens);
    let realms: HashMap<String, Option<String>> = s
        .realms
        .iter()
        .map(|r| (r.id.clone(), tokens.current(&r.id)))
        .collect();
    let primary = s.realms.first().map(|r| r.id.clone()).unwrap_or_default();
    Json(serde_json::json!({
        "client_id": s.client_id,
        "client_secret": s.client_secret,
        "realm_id": primary,
        "refresh_token": realms.get(&primary).cloned().flatten(),
        "refresh_tokens": realms,
    }))
    .into_response()
}

async fn truth(
    State(s): State<Arc<Shared>>,
    Path(entity): Path<String>,
    Query(q): Query<RealmParam>,
) -> Response {
    let s2 = Arc::clone(&s);
    let r = tokio::task::spawn_blocking(move || s2.truth(q.realm.as_deref(), &entity)).await;
    match r {
        Ok(r) => reply(r),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn create(
    State(s): State<Arc<Shared>>,
    Path(entity): Path<String>,
    Query(q): Query<RealmParam>,
    body: Option<Json<CreateBody>>,
) -> Response {
    let at = body.and_then(|b| b.0.create_time);
    reply(s.create(q.realm.as_deref(), &entity, at))
}

async fn update(
    State(s): State<Arc<Shared>>,
    Path((entity, id)): Path<(String, String)>,
    Query(q): Query<RealmParam>,
) -> Response {
    reply(s.update(q.realm.as_deref(), &entity, &id))
}

async fn delete(
    State(s): State<Arc<Shared>>,
    Path((entity, id)): Path<(String, String)>,
    Query(q): Query<RealmParam>,
) -> Response {
    match s.delete(q.realm.as_deref(), &entity, &id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(&e),
    }
}

async fn active(
    State(s): State<Arc<Shared>>,
    Path((entity, id)): Path<(String, String)>,
    Query(q): Query<RealmParam>,
    Json(b): Json<ActiveBody>,
) -> Response {
    reply(s.set_active(q.realm.as_deref(), &entity, &id, b.active))
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    Json(s.settings().faults).into_response()
}

async fn put_faults(State(s): State<Arc<Shared>>, Json(plan): Json<FaultPlan>) -> Response {
    s.set_faults(plan);
    StatusCode::NO_CONTENT.into_response()
}

async fn get_item_faults(State(s): State<Arc<Shared>>) -> Response {
    Json(lock(&s.item_faults).clone()).into_response()
}

async fn put_item_faults(
    State(s): State<Arc<Shared>>,
    Json(v): Json<Vec<BatchItemFault>>,
) -> Response {
    *lock(&s.item_faults) = v;
    StatusCode::NO_CONTENT.into_response()
}

async fn get_quirks(State(s): State<Arc<Shared>>) -> Response {
    Json(s.settings().quirks).into_response()
}

async fn put_quirks(State(s): State<Arc<Shared>>, Json(q): Json<Quirks>) -> Response {
    lock(&s.settings).quirks = q;
    StatusCode::NO_CONTENT.into_response()
}

async fn put_consent(State(s): State<Arc<Shared>>, Json(c): Json<Consent>) -> Response {
    lock(&s.settings).consent = c;
    StatusCode::NO_CONTENT.into_response()
}

async fn script(State(s): State<Arc<Shared>>, Json(v): Json<Vec<ScriptedFault>>) -> Response {
    s.set_script(v);
    StatusCode::NO_CONTENT.into_response()
}

async fn token_script(State(s): State<Arc<Shared>>, Json(v): Json<Vec<ScriptedFault>>) -> Response {
    s.set_token_script(v);
    StatusCode::NO_CONTENT.into_response()
}

async fn expire_access(State(s): State<Arc<Shared>>) -> Response {
    s.expire_access_tokens();
    StatusCode::NO_CONTENT.into_response()
}

async fn revoke_refresh(State(s): State<Arc<Shared>>) -> Response {
    s.revoke_refresh_tokens();
    StatusCode::NO_CONTENT.into_response()
}

async fn latency(State(s): State<Arc<Shared>>, Json(b): Json<LatencyBody>) -> Response {
    let mut st = lock(&s.settings);
    st.latency = Duration::from_millis(b.latency_ms);
    st.jitter = Duration::from_millis(b.jitter_ms);
    st.latency_per_row = Duration::from_micros(b.latency_per_row_us);
    StatusCode::NO_CONTENT.into_response()
}

async fn limits(State(s): State<Arc<Shared>>, Json(b): Json<LimitsBody>) -> Response {
    let mut st = lock(&s.settings);
    if let Some(n) = b.requests_per_min {
        st.requests_per_window = n;
    }
    if let Some(n) = b.max_concurrency {
        st.max_concurrency = n;
    }
    if let Some(ms) = b.window_ms {
        st.rate_window = Duration::from_millis(ms.max(1));
    }
    if let Some(n) = b.requests_per_sec {
        st.requests_per_sec = n;
    }
    if let Some(n) = b.batch_per_min {
        st.batch_per_window = n;
    }
    if let Some(n) = b.batch_max_items {
        st.batch_max_items = n;
    }
    if let Some(cap) = b.batch_object_cap {
        st.batch_object_cap = cap;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Control routes, mounted under `/__sim`.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/stats", get(stats))
        .route("/stats/reset", post(stats_reset))
        .route("/requests", get(requests))
        .route("/credentials", get(credentials))
        .route("/truth/{entity}", get(truth))
        .route("/records/{entity}", post(create))
        .route("/records/{entity}/{id}/update", post(update))
        .route("/records/{entity}/{id}/delete", post(delete))
        .route("/records/{entity}/{id}/active", post(active))
        .route("/faults", get(get_faults).put(put_faults))
        .route(
            "/faults/batch-items",
            get(get_item_faults).put(put_item_faults),
        )
        .route("/quirks", get(get_quirks).put(put_quirks))
        .route("/consent", axum::routing::put(put_consent))
        .route("/script", post(script))
        .route("/script/token", post(token_script))
        .route("/tokens/expire-access", post(expire_access))
        .route("/tokens/revoke-refresh", post(revoke_refresh))
        .route("/latency", axum::routing::put(latency))
        .route("/limits", axum::routing::put(limits))
}
