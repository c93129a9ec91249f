//! Checks that a recorded [`History`](crate::history::History) is linearizable as a
//! **versioned compare-and-set register**, one register per file name.
//!
//! # Model
//!
//! A file is a chain of versions 1, 2, 3, … each holding a [`State`]: a value (a content tag)
//! or a tombstone. `put` writes version 1 of an absent name or the version after a tombstone;
//! `update` writes the head + 1 of a live file (with `if_version: Some(n)`, only if the head is
//! `n`); `rm` writes a tombstone at the head + 1; `get` returns the head (`NotFound` is
//! version 0, `Deleted` the tombstone's version). This is what `Client::put`, `update` and
//! `remove` in `src/client/write.rs` do, and the root enforces the same rules.
//!
//! Versions are explicit in every acknowledgement and every read, so no search over orders is
//! needed (the general check is NP-complete): the chain is derived from what the writes and
//! reads say, then each real-time constraint is checked directly. "A before B" below means A
//! completed strictly before B was invoked; equal instants count as concurrent.
//!
//! # Kinds of operations
//!
//! - **Acknowledged write**: a write whose outcome is `Written(v)`.
//! - **Open write**: a write that may or may not have taken effect: never completed
//!   (indeterminate) or `Failed(_)` (an error such as a timeout says nothing about the root).
//!   Errors impose no constraint of their own: they only widen what reads may see.
//! - **Refused write**: `Conflict`; it took no effect.
//! - **Read**: a get that completed with `Read`, `NotFound` or `Deleted`. A get that failed or
//!   never completed is ignored.
//!
//! # Rules (one [`Kind`] each)
//!
//! 1. [`Kind::DuplicateVersion`]: two acknowledged writes at the same version with different
//!    states (one chain per name). Two acknowledged writes of the *same* state at one version
//!    are not flagged: with content tags the checker cannot tell them from one write retried.
//! 2. [`Kind::ValueMismatch`] (version → value is a function): a read of version `v` whose
//!    state differs from the acknowledged write at `v`, or, where no write at `v` was
//!    acknowledged, from the first read of `v`.
//! 3. [`Kind::Phantom`]: a read of `(v, state)` that no write could have produced: no
//!    acknowledged write at `v`, and no open write of that state (an open write's version is
//!    unknown, so it may be any, except an `if_version: Some(n)` one, which can only be `n+1`).
//! 4. [`Kind::FutureRead`]: a read of `(v, state)` that completed before every write that
//!    could have produced it was invoked.
//! 5. [`Kind::LostWrite`]: an acknowledged write at `v` after whose acknowledgement at least
//!    one read began, and every such read returned a version below `v`: it never became
//!    visible. (A write that no read followed cannot be judged lost and is not flagged.)
//! 6. [`Kind::StaleRead`]: a read that returned a version below that of a write acknowledged
//!    before it began. Not reported for a write already reported lost (rule 5 covers every
//!    such read), so one fault gives one violation.
//! 7. [`Kind::NonMonotonicRead`]: a read that returned a version below that of a read that
//!    completed before it began. Linearizability requires it; the README promises it per
//!    client only, so a harness across clients may choose to allow this kind.
//! 8. [`Kind::StaleWrite`]: an acknowledged write at `v` that began after some write was
//!    acknowledged, or some read returned, at a version `>= v`: it was built on a head that
//!    did not include what was already visible.
//! 9. [`Kind::CasViolation`]: an acknowledged `if_version: Some(n)` write at a version other
//!    than `n + 1`; a put acknowledged at `v > 1` while `v - 1` is known live; an update or rm
//!    acknowledged at version 1, or right after a known tombstone.
//! 10. [`Kind::SpuriousConflict`]: an `if_version: Some(n)` write refused with `Conflict`
//!     although `n` was the head for its whole interval: a write acknowledged at `n`, or a read
//!     returning `n` (live), completed before it began, and every other write invoked before it
//!     completed was either acknowledged at a version `<= n` or refused. Any open write
//!     concurrent with it might have made `n + 1`, so then nothing is claimed.
//! 11. [`Kind::Malformed`]: an outcome that does not fit the operation (a get that "wrote",
//!     a write that "read", an acknowledged version 0).
//!
//! What is *not* checked: that the chain has no gaps (a version nobody in the history wrote
//! may come from a client outside it), and what a `Failed` get saw.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::history::{Entry, Op, OpId, Outcome, State};

/// Which rule a violation breaks; see the module doc for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    DuplicateVersion,
    ValueMismatch,
    Phantom,
    FutureRead,
    LostWrite,
    StaleRead,
    NonMonotonicRead,
    StaleWrite,
    CasViolation,
    SpuriousConflict,
    Malformed,
}

/// One broken rule: which, on which file, by which operations (indices into the history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: Kind,
    pub file: String,
    pub ops: Vec<OpId>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on {:?}: {}", self.kind, self.file, self.message)
    }
}

/// The checker's verdict on a history.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// How many operations the history held.
    pub ops: usize,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty()
    }

    /// Panics with the whole report unless the history passed: what a harness ends with.
    pub fn assert_linearizable(&self) {
        assert!(
            self.is_linearizable(),
            "history is not linearizable: {self}"
        );
    }

    /// The distinct kinds found, in order.
    pub fn kinds(&self) -> BTreeSet<Kind> {
        self.violations.iter().map(|v| v.kind).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} ops, {} violations", self.ops, self.violations.len())?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        Ok(())
    }
}

/// Checks every file of `history` independently (registers do not interact).
pub fn check(history: &[Entry]) -> Report {
    // BTreeMap: files in name order, so reports are deterministic.
    let mut files: BTreeMap<&str, Vec<OpId>> = BTreeMap::new();
    for (id, e) in history.iter().enumerate() {
        files.entry(&e.file).or_default().push(id);
    }
    let mut violations = Vec::new();
    for (file, ids) in files {
        FileCheck::new(history, file, &ids, &mut violations).run(&mut violations);
    }
    Report {
        ops: history.len(),
        violations,
    }
}

/// A write acknowledged at `version`.
struct Acked {
    id: OpId,
    version: u64,
    state: State,
    if_version: Option<u64>,
    is_put: bool,
    is_update_or_rm: bool,
    invoked: Duration,
    completed: Duration,
}

/// A write that may or may not have taken effect.
struct Open {
    id: OpId,
    state: State,
    if_version: Option<u64>,
    invoked: Duration,
}

/// A completed get: `state` is `None` for `NotFound` (version 0).
struct Read {
    id: OpId,
    version: u64,
    state: Option<State>,
    invoked: Duration,
    completed: Duration,
}

/// A refused `if_version` write.
struct Refused {
    id: OpId,
    if_version: u64,
    invoked: Duration,
    completed: Duration,
}

struct FileCheck<'a> {
    file: &'a str,
    acked: Vec<Acked>,
    open: Vec<Open>,
    reads: Vec<Read>,
    refused: Vec<Refused>,
    /// Every write op id with its invocation, for the spurious-conflict rule.
    writes_invoked: Vec<(OpId, Duration)>,
    /// The chain: version -> (state, op that established it), from acknowledged writes first,
    /// then from non-phantom reads of versions no acknowledged write names.
    chain: BTreeMap<u64, (State, OpId)>,
}

impl<'a> FileCheck<'a> {
    fn new(history: &'a [Entry], file: &'a str, ids: &[OpId], out: &mut Vec<Violation>) -> Self {
        let mut fc = FileCheck {
            file,
            acked: Vec::new(),
            open: Vec::new(),
            reads: Vec::new(),
            refused: Vec::new(),
            writes_invoked: Vec::new(),
            chain: BTreeMap::new(),
        };
        for &id in ids {
            let e = &history[id];
            let written = e.op.writes();
            if written.is_some() {
                fc.writes_invoked.push((id, e.invoked));
            }
            match (written, &e.completion) {
                (Some(state), None | Some((_, Outcome::Failed(_)))) => fc.open.push(Open {
                    id,
                    state,
                    if_version: e.op.if_version(),
                    invoked: e.invoked,
                }),
                (Some(_), Some((_, Outcome::Written(0)))) => fc.push(
                    out,
                    Kind::Malformed,
                    vec![id],
                    format!("#{id} acked at version 0"),
                ),
                (Some(state), Some((t, Outcome::Written(v)))) => fc.acked.push(Acked {
                    id,
                    version: *v,
                    state,
                    if_version: e.op.if_version(),
                    is_put: matches!(e.op, Op::Put { .. }),
                    is_update_or_rm: matches!(e.op, Op::Update { .. } | Op::Rm { .. }),
                    invoked: e.invoked,
                    completed: *t,
                }),
                (Some(_), Some((t, Outcome::Conflict))) => {
                    if let Some(n) = e.op.if_version() {
                        fc.refused.push(Refused {
                            id,
                            if_version: n,
                            invoked: e.invoked,
                            completed: *t,
                        });
                    }
                }
                (None, None | Some((_, Outcome::Failed(_)))) => {}
                (None, Some((t, outcome))) => {
                    let (version, state) = match outcome {
                        Outcome::Read { version, value } => (*version, Some(State::Value(*value))),
                        Outcome::Deleted { version } => (*version, Some(State::Tombstone)),
                        Outcome::NotFound => (0, None),
                        _ => {
                            fc.push(
                                out,
                                Kind::Malformed,
                                vec![id],
                                format!("get #{id} -> {outcome:?}"),
                            );
                            continue;
                        }
                    };
                    if version == 0 && state.is_some() {
                        fc.push(
                            out,
                            Kind::Malformed,
                            vec![id],
                            format!("get #{id} read version 0"),
                        );
                        continue;
                    }
                    fc.reads.push(Read {
                        id,
                        version,
                        state,
                        invoked: e.invoked,
                        completed: *t,
                    });
                }
                (Some(_), Some((_, outcome))) => fc.push(
                    out,
                    Kind::Malformed,
                    vec![id],
                    format!("write #{id} -> {outcome:?}"),
                ),
            }
        }
        fc
    }

    fn push(&self, out: &mut Vec<Violation>, kind: Kind, ops: Vec<OpId>, message: String) {
        out.push(Violation {
            kind,
            file: self.file.to_string(),
            ops,
            message,
        });
    }

    fn run(mut self, out: &mut Vec<Violation>) {
        self.chain_from_writes(out);
        self.check_reads_against_writes(out);
        self.check_cas(out);
        let lost = self.check_lost(out);
        self.check_stale_reads(&lost, out);
        self.check_stale_writes(out);
        self.check_conflicts(out);
    }

    /// Rule 1; seeds the chain with acknowledged writes.
    fn chain_from_writes(&mut self, out: &mut Vec<Violation>) {
        let mut found = Vec::new();
        for w in &self.acked {
            match self.chain.get(&w.version) {
                None => {
                    self.chain.insert(w.version, (w.state, w.id));
                }
                Some(&(state, first)) if state != w.state => found.push((first, w.id, w.version)),
                Some(_) => {}
            }
        }
        for (a, b, v) in found {
            let msg = format!(
                "#{a} and #{b} were both acknowledged at version {v} with different states"
            );
            self.push(out, Kind::DuplicateVersion, vec![a, b], msg);
        }
    }

    /// Rules 2, 3 and 4; extends the chain with what reads saw of unacknowledged versions.
    fn check_reads_against_writes(&mut self, out: &mut Vec<Violation>) {
        let mut found = Vec::new();
        for r in &self.reads {
            let Some(state) = r.state else { continue };
            let v = r.version;
            if let Some(w) = self
                .acked
                .iter()
                .find(|w| w.version == v && w.state == state)
            {
                if w.invoked > r.completed {
                    found.push((Kind::FutureRead, vec![w.id, r.id], format!(
                        "get #{} returned version {v}, which #{} wrote only after the get completed",
                        r.id, w.id
                    )));
                }
                continue;
            }
            if let Some(&(known, by)) = self.chain.get(&v) {
                // Either an acked write at `v` with another state, or an earlier read.
                if known != state {
                    found.push((Kind::ValueMismatch, vec![by, r.id], format!(
                        "get #{} returned {state:?} at version {v}, but #{by} established {known:?}",
                        r.id
                    )));
                    continue;
                }
            }
            let sources: Vec<&Open> = self
                .open
                .iter()
                .filter(|o| o.state == state && o.if_version.is_none_or(|n| n + 1 == v))
                .collect();
            if sources.is_empty() {
                found.push((
                    Kind::Phantom,
                    vec![r.id],
                    format!(
                    "get #{} returned {state:?} at version {v}, which no write could have produced",
                    r.id
                ),
                ));
                continue;
            }
            if sources.iter().all(|o| o.invoked > r.completed) {
                let mut ops: Vec<OpId> = sources.iter().map(|o| o.id).collect();
                ops.push(r.id);
                found.push((
                    Kind::FutureRead,
                    ops,
                    format!(
                        "get #{} returned {state:?} at version {v} before any write of it began",
                        r.id
                    ),
                ));
                continue;
            }
            self.chain.entry(v).or_insert((state, r.id));
        }
        for (kind, ops, msg) in found {
            self.push(out, kind, ops, msg);
        }
    }

    /// Rule 9.
    fn check_cas(&self, out: &mut Vec<Violation>) {
        for w in &self.acked {
            let prev = self.chain.get(&(w.version - 1)).map(|&(s, _)| s);
            let problem = if let Some(n) = w.if_version.filter(|&n| n + 1 != w.version) {
                Some(format!("if_version {n}"))
            } else if w.is_put && w.version > 1 && matches!(prev, Some(State::Value(_))) {
                Some(format!("put over live version {}", w.version - 1))
            } else if w.is_update_or_rm && w.version == 1 {
                Some("update or rm with no head".to_string())
            } else if w.is_update_or_rm && prev == Some(State::Tombstone) {
                Some(format!("update or rm after tombstone {}", w.version - 1))
            } else {
                None
            };
            if let Some(why) = problem {
                let msg = format!(
                    "#{} was acknowledged at version {} ({why})",
                    w.id, w.version
                );
                self.push(out, Kind::CasViolation, vec![w.id], msg);
            }
        }
    }

    /// Rule 5; returns the lost writes' ids, so rule 6 does not report them again.
    fn check_lost(&self, out: &mut Vec<Violation>) -> BTreeSet<OpId> {
        let mut lost = BTreeSet::new();
        for w in &self.acked {
            let later: Vec<&Read> = self
                .reads
                .iter()
                .filter(|r| r.invoked > w.completed)
                .collect();
            if !later.is_empty() && later.iter().all(|r| r.version < w.version) {
                lost.insert(w.id);
                let mut ops = vec![w.id];
                ops.extend(later.iter().map(|r| r.id));
                let newest = later.iter().map(|r| r.version).max().unwrap_or(0);
                let msg = format!(
                    "#{} was acknowledged at version {}, but all {} gets begun after it saw at most version {newest}",
                    w.id,
                    w.version,
                    later.len()
                );
                self.push(out, Kind::LostWrite, ops, msg);
            }
        }
        lost
    }

    /// Rules 6 and 7.
    fn check_stale_reads(&self, lost: &BTreeSet<OpId>, out: &mut Vec<Violation>) {
        for r in &self.reads {
            let newer_write = self
                .acked
                .iter()
                .filter(|w| w.completed < r.invoked && w.version > r.version)
                .filter(|w| !lost.contains(&w.id))
                .max_by_key(|w| w.version);
            if let Some(w) = newer_write {
                let msg = format!(
                    "get #{} returned version {}, though #{} was acknowledged at version {} before it began",
                    r.id, r.version, w.id, w.version
                );
                self.push(out, Kind::StaleRead, vec![w.id, r.id], msg);
            }
            let newer_read = self
                .reads
                .iter()
                .filter(|q| q.completed < r.invoked && q.version > r.version)
                .max_by_key(|q| q.version);
            if let Some(q) = newer_read {
                let msg = format!(
                    "get #{} returned version {}, though get #{} had returned version {} before it began",
                    r.id, r.version, q.id, q.version
                );
                self.push(out, Kind::NonMonotonicRead, vec![q.id, r.id], msg);
            }
        }
    }

    /// Rule 8.
    fn check_stale_writes(&self, out: &mut Vec<Violation>) {
        for w in &self.acked {
            let seen = self
                .acked
                .iter()
                .map(|x| (x.id, x.version, x.completed))
                .chain(self.reads.iter().map(|r| (r.id, r.version, r.completed)))
                .filter(|&(id, v, done)| id != w.id && done < w.invoked && v >= w.version)
                .max_by_key(|&(_, v, _)| v);
            if let Some((id, v, _)) = seen {
                let msg = format!(
                    "#{} was acknowledged at version {}, though #{id} had seen version {v} before it began",
                    w.id, w.version
                );
                self.push(out, Kind::StaleWrite, vec![id, w.id], msg);
            }
        }
    }

    /// Rule 10.
    fn check_conflicts(&self, out: &mut Vec<Violation>) {
        for c in &self.refused {
            let n = c.if_version;
            if !matches!(self.chain.get(&n), Some((State::Value(_), _))) {
                continue;
            }
            let established = self
                .acked
                .iter()
                .any(|w| w.version == n && w.completed < c.invoked)
                || self
                    .reads
                    .iter()
                    .any(|r| r.version == n && r.completed < c.invoked);
            let rivals_done = self
                .writes_invoked
                .iter()
                .filter(|&&(id, invoked)| id != c.id && invoked < c.completed)
                .all(|&(id, _)| {
                    self.acked.iter().any(|w| w.id == id && w.version <= n)
                        || self.refused.iter().any(|r| r.id == id)
                });
            if established && rivals_done {
                let msg = format!(
                    "#{} (if_version {n}) was refused, but version {n} was the head throughout",
                    c.id
                );
                self.push(out, Kind::SpuriousConflict, vec![c.id], msg);
            }
        }
    }
}
