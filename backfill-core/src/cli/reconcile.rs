//! `reconcile`: deletions of any age, found by comparing QBO's counts per CreateTime range with
//! the raw layer's live rows (see [`crate::sync::reconcile`]).

use super::connect;
use super::reports::QboArgs;
use super::run::RunArgs;
use super::sync::{SyncArgs, ended};
use crate::{Entity, Error, ExitStatus};

/// `reconcile` of entity `E`; prints what it found and the calls it spent next to a full
/// re-read's.
pub(super) async fn reconcile_cmd<E: Entity>(
    args: &SyncArgs,
    run: &RunArgs,
) -> Result<ExitStatus, Error> {
    if args.all {
        return Err(Error::Usage(
            "reconcile works on one entity: give --entity NAME (or use a pipeline binary)".into(),
        ));
    }
    let session = connect::session(&QboArgs::from(run), "reconcile").await?;
    let cfg = args.config(run, &session);
    let r = crate::sync::reconcile::reconcile::<E>(&session.client, &session.sink, &cfg).await;
    session.end(ended(&r)).await;
    let r = r?;
    let t = &r.sync.row.tally;
    println!(
        "{} reconcile {}: tombstoned {} (found missing but still returned by a read: {}); \
         ranges counted {}, re-paged {}; QBO calls {} (a full re-read: at least {})",
        E::NAME,
        r.sync.row.id,
        t.tombstoned,
        t.deletes_refuted,
        r.ranges_counted,
        r.ranges_repaged,
        t.api_calls,
        r.full_reread_calls
    );
    Ok(ExitStatus::Success)
}
