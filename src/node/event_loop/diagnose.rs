//! What went wrong with a connection, in one line an operator can act on: libp2p's dial errors
//! nest the same cause several times and span lines, and in a private swarm a failed
//! handshake means a key mismatch that libp2p cannot name.
//!
//! Pure functions of the error text; [`reach`](super::reach) logs what they return.

use libp2p::pnet::PreSharedKey;
use libp2p::swarm::DialError;

/// In a private swarm, a connection that fails while negotiating (or times out doing so)
/// almost always means the other side has another key, or none: the hint to append to the
/// error, or nothing.
pub(super) fn key_hint(swarm_key: Option<PreSharedKey>, error: &str) -> String {
    let Some(key) = swarm_key else {
        return String::new();
    };
    if !is_handshake_failure(error) {
        return String::new();
    }
    format!(
        " (the peer does not use this swarm's key: ours has fingerprint {})",
        key.fingerprint()
    )
}

/// Multistream garbage, a failed Noise handshake, or a negotiation timeout right after the
/// TCP connection: in a private swarm, the signature of a peer with another key (pnet
/// scrambles everything after the nonces).
fn is_handshake_failure(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("negotiat") || e.contains("handshake") || e.contains("noise")
}

/// What went wrong with a dial, briefly: libp2p nests the same cause several times over.
pub(super) fn dial_summary(error: &DialError) -> String {
    match error {
        DialError::Transport(list) if !list.is_empty() => list
            .iter()
            .map(|(_, e)| {
                let mut cause: &dyn std::error::Error = e;
                while let Some(inner) = cause.source() {
                    cause = inner;
                }
                one_line(&cause.to_string())
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => one_line(other),
    }
}

/// A dial error on one line (libp2p lists every address tried, across lines).
pub(super) fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    use libp2p::{Multiaddr, TransportError};

    #[test]
    fn a_key_hint_only_in_a_private_swarm_and_only_for_handshake_failures() {
        let key = PreSharedKey::new([7; 32]);
        let failed = "Failed to negotiate transport protocol(s)";
        assert_eq!(key_hint(None, failed), "");
        assert_eq!(key_hint(Some(key), "Connection refused (os error 111)"), "");
        let hint = key_hint(Some(key), failed);
        assert!(hint.contains(&key.fingerprint().to_string()), "{hint}");
        assert!(!key_hint(Some(key), "Noise handshake failed").is_empty());
        assert!(!key_hint(Some(key), "HANDSHAKE timed out").is_empty());
    }

    #[test]
    fn one_line_collapses_whitespace() {
        assert_eq!(one_line(&"a\n  b\tc "), "a b c");
    }

    #[test]
    fn a_dial_summary_names_each_address_innermost_cause_once() {
        let addr: Multiaddr = "/ip4/10.0.0.1/tcp/1".parse().unwrap();
        let refused = || TransportError::Other(std::io::Error::other("connection\nrefused"));
        let error = DialError::Transport(vec![(addr.clone(), refused()), (addr, refused())]);
        assert_eq!(
            dial_summary(&error),
            "connection refused; connection refused"
        );
        let other = DialError::Aborted;
        assert_eq!(dial_summary(&other), one_line(&other));
    }
}
