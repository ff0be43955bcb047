//! Communication as its own operation (ALGORITHMS.md §2): gossip rounds over a resident mixing
//! matrix, exact averaging (all-reduce), and relay exchanges over spanning trees, each charging
//! the byte ledger. In one process each is a sparse mix or a copy on the backend; sharded over
//! processes ([`crate::dist`]) a gossip round first refreshes the ghost slabs its rows read and
//! an all-reduce gathers every slab, so algorithms never know which.

mod average;
mod gossip;
mod relay;

pub use average::AllReduce;
pub use gossip::{gossip_bytes_per_agent, Gossip};
pub use relay::RelayExchange;

/// Bytes each agent sent during one iteration (ALGORITHMS.md §2 byte ledger); self-messages
/// are never charged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    sent: Vec<u64>,
}

impl Ledger {
    /// An empty ledger for `agents` agents.
    pub fn new(agents: usize) -> Self {
        Ledger {
            sent: vec![0; agents],
        }
    }

    /// Starts a new iteration: nothing sent yet.
    pub fn clear(&mut self) {
        self.sent.fill(0);
    }

    /// Adds one communication's bytes per agent.
    pub fn charge(&mut self, per_agent: &[u64]) {
        for (s, b) in self.sent.iter_mut().zip(per_agent) {
            *s += b;
        }
    }

    /// Bytes per agent since the last [`Ledger::clear`].
    pub fn sent(&self) -> &[u64] {
        &self.sent
    }
}
