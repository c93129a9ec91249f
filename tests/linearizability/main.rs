//! Linearizability of swarmstore's files as versioned compare-and-set registers: the history
//! recorder ([`history`]) a harness records client operations with, and the checker
//! ([`checker`]) that judges a recorded history (its module doc states every rule).
//!
//! The tests here run the checker on hand-written histories, fast and without a network:
//! histories that must fail, each with the violation kind it must name, and histories that
//! must pass (concurrency, indeterminate and failed writes, reads during writes). [`run`]
//! records clients against node processes while a nemesis kills nodes, and checks the result.
//!
//! Times in the tests are milliseconds from the start of the history.

mod checker;
#[path = "../common/mod.rs"]
mod common;
mod history;
mod run;

use std::collections::BTreeSet;
use std::time::Duration;

use checker::{check, Kind, Report};
use history::{Entry, History, Op, Outcome};

const FILE: &str = "f";

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

/// An operation on [`FILE`] over `[from, to]` with `outcome`.
fn done(op: Op, from: u64, to: u64, outcome: Outcome) -> Entry {
    Entry {
        file: FILE.to_string(),
        op,
        invoked: ms(from),
        completion: Some((ms(to), outcome)),
    }
}

/// An operation on [`FILE`] invoked at `from` whose client never heard back.
fn pending(op: Op, from: u64) -> Entry {
    Entry {
        file: FILE.to_string(),
        op,
        invoked: ms(from),
        completion: None,
    }
}

fn put(value: u64, from: u64, to: u64, version: u64) -> Entry {
    done(Op::Put { value }, from, to, Outcome::Written(version))
}

fn update(value: u64, from: u64, to: u64, version: u64) -> Entry {
    let op = Op::Update {
        if_version: None,
        value,
    };
    done(op, from, to, Outcome::Written(version))
}

fn cas(if_version: u64, value: u64, from: u64, to: u64, outcome: Outcome) -> Entry {
    let op = Op::Update {
        if_version: Some(if_version),
        value,
    };
    done(op, from, to, outcome)
}

fn get(from: u64, to: u64, version: u64, value: u64) -> Entry {
    done(Op::Get, from, to, Outcome::Read { version, value })
}

fn rm(from: u64, to: u64, version: u64) -> Entry {
    let op = Op::Rm { if_version: None };
    done(op, from, to, Outcome::Written(version))
}

/// Checks `history` and asserts it passes, printing the report if not.
fn assert_passes(history: &[Entry]) {
    let report = check(history);
    assert!(
        report.is_linearizable(),
        "expected no violations:\n{report}"
    );
    assert_eq!(report.ops, history.len());
}

/// Checks `history` and asserts the kinds found are exactly `kinds`; returns the report.
fn assert_fails(history: &[Entry], kinds: &[Kind]) -> Report {
    let report = check(history);
    let want: BTreeSet<Kind> = kinds.iter().copied().collect();
    assert_eq!(report.kinds(), want, "wrong violations:\n{report}");
    for v in &report.violations {
        assert_eq!(v.file, FILE);
        assert!(!v.ops.is_empty() && !v.message.is_empty());
    }
    report
}

// ---- histories that must pass ----

#[test]
fn sequential_lifecycle_passes() {
    assert_passes(&[
        done(Op::Get, 0, 5, Outcome::NotFound),
        put(10, 10, 20, 1),
        get(30, 40, 1, 10),
        update(11, 50, 60, 2),
        get(70, 80, 2, 11),
        rm(90, 100, 3),
        done(Op::Get, 110, 120, Outcome::Deleted { version: 3 }),
        // A put after a tombstone takes the next version.
        put(12, 130, 140, 4),
        get(150, 160, 4, 12),
    ]);
}

#[test]
fn concurrent_writes_acknowledged_in_either_order_pass() {
    // Two overlapping updates: the one acknowledged first got the later version.
    assert_passes(&[
        put(1, 0, 10, 1),
        update(2, 20, 40, 3),
        update(3, 25, 35, 2),
        get(30, 50, 2, 3),
        get(45, 50, 3, 2),
        get(60, 70, 3, 2),
    ]);
}

#[test]
fn reads_during_a_write_may_see_old_or_new() {
    // The update's interval [20, 40] holds both reads; the one that saw the new version
    // completed (28) after the other began (25), so the old read can be ordered first.
    assert_passes(&[
        put(1, 0, 10, 1),
        update(2, 20, 40, 2),
        get(22, 28, 2, 2),
        get(25, 30, 1, 1),
        get(50, 60, 2, 2),
    ]);
}

#[test]
fn indeterminate_write_observed_passes() {
    assert_passes(&[
        put(1, 0, 10, 1),
        pending(
            Op::Update {
                if_version: None,
                value: 2,
            },
            20,
        ),
        get(30, 40, 2, 2),
        get(50, 60, 2, 2),
    ]);
}

#[test]
fn indeterminate_write_not_observed_passes() {
    assert_passes(&[
        put(1, 0, 10, 1),
        pending(
            Op::Update {
                if_version: None,
                value: 2,
            },
            20,
        ),
        get(30, 40, 1, 1),
        get(50, 60, 1, 1),
    ]);
}

#[test]
fn failed_write_that_took_effect_passes() {
    // An error (a timeout, say) does not prove the write did not happen.
    let timed_out = Outcome::Failed("timed out".to_string());
    assert_passes(&[
        put(1, 0, 10, 1),
        done(
            Op::Update {
                if_version: None,
                value: 2,
            },
            20,
            30,
            timed_out,
        ),
        get(40, 50, 2, 2),
    ]);
}

#[test]
fn compare_and_set_race_one_wins_passes() {
    assert_passes(&[
        put(1, 0, 10, 1),
        cas(1, 2, 20, 40, Outcome::Written(2)),
        cas(1, 3, 25, 35, Outcome::Conflict),
        get(50, 60, 2, 2),
    ]);
}

// ---- histories that must fail ----

#[test]
fn stale_read_fails() {
    let report = assert_fails(
        &[
            put(1, 0, 10, 1),
            update(2, 20, 30, 2),
            get(40, 50, 1, 1),
            // A later read sees it, so the write is not lost: only the one read is stale.
            get(60, 70, 2, 2),
        ],
        &[Kind::StaleRead],
    );
    assert_eq!(report.violations[0].ops, vec![1, 2]);
}

#[test]
fn lost_write_fails() {
    let report = assert_fails(
        &[
            put(1, 0, 10, 1),
            update(2, 20, 30, 2),
            get(40, 50, 1, 1),
            get(60, 70, 1, 1),
        ],
        // Reported once as lost, not again as two stale reads.
        &[Kind::LostWrite],
    );
    assert_eq!(report.violations.len(), 1);
    assert_eq!(report.violations[0].ops, vec![1, 2, 3]);
}

#[test]
fn duplicate_version_fails() {
    assert_fails(
        &[put(1, 0, 10, 1), update(2, 20, 30, 2), update(3, 25, 35, 2)],
        &[Kind::DuplicateVersion],
    );
}

#[test]
fn read_of_never_written_value_fails() {
    assert_fails(&[put(1, 0, 10, 1), get(20, 30, 2, 99)], &[Kind::Phantom]);
}

#[test]
fn read_of_wrong_value_for_version_fails() {
    assert_fails(
        // Version 1 holds value 1; value 2 is version 2's (the read overlaps its write, so
        // seeing version 1 would have been fine).
        &[put(1, 0, 10, 1), update(2, 5, 15, 2), get(12, 30, 1, 2)],
        &[Kind::ValueMismatch],
    );
}

#[test]
fn read_before_its_write_began_fails() {
    assert_fails(
        &[put(1, 0, 10, 1), get(12, 15, 2, 2), update(2, 20, 30, 2)],
        // The update also began after version 2 had been seen.
        &[Kind::FutureRead, Kind::StaleWrite],
    );
}

#[test]
fn read_going_backwards_fails() {
    assert_fails(
        &[
            put(1, 0, 10, 1),
            pending(
                Op::Update {
                    if_version: None,
                    value: 2,
                },
                20,
            ),
            get(30, 40, 2, 2),
            get(50, 60, 1, 1),
        ],
        &[Kind::NonMonotonicRead],
    );
}

#[test]
fn compare_and_set_at_wrong_version_fails() {
    assert_fails(
        &[
            put(1, 0, 10, 1),
            update(2, 20, 30, 2),
            cas(1, 3, 40, 50, Outcome::Written(3)),
        ],
        &[Kind::CasViolation],
    );
}

#[test]
fn conflict_while_head_matched_fails() {
    assert_fails(
        &[put(1, 0, 10, 1), cas(1, 2, 20, 30, Outcome::Conflict)],
        &[Kind::SpuriousConflict],
    );
}

#[test]
fn reads_disagreeing_on_an_unacknowledged_version_fail() {
    // Two indeterminate writes could each have made version 2, but not both.
    let upd = |value| Op::Update {
        if_version: None,
        value,
    };
    assert_fails(
        &[
            put(1, 0, 10, 1),
            pending(upd(2), 20),
            pending(upd(3), 20),
            get(30, 40, 2, 2),
            get(30, 40, 2, 3),
        ],
        &[Kind::ValueMismatch],
    );
}

#[test]
fn read_of_a_version_a_guarded_write_cannot_make_fails() {
    // The pending update is guarded on version 1, so it can only ever be version 2.
    let guarded = Op::Update {
        if_version: Some(1),
        value: 2,
    };
    assert_fails(
        &[put(1, 0, 10, 1), pending(guarded, 20), get(30, 40, 3, 2)],
        &[Kind::Phantom],
    );
}

#[test]
fn put_over_a_live_file_fails() {
    assert_fails(
        &[put(1, 0, 10, 1), put(2, 20, 30, 2)],
        &[Kind::CasViolation],
    );
}

#[test]
fn lost_delete_fails() {
    assert_fails(
        &[put(1, 0, 10, 1), rm(20, 30, 2), get(40, 50, 1, 1)],
        &[Kind::LostWrite],
    );
}

#[test]
fn conflict_beside_an_indeterminate_write_passes() {
    // The pending rm may have made version 2 before the guarded update reached the root.
    assert_passes(&[
        put(1, 0, 10, 1),
        pending(Op::Rm { if_version: None }, 15),
        cas(1, 2, 20, 30, Outcome::Conflict),
    ]);
}

#[test]
fn outcome_that_does_not_fit_the_op_fails() {
    assert_fails(
        &[done(Op::Get, 0, 10, Outcome::Written(1))],
        &[Kind::Malformed],
    );
}

#[test]
fn files_are_checked_independently() {
    // The same versions and values on two names do not collide.
    let mut other = put(1, 0, 10, 1);
    other.file = "g".to_string();
    assert_passes(&[put(2, 0, 10, 1), other, get(20, 30, 1, 2)]);
}

// ---- the recorder ----

#[test]
fn recorder_from_threads_gives_a_checkable_history() {
    let history = History::new();
    let writer = {
        let h = history.clone();
        std::thread::spawn(move || {
            let id = h.invoke(FILE, Op::Put { value: 7 });
            h.complete(id, Outcome::Written(1));
        })
    };
    writer.join().unwrap();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let h = history.clone();
            std::thread::spawn(move || {
                let id = h.invoke(FILE, Op::Get);
                h.complete(
                    id,
                    Outcome::Read {
                        version: 1,
                        value: 7,
                    },
                );
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    // One client that never heard back.
    history.invoke(FILE, Op::Rm { if_version: None });

    let entries = history.entries();
    assert_eq!(entries.len(), 6);
    assert!(entries.windows(2).all(|w| w[0].invoked <= w[1].invoked));
    assert!(entries
        .iter()
        .all(|e| e.completed().is_none_or(|t| t >= e.invoked)));
    assert!(entries[5].outcome().is_none());
    check(&entries).assert_linearizable();
}
