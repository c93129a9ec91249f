//! Who holds what: pure functions over candidate peers, no I/O.
//!
//! A file's replica set is the R live storage peers closest (XOR) to its key; the closest is
//! the root. A block's holders are chosen among the live peers closest to the block's point in
//! the key space, skipping peers known to lack room for it. The holder list is then written
//! into the record, so readers never recompute placement.

use libp2p::PeerId;

use crate::ids::distance;

/// A storage peer that may hold data, with what we know about it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub peer: PeerId,
    /// SHA-256 of the PeerId bytes: the peer's point in the key space.
    pub point: [u8; 32],
    /// Free bytes, when the peer has reported it.
    pub free: Option<u64>,
}

/// Sorts `candidates` by XOR distance to `target`, closest first; ties (impossible for distinct
/// peers) fall back to the PeerId so the order is total.
pub fn by_distance(target: &[u8; 32], candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| {
        distance(&a.point, target)
            .cmp(&distance(&b.point, target))
            .then_with(|| a.peer.cmp(&b.peer))
    });
}

/// The `n` candidates closest to `target`.
pub fn closest(target: &[u8; 32], mut candidates: Vec<Candidate>, n: usize) -> Vec<Candidate> {
    by_distance(target, &mut candidates);
    candidates.truncate(n);
    candidates
}

/// Holders for a block of `len` bytes: candidates in order of closeness to the block's point,
/// those known to be full moved to the back (still usable if nothing else is left).
pub fn holder_order(target: &[u8; 32], mut candidates: Vec<Candidate>, len: u64) -> Vec<PeerId> {
    by_distance(target, &mut candidates);
    let (roomy, full): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .partition(|c| c.free.is_none_or(|free| free >= len));
    roomy.into_iter().chain(full).map(|c| c.peer).collect()
}

/// How many acknowledgements make a majority of a replica set of `n`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::peer_point;

    fn cand(peer: PeerId, free: Option<u64>) -> Candidate {
        Candidate {
            peer,
            point: peer_point(&peer),
            free,
        }
    }

    #[test]
    fn closest_is_min_xor_distance() {
        let peers: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
        let target = [0x5a; 32];
        let got = closest(&target, peers.iter().map(|p| cand(*p, None)).collect(), 3);
        let mut brute: Vec<_> = peers
            .iter()
            .map(|p| (distance(&peer_point(p), &target), *p))
            .collect();
        brute.sort();
        let want: Vec<PeerId> = brute.iter().take(3).map(|(_, p)| *p).collect();
        assert_eq!(got.iter().map(|c| c.peer).collect::<Vec<_>>(), want);
    }

    #[test]
    fn full_peers_go_last() {
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let target = [1; 32];
        let order = holder_order(&target, peers.iter().map(|p| cand(*p, None)).collect(), 10);
        let first = order[0];
        let cands = peers
            .iter()
            .map(|p| cand(*p, if *p == first { Some(5) } else { None }))
            .collect();
        let order2 = holder_order(&target, cands, 10);
        assert_eq!(*order2.last().unwrap(), first);
    }

    #[test]
    fn majorities() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(5), 3);
    }
}
