//! The deletions of a sync: CDC `Deleted` stubs since the deletions mark, confirmed by a read
//! by `Id`, tombstoned.
//!
//! Invariants: CDC answers at most 1,000 objects and has no paging; an answer that reaches the
//! cap is followed by another from the newest change time it held (QBO lists changes oldest
//! first), until one answer stays under the cap, whose `time` becomes the new mark. A stub whose
//! record a read by `Id` still returns is counted as refuted and never tombstoned.

use std::collections::BTreeMap;

use qbo_client::{CdcDeleted, QboClient};
use raw_sink::{Sink, SyncTally, Tombstone};
use time::OffsetDateTime;

use super::qbo;
use crate::{Entity, Error};

/// Applies the deletions of `E` QBO reports since `since`; returns the new deletions mark (the
/// `time` of the last CDC answer; `fallback` when QBO sent none).
///
/// # Errors
/// [`Error::SyncStalled`] when one second holds more than CDC's cap; QBO and database errors.
pub async fn apply<E: Entity>(
    client: &QboClient,
    sink: &Sink,
    since: OffsetDateTime,
    fallback: OffsetDateTime,
    tally: &mut SyncTally,
) -> Result<OffsetDateTime, Error> {
    let mut since = since;
    let mut stubs: BTreeMap<String, CdcDeleted> = BTreeMap::new();
    let mark = loop {
        let answer = client.cdc(&[E::NAME], since).await.map_err(qbo)?;
        let mut newest = since;
        if let Some(part) = answer.entity(E::NAME) {
            for r in &part.records {
                newest = newest.max(r.last_updated_time);
            }
            for d in &part.deleted {
                if let Some(t) = d.deleted_at {
                    newest = newest.max(t);
                }
                stubs.insert(d.id.clone(), d.clone());
            }
        }
        if !answer.is_capped() {
            break answer.time.unwrap_or(fallback);
        }
        if newest <= since {
            return Err(Error::SyncStalled(format!(
                "CDC answered its cap of {} objects for {} changes at {} alone; sync cannot go \
                 past that second",
                qbo_client::CDC_MAX_OBJECTS,
                E::NAME,
                crate::window::format_utc(since)
            )));
        }
        tracing::debug!(entity = E::NAME, objects = answer.objects(), "cdc_capped");
        since = newest;
    };
    if stubs.is_empty() {
        return Ok(mark);
    }
    let ids: Vec<&str> = stubs.keys().map(String::as_str).collect();
    let present = client
        .read_ids(E::NAME, &ids, E::NAME_LIST)
        .await
        .map_err(qbo)?;
    let gone: Vec<Tombstone<'_>> = stubs
        .values()
        .filter(|s| !present.contains(&s.id))
        .map(|s| Tombstone {
            id: &s.id,
            deleted_at: s.deleted_at.unwrap_or(mark),
            stub: Some(&s.raw),
        })
        .collect();
    let refuted = stubs.len() - gone.len();
    tally.deletes_refuted += refuted as u64;
    if refuted > 0 {
        tracing::warn!(entity = E::NAME, refuted, "cdc_deleted_but_still_present");
    }
    let out = sink
        .tombstone(E::TABLE, client.realm_id(), &gone)
        .await
        .map_err(Error::Database)?;
    tally.tombstoned += out.marked.len() as u64;
    Ok(mark)
}
