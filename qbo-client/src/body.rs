//! Answer bodies, and the buffers they are read into.
//!
//! A page's records are slices of its body ([`crate::RawJson`]): the body is held once, not
//! once plus a copy of every record, and it lives until the last of its records is dropped.
//! Bodies are a run's largest allocations (a full page of invoices is ~4 MB) and live for
//! varying times; allocated afresh each time, they fragment the heap, and the process keeps
//! far more resident than it holds (measured with glibc's allocator: 116 MB resident for a
//! 48 MB page budget, 83 MB with large allocations kept out of the heap). So a client reuses
//! the buffers of large bodies: a dropped body gives its buffer back to the client's
//! [`BodyPool`], and a later answer is read into it.
//!
//! Invariants: a pooled buffer is empty; the free buffers a pool keeps total at most its
//! limit in bytes of capacity ([`DEFAULT_REUSED_BODY_BYTES`] unless lowered with
//! [`BodyPool::limit`], which the owner of a memory budget counts inside it), each of at least
//! [`POOLED_BYTES`] (small answers, COUNTs and faults, are allocated as usual); a body's text
//! is valid UTF-8, checked once when the body is made.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// Bodies at least this large are read into pooled buffers.
pub(crate) const POOLED_BYTES: usize = 64 * 1024;

/// Bytes of free buffers a client keeps for reuse unless told otherwise
/// ([`crate::QboClient::limit_reused_bodies`]): a dozen full pages of large invoices, enough
/// for the answers that arrive while others are being written at QBO's 10 requests in flight.
pub const DEFAULT_REUSED_BODY_BYTES: usize = 48 << 20;

/// The free buffers of one client.
#[derive(Debug)]
pub(crate) struct BodyPool {
    free: Mutex<Vec<Vec<u8>>>,
    /// Most bytes (of capacity) the free buffers may total.
    limit: AtomicUsize,
}

impl Default for BodyPool {
    fn default() -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            limit: AtomicUsize::new(DEFAULT_REUSED_BODY_BYTES),
        }
    }
}

impl BodyPool {
    fn free(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        // The list stays consistent whatever panicked while it was held.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty buffer for an answer of about `hint` bytes (its `Content-Length`, 0 when
    /// unknown): the smallest free buffer that holds it, else the largest one grown to hold
    /// it, else a new one with 1/32 more room (so that the next, slightly larger answer
    /// usually fits it too).
    pub(crate) fn buffer(&self, hint: usize) -> Vec<u8> {
        if hint < POOLED_BYTES {
            return Vec::with_capacity(hint);
        }
        let reused = {
            let mut free = self.free();
            let fits = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= hint)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            let pick = fits.or_else(|| {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, b)| b.capacity())
                    .map(|(i, _)| i)
            });
            pick.map(|i| free.swap_remove(i))
        };
        let room = hint.saturating_add(hint / 32);
        match reused {
            Some(mut b) => {
                if b.capacity() < hint {
                    b.reserve_exact(room);
                }
                b
            }
            None => Vec::with_capacity(room),
        }
    }

    /// Takes `buf` back for a later answer (kept if large and the free buffers stay within
    /// the limit).
    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() < POOLED_BYTES {
            return;
        }
        buf.clear();
        let limit = self.limit.load(Ordering::Relaxed);
        let mut free = self.free();
        if held(&free).saturating_add(buf.capacity()) <= limit {
            free.push(buf);
        }
    }

    /// Lowers the limit on the free buffers' bytes to `bytes` (never raises it: every owner
    /// sharing the client keeps the bound it counted on), freeing buffers beyond it, largest
    /// first.
    pub(crate) fn limit(&self, bytes: usize) {
        let limit = self.limit.fetch_min(bytes, Ordering::Relaxed).min(bytes);
        let mut free = self.free();
        free.sort_unstable_by_key(Vec::capacity);
        while held(&free) > limit {
            free.pop();
        }
    }

    /// Bytes the free buffers hold.
    pub(crate) fn free_bytes(&self) -> usize {
        held(&self.free())
    }

    /// Free buffers held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.free().len()
    }
}

/// Capacity of `buffers`, in bytes.
fn held(buffers: &[Vec<u8>]) -> usize {
    buffers.iter().map(Vec::capacity).sum()
}

/// The text of one answer; its buffer goes back to its pool when dropped.
#[derive(Debug)]
pub(crate) struct BodyText {
    text: String,
    pool: Weak<BodyPool>,
}

impl BodyText {
    /// The text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Bytes of the buffer the text lies in.
    pub(crate) fn capacity(&self) -> usize {
        self.text.capacity()
    }
}

impl Drop for BodyText {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(std::mem::take(&mut self.text).into_bytes());
        }
    }
}

/// A successful answer's body, checked to be UTF-8 once and shared by the records decoded
/// from it.
#[derive(Debug, Clone)]
pub(crate) struct Body(pub(crate) Arc<BodyText>);

impl Body {
    /// The body of an answer read into `bytes` (a buffer of `pool`'s, given back when the last
    /// holder drops it), or why it is not text.
    pub(crate) fn new(
        bytes: Vec<u8>,
        pool: Option<&Arc<BodyPool>>,
    ) -> Result<Self, std::string::FromUtf8Error> {
        let text = String::from_utf8(bytes)?;
        Ok(Self(Arc::new(BodyText {
            text,
            pool: pool.map_or_else(Weak::new, Arc::downgrade),
        })))
    }

    /// Text of its own, in no pool.
    pub(crate) fn owned(text: String) -> Self {
        Self(Arc::new(BodyText {
            text,
            pool: Weak::new(),
        }))
    }

    /// Its bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.0.text.as_bytes()
    }

    /// Its text.
    pub(crate) fn text(&self) -> &str {
        &self.0.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_reused_small_ones_are_not_pooled() {
        let pool = Arc::new(BodyPool::default());
        let mut b = pool.buffer(100_000);
        assert!(b.capacity() >= 103_125, "1/32 more room");
        b.extend_from_slice(&[b'x'; 100_000]);
        let first = b.as_ptr();
        let body = Body::new(b, Some(&pool)).unwrap();
        let held = body.clone();
        drop(body);
        assert_eq!(pool.len(), 0, "still held");
        drop(held);
        assert_eq!(pool.len(), 1, "given back once no one holds it");
        // The next large answer is read into the same memory, emptied.
        let again = pool.buffer(102_000);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), first);
        assert_eq!(pool.len(), 0);
        // A larger one than any free buffer grows the largest.
        drop(Body::new(again, Some(&pool)).unwrap());
        let grown = pool.buffer(1_000_000);
        assert!(grown.capacity() >= 1_000_000);
        // Small answers are not pooled.
        drop(Body::new(b"{}".to_vec(), Some(&pool)).unwrap());
        assert_eq!(pool.len(), 0);
        assert!(pool.buffer(10).capacity() < POOLED_BYTES);
    }

    #[test]
    fn the_pool_keeps_free_buffers_within_its_limit_in_bytes() {
        let pool = Arc::new(BodyPool::default());
        let big = 4 << 20;
        let n = DEFAULT_REUSED_BODY_BYTES / big + 3;
        let bodies: Vec<Body> = (0..n)
            .map(|_| Body::new(pool.buffer(big), Some(&pool)).unwrap())
            .collect();
        let each = bodies[0].0.capacity();
        drop(bodies);
        assert_eq!(
            pool.len(),
            DEFAULT_REUSED_BODY_BYTES / each,
            "the rest were freed"
        );
        assert!(pool.free_bytes() <= DEFAULT_REUSED_BODY_BYTES);
        // Lowering the limit frees what is beyond it at once, and it is never raised again.
        pool.limit(2 * each + 1);
        assert_eq!(pool.len(), 2);
        pool.limit(DEFAULT_REUSED_BODY_BYTES);
        let more: Vec<Body> = (0..4)
            .map(|_| Body::new(pool.buffer(big), Some(&pool)).unwrap())
            .collect();
        drop(more);
        assert_eq!(pool.len(), 2, "still the lower limit");
        pool.limit(0);
        assert_eq!(pool.free_bytes(), 0);
        // Text that is not UTF-8 is refused.
        assert!(Body::new(vec![0xff, 0xfe], Some(&pool)).is_err());
        assert_eq!(Body::owned("[1]".into()).text(), "[1]");
    }
}
