//! The sync ledger (`backfill.syncs`) and each entity's high-water marks
//! (`backfill.sync_marks`), issue 14.
//!
//! Invariants: marks move only when a sync or reconcile records its end, in that transaction:
//! to where it finished when it succeeded, to no further than what it applied when it was
//! stopped (a signal, the request budget); one that dies (crash, SIGKILL) leaves the marks where
//! they were and its re-run reads the same span again (the raw writes are idempotent). A mark never moves
//! backwards. Every row says what it started from and left, what it wrote and the calls spent.

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Ledger, col, count_col, status_enum, to_i64};
use crate::error::SinkError;

status_enum! {
    /// What kind of pass a row of `backfill.syncs` is.
    SyncKind, "backfill.syncs.kind" {
        /// Changed records and CDC deletions since the marks.
        Sync => "sync",
        /// Deletions of any age found by comparing counts.
        Reconcile => "reconcile",
    }
}

status_enum! {
    /// How a sync ended (or that it is still going).
    SyncStatus, "backfill.syncs.status" {
        /// In progress (or its process died; see [`Ledger::start_sync`]).
        Running => "running",
        /// Finished; the marks moved.
        Succeeded => "succeeded",
        /// Stopped by an error; the marks did not move.
        Failed => "failed",
        /// Refused before writing anything (e.g. a gap longer than CDC's 30 days).
        Refused => "refused",
        /// Stopped by a signal, or found still `running` after its process died.
        Interrupted => "interrupted",
    }
}

/// Id of a row of `backfill.syncs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyncId(i64);

impl SyncId {
    /// The numeric id.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for SyncId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An entity's high-water marks in one company (QBO's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncMarks {
    /// Every record whose `MetaData.LastUpdatedTime` is before this has been loaded.
    pub changes: OffsetDateTime,
    /// Every deletion QBO reported before this has been applied.
    pub deletes: OffsetDateTime,
}

/// What [`Ledger::start_sync`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSync {
    /// Sync or reconcile.
    pub kind: SyncKind,
    /// Pipeline name (one per entity).
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// QBO entity name, e.g. `Invoice`.
    pub entity: String,
    /// The marks it starts from.
    pub marks_before: Option<SyncMarks>,
}

/// The counts of a sync, recorded by [`Ledger::finish_sync`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncTally {
    /// New ids.
    pub inserted: u64,
    /// Changed ids (a tombstoned record that came back included).
    pub updated: u64,
    /// Ids read again with the same payload.
    pub unchanged: u64,
    /// Rows marked deleted.
    pub tombstoned: u64,
    /// CDC `Deleted` stubs that a read by Id found still present (not tombstoned).
    pub deletes_refuted: u64,
    /// QBO API requests sent (every attempt, retries included).
    pub api_calls: u64,
}

impl SyncTally {
    /// Whether the sync wrote any row (inserted, updated or tombstoned).
    #[must_use]
    pub fn wrote(&self) -> bool {
        self.inserted + self.updated + self.tombstoned > 0
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &SyncTally) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.tombstoned += other.tombstoned;
        self.deletes_refuted += other.deletes_refuted;
        self.api_calls += other.api_calls;
    }
}

/// A row of `backfill.syncs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRow {
    /// Its id.
    pub id: SyncId,
    /// Sync or reconcile.
    pub kind: SyncKind,
    /// Pipeline name.
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// QBO entity name.
    pub entity: String,
    /// Status.
    pub status: SyncStatus,
    /// The marks it started from.
    pub marks_before: Option<SyncMarks>,
    /// The marks it left (succeeded, or interrupted after applying some).
    pub marks_after: Option<SyncMarks>,
    /// Its counts.
    pub tally: SyncTally,
    /// The error that stopped it, or why it was refused.
    pub error: Option<String>,
    /// Start.
    pub started_at: OffsetDateTime,
    /// End, once finished.
    pub finished_at: Option<OffsetDateTime>,
}

const COLS: &str = "id, kind, pipeline, realm_id, entity, status, changes_mark_before, \
                    deletes_mark_before, changes_mark_after, deletes_mark_after, inserted, \
                    updated, unchanged, tombstoned, deletes_refuted, api_calls, error, \
                    started_at, finished_at";

fn marks(row: &Row, changes: &str, deletes: &str) -> Result<Option<SyncMarks>, SinkError> {
    let c: Option<OffsetDateTime> = col(row, changes)?;
    let d: Option<OffsetDateTime> = col(row, deletes)?;
    Ok(c.zip(d)
        .map(|(changes, deletes)| SyncMarks { changes, deletes }))
}

/// A `backfill.syncs` row from a result holding its columns (also the report's query).
pub(crate) fn from_row(row: &Row) -> Result<SyncRow, SinkError> {
    Ok(SyncRow {
        id: SyncId(col(row, "id")?),
        kind: SyncKind::parse(col(row, "kind")?)?,
        pipeline: col(row, "pipeline")?,
        realm_id: col(row, "realm_id")?,
        entity: col(row, "entity")?,
        status: SyncStatus::parse(col(row, "status")?)?,
        marks_before: marks(row, "changes_mark_before", "deletes_mark_before")?,
        marks_after: marks(row, "changes_mark_after", "deletes_mark_after")?,
        tally: SyncTally {
            inserted: count_col(row, "inserted")?,
            updated: count_col(row, "updated")?,
            unchanged: count_col(row, "unchanged")?,
            tombstoned: count_col(row, "tombstoned")?,
            deletes_refuted: count_col(row, "deletes_refuted")?,
            api_calls: count_col(row, "api_calls")?,
        },
        error: col(row, "error")?,
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
    })
}

impl Ledger {
    /// Records a new sync as `running`. Rows of the same kind, pipeline and realm still
    /// `running` belong to processes that died: the caller holds the pipeline's sync lock
    /// (an [`advisory_lock`](Ledger::advisory_lock)), so they become `interrupted` here.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn start_sync(&self, new: &NewSync) -> Result<SyncId, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("recording the start of a {} {}", new.pipeline, new.kind);
        client
            .execute(
                "UPDATE backfill.syncs SET status = 'interrupted', finished_at = now(), \
                 error = coalesce(error, 'the process stopped before finishing') \
                 WHERE kind = $1 AND pipeline = $2 AND realm_id = $3 AND status = 'running'",
                &[&new.kind.as_str(), &new.pipeline, &new.realm_id],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_one(
                "INSERT INTO backfill.syncs (kind, pipeline, realm_id, entity, \
                 changes_mark_before, deletes_mark_before) VALUES ($1, $2, $3, $4, $5, $6) \
                 RETURNING id",
                &[
                    &new.kind.as_str(),
                    &new.pipeline,
                    &new.realm_id,
                    &new.entity,
                    &new.marks_before.map(|m| m.changes),
                    &new.marks_before.map(|m| m.deletes),
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        Ok(SyncId(col(&row, "id")?))
    }

    /// `running → status` with the counts; when `status` is `succeeded` or `interrupted` and
    /// `marks_after` is given, the entity's marks move there (never backwards) in the same
    /// transaction (an interrupted sync passes only the marks of what it applied).
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`] when the sync is not `running` (or `status` is);
    /// [`SinkError::NotFound`]; [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn finish_sync(
        &self,
        id: SyncId,
        status: SyncStatus,
        tally: &SyncTally,
        marks_after: Option<SyncMarks>,
        error: Option<&str>,
    ) -> Result<SyncRow, SinkError> {
        let invalid = |from: String| SinkError::InvalidTransition {
            entity: "sync",
            key: id.to_string(),
            from,
            to: status.to_string(),
        };
        if status == SyncStatus::Running {
            return Err(invalid(SyncStatus::Running.to_string()));
        }
        let marks_after = marks_after
            .filter(|_| matches!(status, SyncStatus::Succeeded | SyncStatus::Interrupted));
        let mut client = self.client().await?;
        let ctx = || format!("recording the end of sync {id}");
        let tx = client
            .transaction()
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let sql = format!(
            "UPDATE backfill.syncs SET status = $2, inserted = $3, updated = $4, unchanged = $5, \
             tombstoned = $6, deletes_refuted = $7, api_calls = $8, error = $9, \
             changes_mark_after = $10, deletes_mark_after = $11, finished_at = now() \
             WHERE id = $1 AND status = 'running' RETURNING {COLS}"
        );
        let row = tx
            .query_opt(
                &sql,
                &[
                    &id.get(),
                    &status.as_str(),
                    &to_i64(tally.inserted),
                    &to_i64(tally.updated),
                    &to_i64(tally.unchanged),
                    &to_i64(tally.tombstoned),
                    &to_i64(tally.deletes_refuted),
                    &to_i64(tally.api_calls),
                    &error,
                    &marks_after.map(|m| m.changes),
                    &marks_after.map(|m| m.deletes),
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let Some(row) = row else {
            drop(tx);
            drop(client);
            return Err(match self.get_sync(id).await? {
                None => SinkError::NotFound {
                    entity: "sync",
                    key: id.to_string(),
                },
                Some(current) => invalid(current.status.to_string()),
            });
        };
        let done = from_row(&row)?;
        if let Some(m) = marks_after {
            tx.execute(
                "INSERT INTO backfill.sync_marks (pipeline, realm_id, entity, changes_mark, \
                 deletes_mark, last_sync_id) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (pipeline, realm_id) DO UPDATE SET \
                 changes_mark = greatest(backfill.sync_marks.changes_mark, EXCLUDED.changes_mark), \
                 deletes_mark = greatest(backfill.sync_marks.deletes_mark, EXCLUDED.deletes_mark), \
                 last_sync_id = EXCLUDED.last_sync_id, updated_at = now()",
                &[
                    &done.pipeline,
                    &done.realm_id,
                    &done.entity,
                    &m.changes,
                    &m.deletes,
                    &id.get(),
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        }
        tx.commit().await.map_err(|e| SinkError::query(ctx(), e))?;
        Ok(done)
    }

    /// The sync, if it exists.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn get_sync(&self, id: SyncId) -> Result<Option<SyncRow>, SinkError> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {COLS} FROM backfill.syncs WHERE id = $1"),
                &[&id.get()],
            )
            .await
            .map_err(|e| SinkError::query(format!("reading sync {id}"), e))?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// The latest `limit` syncs and reconciles, newest first, optionally of one pipeline
    /// and/or realm.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn list_syncs(
        &self,
        pipeline: Option<&str>,
        realm_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SyncRow>, SinkError> {
        let client = self.client().await?;
        client
            .query(
                &format!(
                    "SELECT {COLS} FROM backfill.syncs \
                     WHERE ($1::text IS NULL OR pipeline = $1) \
                       AND ($2::text IS NULL OR realm_id = $2) \
                     ORDER BY started_at DESC, id DESC LIMIT $3"
                ),
                &[&pipeline, &realm_id, &i64::from(limit)],
            )
            .await
            .map_err(|e| SinkError::query("listing syncs", e))?
            .iter()
            .map(from_row)
            .collect()
    }

    /// The entity's marks in `realm_id`, once a sync or reconcile has set them.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn sync_marks(
        &self,
        pipeline: &str,
        realm_id: &str,
    ) -> Result<Option<SyncMarks>, SinkError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT changes_mark, deletes_mark FROM backfill.sync_marks \
                 WHERE pipeline = $1 AND realm_id = $2",
                &[&pipeline, &realm_id],
            )
            .await
            .map_err(|e| SinkError::query(format!("reading the sync marks of {pipeline}"), e))?;
        row.map(|r| {
            Ok(SyncMarks {
                changes: col(&r, "changes_mark")?,
                deletes: col(&r, "deletes_mark")?,
            })
        })
        .transpose()
    }

    /// The mark a first sync starts from, derived from the backfill's ledger: the earliest
    /// start of the attempts that loaded the pipeline's `done` windows (a record changed after
    /// its window was read was not seen by the backfill; everything changed or created since
    /// is the sync's). `None` when the pipeline has no done window in `realm_id` (never
    /// backfilled).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn backfill_mark(
        &self,
        pipeline: &str,
        realm_id: &str,
    ) -> Result<Option<OffsetDateTime>, SinkError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT min(coalesce(started_at, finished_at, updated_at)) \
                 FROM backfill.windows WHERE pipeline = $1 AND realm_id = $2 AND status = 'done'",
                &[&pipeline, &realm_id],
            )
            .await
            .map_err(|e| {
                SinkError::query(format!("deriving the backfill mark of {pipeline}"), e)
            })?;
        row.try_get(0)
            .map_err(|e| SinkError::query(format!("deriving the backfill mark of {pipeline}"), e))
    }

    /// Pipelines with at least one `done` window in `realm_id` (backfilled there), sorted.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn backfilled_pipelines(&self, realm_id: &str) -> Result<Vec<String>, SinkError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT DISTINCT pipeline FROM backfill.windows \
                 WHERE realm_id = $1 AND status = 'done' ORDER BY pipeline",
                &[&realm_id],
            )
            .await
            .map_err(|e| SinkError::query("listing backfilled pipelines", e))?
            .iter()
            .map(|r| col(r, "pipeline"))
            .collect()
    }
}
