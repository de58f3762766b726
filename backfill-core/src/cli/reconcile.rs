//! `reconcile`: deletions of any age, found by comparing QBO's counts per CreateTime range with
//! the raw layer's live rows (see [`crate::sync::reconcile`]).

use super::run::RunArgs;
use super::sync::{SyncArgs, connect};
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
    let (client, sink) = connect(run).await?;
    let cfg = crate::sync::SyncConfig {
        overlap: args.overlap,
        page_size: run.page_size,
    };
    let r = crate::sync::reconcile::reconcile::<E>(&client, &sink, &cfg).await;
    client.note_last_success().await;
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
