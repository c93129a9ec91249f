//! What a linearizability run records: per-file operations on a versioned compare-and-set
//! register, each with its invocation and (if the client heard back) completion time and
//! outcome, and [`History`], the thread-safe recorder clients append to while they run.
//!
//! Times are offsets from the recorder's start on the monotonic clock ([`Instant`]), not wall
//! time: the checker only compares them, and a wall clock can step backwards under NTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A value written to a file, as a tag: a content hash (or any u64 that is unique per write)
/// stands in for the bytes, so histories stay small and comparisons cheap.
pub type Value = u64;

/// The index of an operation in its history.
pub type OpId = usize;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `swarmstore put`: version 1 of an absent name, or the version after a tombstone; fails
    /// (`AlreadyExists`) while the name is live.
    Put { value: Value },
    /// `swarmstore update [--if-version N]`: the head + 1 of a live file; with `if_version`,
    /// only if the head is exactly that version.
    Update {
        if_version: Option<u64>,
        value: Value,
    },
    /// `swarmstore get`.
    Get,
    /// `swarmstore rm [--if-version N]`: a tombstone at the head + 1.
    Rm { if_version: Option<u64> },
}

impl Op {
    /// The state this operation writes, if it is a write.
    pub fn writes(&self) -> Option<State> {
        match self {
            Op::Put { value } | Op::Update { value, .. } => Some(State::Value(*value)),
            Op::Rm { .. } => Some(State::Tombstone),
            Op::Get => None,
        }
    }

    /// The compare-and-set guard, if any.
    pub fn if_version(&self) -> Option<u64> {
        match self {
            Op::Update { if_version, .. } | Op::Rm { if_version } => *if_version,
            Op::Put { .. } | Op::Get => None,
        }
    }
}

/// The content of one version in a file's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Value(Value),
    Tombstone,
}

/// What the client heard back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write (put, update, rm) succeeded at this version.
    Written(u64),
    /// An `if_version` write was refused because the head was not that version.
    Conflict,
    /// Any other error. The write may still have taken effect (a timeout after the root
    /// stored it), so the checker treats it like an indeterminate write.
    Failed(String),
    /// A get returned this version and value.
    Read { version: u64, value: Value },
    /// A get found no such name.
    NotFound,
    /// A get found the name deleted, with the tombstone's version.
    Deleted { version: u64 },
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    pub op: Op,
    pub invoked: Duration,
    /// `None` while running, or for ever if the client never heard back (indeterminate).
    pub completion: Option<(Duration, Outcome)>,
}

impl Entry {
    pub fn completed(&self) -> Option<Duration> {
        self.completion.as_ref().map(|(t, _)| *t)
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.completion.as_ref().map(|(_, o)| o)
    }
}

/// A recorder shared by every client thread or task of a run. Cloning shares it.
#[derive(Debug, Clone)]
pub struct History {
    start: Instant,
    entries: Arc<Mutex<Vec<Entry>>>,
    /// Why an operation was refused or failed, as the client said it: printed with a
    /// violation, so a failed run says what each operation near it was told.
    notes: Arc<Mutex<HashMap<OpId, String>>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            start: Instant::now(),
            entries: Arc::new(Mutex::new(Vec::new())),
            notes: Arc::default(),
        }
    }

    /// Time since the history began, on the clock its entries use.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records that `op` on `file` is about to be sent. Call it just before the request so
    /// the recorded interval contains the real one.
    pub fn invoke(&self, file: &str, op: Op) -> OpId {
        let mut entries = self.lock();
        // The clock is read under the lock, so ids are in invocation order.
        let invoked = self.start.elapsed();
        entries.push(Entry {
            file: file.to_string(),
            op,
            invoked,
            completion: None,
        });
        entries.len() - 1
    }

    /// Records the outcome of `id`, just after the client heard back. Never call it for an
    /// operation whose fate is unknown (the process was killed, the call timed out with the
    /// request possibly applied): leave it indeterminate instead. An [`Outcome::Failed`] is
    /// treated the same way by the checker, so either is safe.
    pub fn complete(&self, id: OpId, outcome: Outcome) {
        let mut entries = self.lock();
        let at = self.start.elapsed();
        let entry = &mut entries[id];
        assert!(entry.completion.is_none(), "op {id} completed twice");
        entry.completion = Some((at, outcome));
    }

    /// A copy of everything recorded so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// Keeps what the client was told about `id` (an error's text), for diagnosis only.
    pub fn note(&self, id: OpId, text: String) {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, text);
    }

    /// The note kept for `id`, if any.
    pub fn note_of(&self, id: OpId) -> Option<String> {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A client thread that panicked mid-push leaves a consistent Vec: keep recording.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
