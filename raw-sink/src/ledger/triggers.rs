//! One-time triggers (`backfill.triggers`).

use std::fmt;

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Ledger, RunId, col, status_enum};
use crate::error::SinkError;

status_enum! {
    /// Where a one-time trigger stands.
    TriggerStatus, "backfill.triggers.status" {
        /// Created, not run to completion yet (also after a run that did not finish every window).
        Pending => "pending",
        /// A run is working on it.
        Running => "running",
        /// Every window was done; further runs are refused unless forced.
        Completed => "completed",
        /// Switched off by an operator; refused until enabled again.
        Disabled => "disabled",
    }
}

/// Identifies a trigger: its name within one pipeline and company.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TriggerKey {
    /// Pipeline name (e.g. `invoices`).
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// Trigger name (`--trigger NAME`, by default derived from pipeline and range).
    pub name: String,
}

impl TriggerKey {
    /// A key from its three parts.
    pub fn new(
        pipeline: impl Into<String>,
        realm_id: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            pipeline: pipeline.into(),
            realm_id: realm_id.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TriggerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} (pipeline {}, realm {})",
            self.name, self.pipeline, self.realm_id
        )
    }
}

/// A row of `backfill.triggers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Pipeline, realm and name.
    pub key: TriggerKey,
    /// Range start (inclusive, UTC).
    pub range_start: OffsetDateTime,
    /// Range end (exclusive, UTC).
    pub range_end: OffsetDateTime,
    /// Current status.
    pub status: TriggerStatus,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// When it became `completed` (cleared when forced to run again).
    pub completed_at: Option<OffsetDateTime>,
    /// The last run that took it.
    pub last_run_id: Option<RunId>,
}

const COLS: &str = "pipeline, realm_id, name, range_start, range_end, status, created_at, \
                    updated_at, completed_at, last_run_id";
const KEY: &str = "pipeline = $1 AND realm_id = $2 AND name = $3";

fn from_row(row: &Row) -> Result<Trigger, SinkError> {
    Ok(Trigger {
        key: TriggerKey {
            pipeline: col(row, "pipeline")?,
            realm_id: col(row, "realm_id")?,
            name: col(row, "name")?,
        },
        range_start: col(row, "range_start")?,
        range_end: col(row, "range_end")?,
        status: TriggerStatus::parse(col(row, "status")?)?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        completed_at: col(row, "completed_at")?,
        last_run_id: col::<Option<i64>>(row, "last_run_id")?.map(RunId),
    })
}

fn range_text(start: OffsetDateTime, end: OffsetDateTime) -> String {
    format!("[{start}, {end})")
}

impl Ledger {
    /// Creates the trigger as `pending` if it does not exist, and returns it.
    ///
    /// # Errors
    /// [`SinkError::TriggerConflict`] when the name exists with another range;
    /// [`SinkError::Query`] (e.g. a CHECK violation when `range_end <= range_start`).
    pub async fn create_or_get_trigger(
        &self,
        key: &TriggerKey,
        range_start: OffsetDateTime,
        range_end: OffsetDateTime,
    ) -> Result<Trigger, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("creating trigger {key}");
        let insert = client
            .prepare_cached(
                "INSERT INTO backfill.triggers (pipeline, realm_id, name, range_start, range_end) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .execute(
                &insert,
                &[
                    &key.pipeline,
                    &key.realm_id,
                    &key.name,
                    &range_start,
                    &range_end,
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        drop(client);
        let trigger = self
            .get_trigger(key)
            .await?
            .ok_or_else(|| SinkError::NotFound {
                entity: "trigger",
                key: key.to_string(),
            })?;
        if trigger.range_start != range_start || trigger.range_end != range_end {
            return Err(SinkError::TriggerConflict {
                name: key.to_string(),
                existing: range_text(trigger.range_start, trigger.range_end),
                requested: range_text(range_start, range_end),
            });
        }
        Ok(trigger)
    }

    /// Reads the trigger without writing anything, even to a database that was never migrated
    /// (then there is no trigger): what a run checks before it writes, so that a usage error
    /// leaves nothing behind. `None` if the trigger does not exist yet.
    ///
    /// # Errors
    /// [`SinkError::TriggerConflict`] when the name exists with another range;
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn check_trigger(
        &self,
        key: &TriggerKey,
        range_start: OffsetDateTime,
        range_end: OffsetDateTime,
    ) -> Result<Option<Trigger>, SinkError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one("SELECT to_regclass('backfill.triggers') IS NOT NULL", &[])
            .await
            .map_err(|e| SinkError::query(format!("checking trigger {key}"), e))?
            .get(0);
        drop(client);
        if !exists {
            return Ok(None);
        }
        let Some(trigger) = self.get_trigger(key).await? else {
            return Ok(None);
        };
        if trigger.range_start != range_start || trigger.range_end != range_end {
            return Err(SinkError::TriggerConflict {
                name: key.to_string(),
                existing: range_text(trigger.range_start, trigger.range_end),
                requested: range_text(range_start, range_end),
            });
        }
        Ok(Some(trigger))
    }

    /// The trigger, if it exists.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn get_trigger(&self, key: &TriggerKey) -> Result<Option<Trigger>, SinkError> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLS} FROM backfill.triggers WHERE {KEY}");
        let ctx = || format!("reading trigger {key}");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .query_opt(&stmt, &[&key.pipeline, &key.realm_id, &key.name])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// `pending|running → running` for `run` (a trigger left `running` by a crashed run is
    /// taken over); `completed → running` only when `force`. A `disabled` trigger is refused.
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`] (e.g. completed without force), [`SinkError::NotFound`].
    pub async fn mark_trigger_running(
        &self,
        key: &TriggerKey,
        run: RunId,
        force: bool,
    ) -> Result<Trigger, SinkError> {
        let mut from = vec![TriggerStatus::Pending, TriggerStatus::Running];
        if force {
            from.push(TriggerStatus::Completed);
        }
        self.transition(
            key,
            &from,
            TriggerStatus::Running,
            "completed_at = NULL",
            Some(run),
        )
        .await
    }

    /// `running → completed` (every window of the range is done).
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`], [`SinkError::NotFound`].
    pub async fn mark_trigger_completed(
        &self,
        key: &TriggerKey,
        run: RunId,
    ) -> Result<Trigger, SinkError> {
        self.transition(
            key,
            &[TriggerStatus::Running],
            TriggerStatus::Completed,
            "completed_at = now()",
            Some(run),
        )
        .await
    }

    /// `running → pending`: the run ended without completing the range (failures, mismatches,
    /// interruption); a later run will pick it up again.
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`], [`SinkError::NotFound`].
    pub async fn release_trigger(&self, key: &TriggerKey) -> Result<Trigger, SinkError> {
        self.transition(
            key,
            &[TriggerStatus::Running],
            TriggerStatus::Pending,
            "completed_at = NULL",
            None,
        )
        .await
    }

    /// Any status → `disabled` (idempotent).
    ///
    /// # Errors
    /// [`SinkError::NotFound`].
    pub async fn disable_trigger(&self, key: &TriggerKey) -> Result<Trigger, SinkError> {
        self.transition(
            key,
            &[
                TriggerStatus::Pending,
                TriggerStatus::Running,
                TriggerStatus::Completed,
                TriggerStatus::Disabled,
            ],
            TriggerStatus::Disabled,
            "completed_at = NULL",
            None,
        )
        .await
    }

    /// `disabled → pending`.
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`], [`SinkError::NotFound`].
    pub async fn enable_trigger(&self, key: &TriggerKey) -> Result<Trigger, SinkError> {
        self.transition(
            key,
            &[TriggerStatus::Disabled],
            TriggerStatus::Pending,
            "completed_at = NULL",
            None,
        )
        .await
    }

    /// Triggers, optionally only of one pipeline and/or realm, oldest first.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn list_triggers(
        &self,
        pipeline: Option<&str>,
        realm_id: Option<&str>,
    ) -> Result<Vec<Trigger>, SinkError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {COLS} FROM backfill.triggers \
             WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR realm_id = $2) \
             ORDER BY created_at, pipeline, realm_id, name"
        );
        let ctx = || "listing triggers".to_owned();
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .query(&stmt, &[&pipeline, &realm_id])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?
            .iter()
            .map(from_row)
            .collect()
    }

    /// One conditional update from any of `from` to `to`, recording `run` when given.
    async fn transition(
        &self,
        key: &TriggerKey,
        from: &[TriggerStatus],
        to: TriggerStatus,
        extra_set: &str,
        run: Option<RunId>,
    ) -> Result<Trigger, SinkError> {
        let client = self.client().await?;
        let sql = format!(
            "UPDATE backfill.triggers SET status = $4, updated_at = now(), \
             last_run_id = COALESCE($5::int8, last_run_id), {extra_set} \
             WHERE {KEY} AND status = ANY($6::text[]) RETURNING {COLS}"
        );
        let from_text: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let run_id = run.map(RunId::get);
        let ctx = || format!("setting trigger {key} to {to}");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &key.pipeline,
                    &key.realm_id,
                    &key.name,
                    &to.as_str(),
                    &run_id,
                    &from_text,
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        drop(client);
        match row {
            Some(row) => from_row(&row),
            None => Err(match self.get_trigger(key).await? {
                None => SinkError::NotFound {
                    entity: "trigger",
                    key: key.to_string(),
                },
                Some(current) => SinkError::InvalidTransition {
                    entity: "trigger",
                    key: key.to_string(),
                    from: current.status.to_string(),
                    to: to.to_string(),
                },
            }),
        }
    }
}
