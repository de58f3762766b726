//! `reconcile`: deletions of any age, found by comparing QBO's counts per CreateTime range with
//! the raw layer's live rows (see [`crate::sync::reconcile`]), in one company or in each one
//! `--realm` / `--all-realms` select.

use super::connect;
use super::reports::QboArgs;
use super::run::RunArgs;
use super::sync::{SyncArgs, ended};
use crate::{Entity, Error, ExitStatus};

/// `reconcile` of entity `E` (per company); prints what it found and the calls it spent next to a full
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
    super::sync::per_company(run, "reconcile", |qbo, share| async move {
        let session = connect::session_for(&QboArgs::from(run), "reconcile", qbo, share).await?;
        let cfg = args.config(run, &session);
        let r = crate::sync::reconcile::reconcile::<E>(&session.client, &session.sink, &cfg).await;
        let realm = session.client.realm_id().to_owned();
        session.end(ended(&r)).await;
        let r = r?;
        let t = &r.sync.row.tally;
        println!(
            "{} reconcile {} of realm {realm}: tombstoned {} (found missing but still returned \
             by a read: {}); ranges counted {}, re-paged {}; QBO calls {} (a full re-read: at \
             least {})",
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
    })
    .await
}
