//! The one acceptance rule for file states, used by every path that stores or forwards a
//! record: a root taking an owner's publish ([`check_successor`]), a replica taking a copy
//! ([`accept_copy`]), and anyone checking a state it was handed ([`check_state`]).
//!
//! What the rules guarantee, with every other field checked by [`FileRecord::verify`]:
//! * **Signatures**: every version is signed by its owner, and names the key it is stored
//!   under.
//! * **Owner continuity**: within a state, each version follows the one before by exactly +1,
//!   and by the same owner unless the one before is a tombstone (the owner's signed release
//!   of the name, which a new owner's first version must follow). Ownership never changes
//!   otherwise, so no stranger can overwrite or erase another owner's file.
//! * **Versions only rise**: a replica takes a copy only if its head is newer than what it
//!   holds (or the same version with newer root-kept fields), never older, and a jump of more
//!   than [`MAX_VERSION_JUMP`] is refused. Versions above [`MAX_VERSION`] are invalid, so no
//!   arithmetic on them can wrap.
//! * **A copy that does not extend the held history is refused**: a different owner without
//!   the tombstone in between, or a different record at a version already held, is a fork. A
//!   node refuses it; which history is right is settled by the majority of the replica set
//!   (see `node::root` and `node::access`), never by one peer.

use super::{FileRecord, FileState, RecordError, MAX_RETAINED, MAX_USERS, MAX_VERSION};
use crate::ids::FileKey;

/// The furthest a replica lets a copy's head jump past the version it holds. A replica that
/// was down misses at most the updates of its downtime; a jump this large is an attack.
pub const MAX_VERSION_JUMP: u64 = 1 << 32;

/// How a publish relates to the version a root holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Succession {
    /// A new version to store.
    Newer,
    /// The very version already held (a retry): answer success, change nothing.
    Same,
}

/// Checks that `new` may follow the head of `held` as an owner's publish (put, update or rm).
///
/// Rules: a new name starts at version 1; a live file accepts only version head+1 from its
/// owner; after a tombstone the name is free and a put continues the numbering at head+1 with
/// a fresh history, so a replica holding the tombstone can never mistake it for older.
///
/// A record `held` already has, at the head or retained below it, is a retry ([`Succession::
/// Same`]): an access node whose first root took the version but did not answer asks the
/// next, and by then a later write may have followed it. Refused, a write that took effect
/// would be reported to its writer as never made (the linearizability run found this).
pub fn check_successor(held: &FileState, new: &FileRecord) -> Result<Succession, RecordError> {
    if held.versions.iter().any(|r| r.same_content(new)) {
        return Ok(Succession::Same);
    }
    let Some(head) = held.head() else {
        if new.version != 1 {
            return Err(RecordError::Conflict {
                name: new.name.clone(),
                current: 0,
                attempted: new.version.saturating_sub(1),
            });
        }
        return Ok(Succession::Newer);
    };
    if !head.tombstone && head.owner != new.owner {
        return Err(RecordError::PermissionDenied {
            name: new.name.clone(),
            owner: head.owner.to_string(),
        });
    }
    if head.version.checked_add(1) != Some(new.version) {
        return Err(RecordError::Conflict {
            name: new.name.clone(),
            current: head.version,
            attempted: new.version.saturating_sub(1),
        });
    }
    Ok(Succession::Newer)
}

/// Checks a whole state on its own: it is not empty, every version verifies and belongs to
/// `key`, the versions form one owner chain, and its lists are within bounds. Root-kept
/// fields (holders, revision, users) are authenticated separately (see `attest`).
pub fn check_state(key: &FileKey, state: &FileState) -> Result<(), RecordError> {
    if state.versions.is_empty() {
        return Err(RecordError::Invalid("empty file state".into()));
    }
    if state.versions.len() > MAX_RETAINED {
        return Err(RecordError::Invalid(format!(
            "{} retained versions; at most {MAX_RETAINED}",
            state.versions.len()
        )));
    }
    if state.users.len() > MAX_USERS {
        return Err(RecordError::Invalid(format!(
            "{} user entries; at most {MAX_USERS}",
            state.users.len()
        )));
    }
    for r in &state.versions {
        if r.key() != *key {
            return Err(RecordError::Invalid(format!(
                "version of {:?} sent under another key",
                r.name
            )));
        }
        r.verify()?;
    }
    for pair in state.versions.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.version.checked_add(1) != Some(b.version) {
            return Err(RecordError::Invalid(format!(
                "version {} follows version {}",
                b.version, a.version
            )));
        }
        if !a.tombstone && a.owner != b.owner {
            return Err(RecordError::PermissionDenied {
                name: b.name.clone(),
                owner: a.owner.to_string(),
            });
        }
    }
    Ok(())
}

/// What a replica does with a copy that passed [`check_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopt {
    /// Newer: store it.
    Take,
    /// Not newer: keep what is held (not an error: copies cross in flight).
    Keep,
}

/// Whether a replica holding `held` takes the copy `incoming` (both checked on their own).
/// The root-kept fields of an adopted copy must also be authenticated by the caller.
pub fn accept_copy(held: Option<&FileState>, incoming: &FileState) -> Result<Adopt, RecordError> {
    let Some(held) = held else {
        return Ok(Adopt::Take);
    };
    let (Some(mine), Some(theirs)) = (held.head(), incoming.head()) else {
        return Err(RecordError::Invalid("empty file state".into()));
    };
    if theirs.version < mine.version {
        // Older: stale if it is of our history, a fork if it is not (the majority settles).
        if !extends(theirs, held) {
            return Err(forked(mine));
        }
        return Err(RecordError::Stale {
            current: mine.version,
            attempted: theirs.version,
        });
    }
    if theirs.version == mine.version {
        if !theirs.same_content(mine) {
            return Err(forked(mine));
        }
        return Ok(if incoming.rev > held.rev {
            Adopt::Take
        } else {
            Adopt::Keep
        });
    }
    if theirs.version - mine.version > MAX_VERSION_JUMP {
        return Err(RecordError::Invalid(format!(
            "version {} jumps more than {MAX_VERSION_JUMP} past the held {}",
            theirs.version, mine.version
        )));
    }
    if !extends(mine, incoming) {
        return Err(forked(mine));
    }
    Ok(Adopt::Take)
}

/// Whether `incoming` continues the history whose head is `mine`: it holds `mine` itself, or
/// starts after it by the same owner, or after `mine` released the name (a tombstone).
pub fn extends(mine: &FileRecord, incoming: &FileState) -> bool {
    if let Some(same) = incoming.version(mine.version) {
        return same.same_content(mine);
    }
    match incoming.versions.first() {
        Some(oldest) if oldest.version > mine.version => {
            mine.tombstone || oldest.owner == mine.owner
        }
        _ => false,
    }
}

/// Whether two states are of one history (either extends the other).
pub fn compatible(a: &FileState, b: &FileState) -> bool {
    match (a.head(), b.head()) {
        (Some(x), Some(y)) if x.version <= y.version => extends(x, b),
        (Some(_), Some(y)) => extends(y, a),
        _ => false,
    }
}

fn forked(mine: &FileRecord) -> RecordError {
    RecordError::PermissionDenied {
        name: mine.name.clone(),
        owner: mine.owner.to_string(),
    }
}

/// Versions at or below [`MAX_VERSION`]: checked by [`FileRecord::verify`].
pub(super) fn version_in_range(v: u64) -> bool {
    (1..=MAX_VERSION).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{record, state_of};
    use super::*;
    use libp2p::identity::Keypair;

    #[test]
    fn succession_rules() {
        let owner = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let v1 = record(&owner, 1, &[b"abcd"]);
        let none = FileState::empty();
        assert_eq!(check_successor(&none, &v1), Ok(Succession::Newer));
        assert!(matches!(
            check_successor(&none, &record(&owner, 2, &[b"x"])),
            Err(RecordError::Conflict { current: 0, .. })
        ));
        let at1 = state_of(vec![v1.clone()]);
        assert_eq!(check_successor(&at1, &v1), Ok(Succession::Same));
        let v2 = record(&owner, 2, &[b"efgh"]);
        assert_eq!(check_successor(&at1, &v2), Ok(Succession::Newer));
        let at2 = state_of(vec![v1.clone(), v2.clone()]);
        assert!(matches!(
            check_successor(&at2, &record(&owner, 2, &[b"zzzz"])),
            Err(RecordError::Conflict { current: 2, .. })
        ));
        assert!(matches!(
            check_successor(&at1, &record(&other, 2, &[b"x"])),
            Err(RecordError::PermissionDenied { .. })
        ));
        // A retry of version 2 after version 3 followed it: the same publish, not a conflict.
        let v3 = record(&owner, 3, &[b"ijkl"]);
        let at3 = state_of(vec![v1.clone(), v2.clone(), v3]);
        assert_eq!(check_successor(&at3, &v2), Ok(Succession::Same));
        assert_eq!(check_successor(&at3, &v1), Ok(Succession::Same));
        // Another record at a retained version is still refused.
        assert!(matches!(
            check_successor(&at3, &record(&owner, 2, &[b"zzzz"])),
            Err(RecordError::Conflict { current: 3, .. })
        ));
    }

    #[test]
    fn a_stranger_cannot_overwrite_or_fork_a_held_file() {
        let owner = Keypair::generate_ed25519();
        let thief = Keypair::generate_ed25519();
        let held = state_of(vec![
            record(&owner, 1, &[b"abcd"]),
            record(&owner, 2, &[b"ef"]),
        ]);
        let key = held.versions[0].key();
        // The thief's own chain for the same name, one version ahead.
        let forged = state_of(vec![record(&thief, 3, &[b"evil"])]);
        check_state(&key, &forged).expect("valid on its own");
        assert!(matches!(
            accept_copy(Some(&held), &forged),
            Err(RecordError::PermissionDenied { .. })
        ));
        // The thief's record spliced after the owner's chain: the state itself is refused.
        let mut spliced = held.clone();
        spliced.versions.push(record(&thief, 3, &[b"evil"]));
        assert!(check_state(&key, &spliced).is_err());
        // A different record at a version already held is a fork.
        let fork = state_of(vec![
            record(&owner, 1, &[b"abcd"]),
            record(&owner, 2, &[b"xy"]),
        ]);
        assert!(accept_copy(Some(&held), &fork).is_err());
        // Older is stale; the owner's own next version is taken.
        let older = state_of(vec![record(&owner, 1, &[b"abcd"])]);
        assert!(matches!(
            accept_copy(Some(&held), &older),
            Err(RecordError::Stale { .. })
        ));
        let mut next = held.clone();
        next.versions.push(record(&owner, 3, &[b"gh"]));
        assert_eq!(accept_copy(Some(&held), &next), Ok(Adopt::Take));
        // Skipping versions by the same owner is fine; a huge jump is not.
        let later = state_of(vec![record(&owner, 9, &[b"zz"])]);
        assert_eq!(accept_copy(Some(&held), &later), Ok(Adopt::Take));
        let far = state_of(vec![record(&owner, MAX_VERSION_JUMP + 3, &[b"zz"])]);
        assert!(accept_copy(Some(&held), &far).is_err());
    }

    #[test]
    fn a_new_owner_follows_only_a_tombstone() {
        let owner = Keypair::generate_ed25519();
        let next_owner = Keypair::generate_ed25519();
        let held = state_of(vec![record(&owner, 1, &[b"abcd"])]);
        let mut tomb = record(&owner, 2, &[]);
        tomb.tombstone = true;
        tomb.size = 0;
        tomb.blocks.clear();
        tomb.sign(&owner).expect("sign");
        let reborn = state_of(vec![tomb.clone(), record(&next_owner, 3, &[b"new"])]);
        let key = held.versions[0].key();
        check_state(&key, &reborn).expect("a tombstone frees the name");
        assert_eq!(accept_copy(Some(&held), &reborn), Ok(Adopt::Take));
        assert!(compatible(&held, &reborn));
        // Without the tombstone in the copy, the owner change cannot be verified.
        let bare = state_of(vec![record(&next_owner, 3, &[b"new"])]);
        assert!(accept_copy(Some(&held), &bare).is_err());
        assert!(!compatible(&held, &bare));
        // Held tombstone: anyone's next version is taken.
        let dead = state_of(vec![tomb]);
        assert_eq!(accept_copy(Some(&dead), &bare), Ok(Adopt::Take));
    }

    #[test]
    fn versions_near_the_top_are_invalid() {
        let owner = Keypair::generate_ed25519();
        assert!(!version_in_range(0));
        assert!(version_in_range(MAX_VERSION));
        assert!(!version_in_range(MAX_VERSION + 1));
        assert!(!version_in_range(u64::MAX));
        let mut top = record(&owner, 1, &[b"a"]);
        top.version = u64::MAX;
        top.sign(&owner).expect("sign");
        assert!(top.verify().is_err(), "u64::MAX refused");
        assert!(check_successor(&state_of(vec![top]), &record(&owner, 2, &[b"b"])).is_err());
    }
}
