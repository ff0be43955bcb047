//! Ranks as threads of one process ([`threads`]): the same collectives as MPI over channels, so
//! sharded runs are tested without an MPI installation.

use super::Transport;
use std::cell::{Cell, RefCell};
use std::sync::mpsc::{channel, Receiver, Sender};

/// A message: sender, collective sequence number, bytes.
type Message = (usize, u64, Vec<u8>);

/// One rank of a group of threads (see [`threads`]); every rank must make the same sequence
/// of collective calls, as with MPI.
pub struct ThreadTransport {
    rank: usize,
    peers: Vec<Sender<Message>>,
    inbox: Receiver<Message>,
    /// Messages that arrived for a later collective.
    early: RefCell<Vec<Message>>,
    seq: Cell<u64>,
}

/// `size` connected ranks, one per thread that will use it (move each into its thread).
pub fn threads(size: usize) -> Vec<ThreadTransport> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..size).map(|_| channel()).unzip();
    receivers
        .into_iter()
        .enumerate()
        .map(|(rank, inbox)| ThreadTransport {
            rank,
            peers: senders.clone(),
            inbox,
            early: RefCell::new(Vec::new()),
            seq: Cell::new(0),
        })
        .collect()
}

impl ThreadTransport {
    fn next_seq(&self) -> u64 {
        let s = self.seq.get();
        self.seq.set(s + 1);
        s
    }

    fn send(&self, to: usize, seq: u64, bytes: Vec<u8>) {
        // A peer that has ended drops its inbox; its own failure is what the test reports.
        let _ = self.peers[to].send((self.rank, seq, bytes));
    }

    /// The message of collective `seq` from `from` (waiting for it).
    fn receive(&self, from: usize, seq: u64) -> Vec<u8> {
        let mut early = self.early.borrow_mut();
        if let Some(k) = early.iter().position(|m| m.0 == from && m.1 == seq) {
            return early.swap_remove(k).2;
        }
        loop {
            let m = self
                .inbox
                .recv()
                .expect("a peer thread ended in the middle of a collective");
            if m.0 == from && m.1 == seq {
                return m.2;
            }
            early.push(m);
        }
    }
}

impl Transport for ThreadTransport {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.peers.len()
    }

    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        let seq = self.next_seq();
        for to in (0..self.size()).filter(|&r| r != self.rank) {
            self.send(to, seq, mine.to_vec());
        }
        (0..self.size())
            .map(|r| {
                if r == self.rank {
                    mine.to_vec()
                } else {
                    self.receive(r, seq)
                }
            })
            .collect()
    }

    fn exchange(&self, sends: &[(usize, Vec<u8>)], recvs: &mut [(usize, Vec<u8>)]) {
        let seq = self.next_seq();
        for (to, bytes) in sends {
            self.send(*to, seq, bytes.clone());
        }
        for (from, buf) in recvs.iter_mut() {
            let got = self.receive(*from, seq);
            assert_eq!(got.len(), buf.len(), "rank {from} sent another length");
            buf.copy_from_slice(&got);
        }
    }

    fn abort(&self, code: i32) -> ! {
        panic!("rank {} aborted the job (code {code})", self.rank)
    }
}
