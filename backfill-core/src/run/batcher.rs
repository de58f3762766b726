//! Batch queries (`--batch`, off by default): [`Batcher`] sits under the loop's two choke
//! points ([`super::fetch::count_range`] and [`super::fetch::fetch_page`]) and nowhere else.
//! Those hand it their query once the page's memory is reserved and the call is claimed
//! ([`Ctx::claim_call`]); [`serve`] collects what arrives for [`LINGER`] (or until
//! [`BATCH_MAX_ITEMS`] are waiting) and sends up to 30 of them as one batch request whenever
//! the realm's batch budget has a slot free ([`QboClient::batch_slot_free`]), and the rest as
//! single queries, at most [`SINGLE_LANES`] at a time, so that single queries use what the
//! per-minute budget leaves and the rest waits here for the next batch slot.
//!
//! Invariants:
//! - one item alone goes as a single query; every item was claimed as one call, so
//!   `--max-requests` counts queries (single queries and batch items), whatever their
//!   packing: the conservative reading of Intuit's undocumented metering;
//! - an item holds no memory of its own here: its page's bytes were reserved by `fetch_page`
//!   before it reached the batcher, so the memory budget bounds what batches hold;
//! - self-checking: a page that [`ExpectedRows::check`] says was cut is read again alone
//!   (`batch_item_cut`, with the reason); when a batch answering exactly
//!   [`BATCH_MAX_OBJECTS`] objects had items cut (QBO capping the whole batch, not each item),
//!   a run-wide switch is set (`batch_cap_per_batch`, logged once) and later batches are packed
//!   so that their items' expected rows total at most [`BATCH_MAX_OBJECTS`];
//! - an item that fails alone (its own fault) is sent again alone, as a single query (with the
//!   client's retries); the other items' answers are used; a batch request that fails as a
//!   whole after the client's retries sends each of its items as a single query;
//! - a re-read is a retry of its item: counted in the run's API calls, not claimed again;
//! - a caller that stops waiting (a stop, an abandoned page) drops its answer channel: an item
//!   not sent yet is then dropped, one sent is answered to no one.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use futures::stream::{FuturesUnordered, StreamExt};
use qbo_client::{
    BATCH_MAX_ITEMS, BATCH_MAX_OBJECTS, BatchItem, BatchValue, ExpectedRows, Page, QboError, Query,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Ctx;
use super::failure::error_chain;

/// How long the first item waiting is held for others to join its batch.
pub(super) const LINGER: Duration = Duration::from_millis(3);

/// Most single queries the batcher has in flight (or waiting for the request budget) at once:
/// items beyond wait here for a batch slot or a free lane, instead of queueing in the client's
/// rate limiter where no batch could take them and where a batch would wait behind them (a
/// batch takes a slot of the request budget like any request). Four keep QBO's 500 a minute
/// busy at up to ~0.5 s a query while a batch waits behind at most four.
pub(super) const SINGLE_LANES: usize = 4;

/// What an item answers.
enum Answer {
    Page(Page),
    Count(u64),
}

/// One query handed to the batcher.
struct Item {
    query: Query,
    /// What its page should hold (`None` for a COUNT).
    expected: Option<ExpectedRows>,
    reply: oneshot::Sender<Result<Answer, QboError>>,
}

impl Item {
    /// Rows its answer should hold, for packing under the per-batch cap.
    fn rows(&self) -> u64 {
        if self.query.is_count() {
            return 0;
        }
        let max = self.query.max_results().unwrap_or(1000);
        self.expected
            .and_then(|e| e.rows(self.query.start_position().unwrap_or(1), max))
            .unwrap_or(u64::from(max))
    }
}

/// The run's batcher: a queue that [`serve`] drains.
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<Item>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Item>>>,
    /// Set once a batch was seen capped at 1,000 objects in all (see the module's invariants).
    per_batch_cap: AtomicBool,
    /// Items whose page a batch cut (read again alone).
    cut: AtomicU64,
    /// Items that failed alone in their batch (sent again alone).
    failed: AtomicU64,
}

/// What the batcher saw during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct BatchTally {
    /// Items whose page a batch cut, read again alone (`batch_item_cut`).
    pub(super) cut: u64,
    /// Items that failed alone in their batch, sent again alone (`batch_item_failed`).
    pub(super) failed: u64,
    /// Whether QBO was seen capping a whole batch at 1,000 objects (`batch_cap_per_batch`).
    pub(super) cap_per_batch: bool,
}

impl Batcher {
    pub(super) fn new() -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        Batcher {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            per_batch_cap: AtomicBool::new(false),
            cut: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// What it saw so far.
    pub(super) fn tally(&self) -> BatchTally {
        BatchTally {
            cut: self.cut.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cap_per_batch: self.per_batch_cap(),
        }
    }

    /// Hands `query` to [`serve`] and waits for its answer; sent as a single query if the
    /// batcher is not served (it always is during a run).
    async fn ask(
        &self,
        ctx: &Ctx<'_>,
        query: Query,
        expected: Option<ExpectedRows>,
    ) -> Result<Answer, QboError> {
        let (reply, answer) = oneshot::channel();
        let item = Item {
            query,
            expected,
            reply,
        };
        if let Err(mpsc::error::SendError(item)) = self.tx.send(item) {
            return single(ctx, &item.query).await;
        }
        match answer.await {
            Ok(a) => a,
            // Not answered (the server ended): nothing else will send it.
            Err(_) => Err(QboError::Malformed {
                endpoint: qbo_client::Endpoint::Api,
                detail: "the batcher ended before answering".into(),
                class: qbo_client::FailureClass::Connection,
                intuit_tid: None,
            }),
        }
    }

    /// A COUNT through the batcher.
    pub(super) async fn count(&self, ctx: &Ctx<'_>, query: Query) -> Result<u64, QboError> {
        match self.ask(ctx, query, None).await? {
            Answer::Count(n) => Ok(n),
            // Never taken as a COUNT: a page's length is not the filter's total.
            Answer::Page(_) => Err(QboError::Malformed {
                endpoint: qbo_client::Endpoint::Api,
                detail: "a COUNT query was answered with a page".into(),
                class: qbo_client::FailureClass::Rejected,
                intuit_tid: None,
            }),
        }
    }

    /// A page through the batcher, checked against `expected`.
    pub(super) async fn page(
        &self,
        ctx: &Ctx<'_>,
        query: Query,
        expected: ExpectedRows,
    ) -> Result<Page, QboError> {
        match self.ask(ctx, query, Some(expected)).await? {
            Answer::Page(p) => Ok(p),
            Answer::Count(_) => Err(QboError::Malformed {
                endpoint: qbo_client::Endpoint::Api,
                detail: "a page query was answered with a count".into(),
                class: qbo_client::FailureClass::Rejected,
                intuit_tid: None,
            }),
        }
    }

    fn per_batch_cap(&self) -> bool {
        self.per_batch_cap.load(Ordering::Relaxed)
    }
}

/// Serves the run's batcher until the run ends (the future is dropped with it; it never
/// returns); does nothing when the run does not batch.
pub(super) async fn serve(ctx: &Ctx<'_>) -> Infallible {
    let Some(batcher) = &ctx.batcher else {
        return std::future::pending().await;
    };
    let rx = batcher
        .rx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(mut rx) = rx else {
        return std::future::pending().await;
    };
    let mut queue: VecDeque<Item> = VecDeque::new();
    // When the oldest waiting item arrived (the linger runs from it).
    let mut since: Option<Instant> = None;
    let mut batches: FuturesUnordered<BoxFuture<'_, ()>> = FuturesUnordered::new();
    let mut singles: FuturesUnordered<BoxFuture<'_, ()>> = FuturesUnordered::new();
    loop {
        queue.retain(|i| !i.reply.is_closed());
        if queue.is_empty() {
            since = None;
        }
        let lingered = since.is_some_and(|t| t.elapsed() >= LINGER);
        if lingered || queue.len() >= BATCH_MAX_ITEMS {
            loop {
                // Packed first, so that a free slot is only asked for (and promised) when a
                // batch of at least two items is there to take it.
                let picked = pack(&queue, batcher.per_batch_cap());
                if picked.len() < 2 || !ctx.client.batch_slot_free() {
                    break;
                }
                let group = take(&mut queue, &picked);
                batches.push(Box::pin(send_batch(ctx, group)));
            }
            while singles.len() < SINGLE_LANES
                && let Some(item) = queue.pop_front()
            {
                singles.push(Box::pin(answer_single(ctx, item)));
            }
            since = (!queue.is_empty()).then(Instant::now);
        }
        let wake = since.map(|t| t + LINGER);
        tokio::select! {
            item = rx.recv() => match item {
                Some(item) => {
                    since.get_or_insert_with(Instant::now);
                    queue.push_back(item);
                }
                // Every sender is gone (cannot happen: the run's context holds one).
                None => return std::future::pending().await,
            },
            () = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
            Some(()) = batches.next(), if !batches.is_empty() => {}
            Some(()) = singles.next(), if !singles.is_empty() => {}
        }
    }
}

/// Which items of `queue` the next batch takes (their positions, ascending): the first
/// [`BATCH_MAX_ITEMS`]; under the per-batch cap, the first that fit together within
/// [`BATCH_MAX_OBJECTS`] expected rows (COUNTs and short pages fill in beside a full page).
fn pack(queue: &VecDeque<Item>, per_batch_cap: bool) -> Vec<usize> {
    let mut picked = Vec::new();
    let mut rows = 0u64;
    for (i, item) in queue.iter().enumerate() {
        if picked.len() == BATCH_MAX_ITEMS {
            break;
        }
        let r = item.rows();
        if per_batch_cap && rows + r > BATCH_MAX_OBJECTS as u64 && !picked.is_empty() {
            continue;
        }
        rows += r;
        picked.push(i);
    }
    picked
}

/// Removes the items at `picked` (ascending positions) from `queue`, in order.
fn take(queue: &mut VecDeque<Item>, picked: &[usize]) -> Vec<Item> {
    let mut group: Vec<Item> = picked
        .iter()
        .rev()
        .filter_map(|&i| queue.remove(i))
        .collect();
    group.reverse();
    group
}

/// `query` as a single query.
async fn single(ctx: &Ctx<'_>, query: &Query) -> Result<Answer, QboError> {
    if query.is_count() {
        ctx.client.count(query).await.map(Answer::Count)
    } else {
        ctx.client.query_page(query).await.map(Answer::Page)
    }
}

async fn answer_single(ctx: &Ctx<'_>, item: Item) {
    if item.reply.is_closed() {
        return;
    }
    let answer = single(ctx, &item.query).await;
    let _ = item.reply.send(answer);
}

/// Sends `items` as one batch request and answers each: its page or count, or, for an item
/// cut or failed, its answer as a single query.
async fn send_batch(ctx: &Ctx<'_>, items: Vec<Item>) {
    let request = BatchItem::numbered(items.iter().map(|i| i.query.clone()));
    let answer = match ctx.client.batch(&request).await {
        Ok(a) => a,
        Err(e) => {
            event!(ctx, warn, "batch_failed",
                items = items.len(),
                cause = %error_chain(&e));
            join_all(items.into_iter().map(|i| answer_single(ctx, i))).await;
            return;
        }
    };
    let objects = answer.objects();
    let mut again = Vec::new();
    let mut cut = 0usize;
    for (item, got) in items.into_iter().zip(answer.items) {
        match got.result {
            Ok(BatchValue::Count(n)) => {
                let _ = item.reply.send(Ok(Answer::Count(n)));
            }
            Ok(BatchValue::Page(page)) => match item.expected.and_then(|e| e.check(&page)) {
                None => {
                    let _ = item.reply.send(Ok(Answer::Page(page)));
                }
                Some(truncated) => {
                    cut += 1;
                    event!(ctx, warn, "batch_item_cut",
                            bid = %got.bid,
                            start_position = truncated.start_position,
                            expected = truncated.expected,
                            got = truncated.got,
                            reason = %truncated);
                    again.push(item);
                }
            },
            Err(e) => {
                event!(ctx, warn, "batch_item_failed",
                    bid = %got.bid,
                    retryable = e.is_retryable(),
                    cause = %error_chain(&e));
                again.push(item);
            }
        }
    }
    let failed = again.len() - cut;
    if let Some(b) = &ctx.batcher {
        b.cut.fetch_add(cut as u64, Ordering::Relaxed);
        b.failed.fetch_add(failed as u64, Ordering::Relaxed);
        if cut > 0 && objects == BATCH_MAX_OBJECTS && !b.per_batch_cap.swap(true, Ordering::Relaxed)
        {
            event!(
                ctx,
                warn,
                "batch_cap_per_batch",
                objects,
                items_cut = cut,
                note = "the batch answered 1,000 objects in all with items cut: QBO caps the \
                        whole batch; later batches expect at most 1,000 rows in all"
            );
        }
    }
    join_all(again.into_iter().map(|i| answer_single(ctx, i))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(q: &str, start: u32, expected: Option<ExpectedRows>) -> Item {
        let mut query = if q == "count" {
            Query::count("Invoice")
        } else {
            Query::select("Invoice").max_results(1000)
        };
        if q != "count" {
            query = query.start_position(start);
        }
        let (reply, _) = oneshot::channel();
        Item {
            query: query.build().unwrap_or_else(|e| panic!("{e}")),
            expected,
            reply,
        }
    }

    #[test]
    fn batches_take_thirty_or_under_the_per_batch_cap_what_fits_in_1000_rows() {
        let count = Some(ExpectedRows::Count(2300));
        let mut queue: VecDeque<Item> =
            (0..40).map(|i| item("page", 1 + i * 1000, count)).collect();
        assert_eq!(pack(&queue, false), (0..30).collect::<Vec<_>>());
        // Pages 1 and 2 hold 1,000 rows each, page 3 holds 300, pages beyond none: a full
        // page, the COUNT, and only what expects no row fit beside it.
        queue.insert(1, item("count", 0, None));
        let picked = pack(&queue, true);
        assert_eq!(&picked[..2], &[0, 1], "a full page and a COUNT");
        assert_eq!(picked[2..], (4..32).collect::<Vec<_>>()[..], "{picked:?}");
        let group = take(&mut queue, &picked);
        assert_eq!(group.len(), picked.len());
        assert!(group[1].query.is_count());
        assert_eq!(queue.len(), 41 - picked.len());
        // An unknown page counts as full.
        let unknown = VecDeque::from([
            item(
                "page",
                1,
                Some(ExpectedRows::MaxResults { window_ends: true }),
            ),
            item(
                "page",
                1,
                Some(ExpectedRows::MaxResults { window_ends: true }),
            ),
        ]);
        assert_eq!(pack(&unknown, true), vec![0]);
    }
}
