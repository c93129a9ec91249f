//! A budget of inbound bytes buffered by frame readers, per remote peer and per node.
//!
//! Frame limits alone bound one stream; a peer opens many. Every byte a reader buffers (its
//! buffer's capacity, so growth is counted before it happens) is taken from the peer's share
//! and from the node's total, and given back when the frame is decoded or the stream fails.
//! A reader that finds the budget spent waits (bounded by [`Budget::wait`]) for other readers
//! to finish, then fails its stream: a flooding peer stalls itself, and its yamux windows
//! stop the bytes at the sender, while other peers keep their share of the node total.
//!
//! Pure accounting: no sockets, no node. The codec takes and returns bytes; whoever builds the
//! codec supplies the peer and an optional sink that counts refusals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::Notify;

/// A peer's share: one file state frame (64 MiB) and one block on top.
pub const PER_PEER: usize = 72 * 1024 * 1024;
/// The node's total: two peers' worth, so one flooding peer leaves as much for the others.
pub const PER_NODE: usize = 144 * 1024 * 1024;
/// How long a reader waits for budget before it fails its stream.
pub const WAIT: Duration = Duration::from_secs(10);

/// Called with a refusal's cause (a short fixed label), the peer and a detail line.
pub type RefusalSink = Arc<dyn Fn(&'static str, Option<PeerId>, &str) + Send + Sync>;

#[derive(Default)]
struct Used {
    total: usize,
    /// Bytes per peer; `None` is a reader that does not know its peer. Entries leave at zero,
    /// so the map holds only peers with bytes in flight.
    peers: HashMap<Option<PeerId>, usize>,
}

pub struct Budget {
    per_peer: usize,
    per_node: usize,
    wait: Duration,
    used: Mutex<Used>,
    freed: Notify,
    sink: Option<RefusalSink>,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(PER_PEER, PER_NODE, WAIT)
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("per_peer", &self.per_peer)
            .field("per_node", &self.per_node)
            .field("used", &self.used())
            .finish()
    }
}

impl Budget {
    pub fn new(per_peer: usize, per_node: usize, wait: Duration) -> Self {
        Self {
            per_peer,
            per_node: per_node.max(per_peer),
            wait,
            used: Mutex::new(Used::default()),
            freed: Notify::new(),
            sink: None,
        }
    }

    /// Refusals (oversized frames, budget timeouts, malformed frames) are also passed to `sink`.
    pub fn with_sink(mut self, sink: RefusalSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The one budget of this process, for peers that build no budget of their own (clients,
    /// tools). A node makes one per node (see `node::behaviour`).
    pub fn process() -> Arc<Budget> {
        static SHARED: std::sync::OnceLock<Arc<Budget>> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Arc::new(Budget::default())).clone()
    }

    pub fn wait(&self) -> Duration {
        self.wait
    }

    pub fn per_peer(&self) -> usize {
        self.per_peer
    }

    /// Bytes buffered now, in total.
    pub fn used(&self) -> usize {
        self.lock().total
    }

    /// Bytes buffered now for `peer`.
    pub fn used_by(&self, peer: Option<PeerId>) -> usize {
        self.lock().peers.get(&peer).copied().unwrap_or(0)
    }

    /// Counts a refusal with the sink, if there is one.
    pub fn refuse(&self, cause: &'static str, peer: Option<PeerId>, detail: &str) {
        tracing::debug!(?peer, "refused ({cause}): {detail}");
        if let Some(sink) = &self.sink {
            sink(cause, peer, detail);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `n` bytes for `peer` if both the peer's share and the total allow it.
    fn try_take(&self, peer: Option<PeerId>, n: usize) -> bool {
        let mut used = self.lock();
        let mine = used.peers.get(&peer).copied().unwrap_or(0);
        let (Some(mine), Some(total)) = (mine.checked_add(n), used.total.checked_add(n)) else {
            return false;
        };
        if mine > self.per_peer || total > self.per_node {
            return false;
        }
        used.total = total;
        used.peers.insert(peer, mine);
        true
    }

    fn give_back(&self, peer: Option<PeerId>, n: usize) {
        if n == 0 {
            return;
        }
        {
            let mut used = self.lock();
            used.total = used.total.saturating_sub(n);
            if let Some(mine) = used.peers.get_mut(&peer) {
                *mine = mine.saturating_sub(n);
                if *mine == 0 {
                    used.peers.remove(&peer);
                }
            }
        }
        self.freed.notify_waiters();
    }

    /// A lease for one frame read from `peer`; bytes it holds return when it is dropped.
    pub fn lease(self: &Arc<Self>, peer: Option<PeerId>) -> Lease {
        Lease {
            budget: self.clone(),
            peer,
            held: 0,
        }
    }
}

/// The bytes one reader holds. Dropping it gives them back (also when the read future is
/// dropped half-way, e.g. on a stream timeout).
pub struct Lease {
    budget: Arc<Budget>,
    peer: Option<PeerId>,
    held: usize,
}

/// Why a lease could not grow.
#[derive(Debug, PartialEq, Eq)]
pub enum Exhausted {
    /// More than the peer's whole share: no wait can help.
    OverShare { want: usize, share: usize },
    /// The budget stayed spent for the whole wait.
    Timeout { waited: Duration },
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exhausted::OverShare { want, share } => {
                write!(
                    f,
                    "{want} buffered bytes exceed the {share}-byte share per peer"
                )
            }
            Exhausted::Timeout { waited } => write!(
                f,
                "inbound buffer budget still spent after {} ms",
                waited.as_millis()
            ),
        }
    }
}

impl Lease {
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn peer(&self) -> Option<PeerId> {
        self.peer
    }

    /// Takes `n` more bytes, waiting up to the budget's wait for readers to give some back.
    pub async fn grow(&mut self, n: usize) -> Result<(), Exhausted> {
        let budget = self.budget.clone();
        let want = self.held.saturating_add(n);
        if want > budget.per_peer {
            return Err(Exhausted::OverShare {
                want,
                share: budget.per_peer,
            });
        }
        let deadline = tokio::time::Instant::now() + budget.wait;
        loop {
            // Registered before the check, so a release between the check and the wait
            // still wakes us.
            let freed = budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if budget.try_take(self.peer, n) {
                self.held = want;
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Exhausted::Timeout {
                    waited: budget.wait,
                });
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.budget.give_back(self.peer, self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_peer: usize, per_node: usize) -> Arc<Budget> {
        Arc::new(Budget::new(per_peer, per_node, Duration::from_millis(200)))
    }

    #[tokio::test]
    async fn a_peer_cannot_take_more_than_its_share() {
        let b = budget(100, 150);
        let (p, q) = (Some(PeerId::random()), Some(PeerId::random()));
        let mut a = b.lease(p);
        a.grow(60).await.unwrap();
        let mut a2 = b.lease(p);
        assert_eq!(
            a2.grow(50).await,
            Err(Exhausted::Timeout {
                waited: Duration::from_millis(200)
            })
        );
        // Another peer still gets the rest of the node's total, no more.
        let mut c = b.lease(q);
        c.grow(90).await.unwrap();
        let mut c2 = b.lease(q);
        assert!(c2.grow(1).await.is_err());
        assert_eq!(b.used(), 150);
        drop((a, a2, c, c2));
        assert_eq!(b.used(), 0);
        assert_eq!(b.lock().peers.len(), 0, "peers at zero leave the map");
    }

    #[tokio::test]
    async fn a_waiting_reader_proceeds_when_another_finishes() {
        let b = budget(100, 100);
        let p = Some(PeerId::random());
        let mut first = b.lease(p);
        first.grow(80).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let mut second = b2.lease(p);
            second.grow(50).await.map(|_| second.held())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(50));
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn more_than_a_share_fails_at_once() {
        let b = budget(100, 1000);
        let mut l = b.lease(None);
        assert!(matches!(
            l.grow(101).await,
            Err(Exhausted::OverShare { .. })
        ));
        assert_eq!(b.used(), 0);
    }
}
