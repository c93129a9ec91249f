//! Private files, with node processes and the CLI: nothing a holder stores contains the
//! plaintext; the owner, a capability and a shared reader read identical bytes; a stranger
//! gets a clear "no read capability" (exit 4); after `unshare` the dropped reader cannot read
//! the new version; and swapped-in blocks fail the get, never return wrong bytes.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::procs::{cli, json, sha256_of, wait_live, NodeProc};
use libp2p::identity::Keypair;

/// Content whose every aligned 8-byte word is distinct and known, so a scan can find any
/// 16-byte window of it (each contains a whole aligned word) by looking words up.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut i = 0u64;
    while out.len() < len {
        let mut z = (seed << 40) ^ i;
        // splitmix64
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Finds 16-byte windows of known plaintexts in files.
struct Scanner {
    texts: Vec<(String, Vec<u8>)>,
    words: HashMap<u64, (usize, usize)>,
    /// A quick filter on the low 24 bits of a word before the map lookup.
    filter: Vec<u64>,
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            texts: Vec::new(),
            words: HashMap::new(),
            filter: vec![0; (1 << 24) / 64],
        }
    }

    fn add(&mut self, label: &str, text: &[u8]) {
        let t = self.texts.len();
        for (w, chunk) in text.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().unwrap());
            self.words.insert(word, (t, w * 8));
            let bit = (word & 0xff_ffff) as usize;
            self.filter[bit / 64] |= 1 << (bit % 64);
        }
        self.texts.push((label.to_string(), text.to_vec()));
    }

    /// The first plaintext window found in `data`, as (label, offset in the file).
    fn find(&self, data: &[u8]) -> Option<(String, usize)> {
        if data.len() < 16 {
            return None;
        }
        for off in 0..=data.len() - 8 {
            let word = u64::from_le_bytes(data[off..off + 8].try_into().unwrap());
            let bit = (word & 0xff_ffff) as usize;
            if self.filter[bit / 64] & (1 << (bit % 64)) == 0 {
                continue;
            }
            let Some(&(t, q)) = self.words.get(&word) else {
                continue;
            };
            let text = &self.texts[t].1;
            // The window starts up to 7 bytes before the word, in both.
            for d in 0..8 {
                let (Some(p), Some(o)) = (q.checked_sub(d), off.checked_sub(d)) else {
                    continue;
                };
                if p + 16 <= text.len()
                    && o + 16 <= data.len()
                    && data[o..o + 16] == text[p..p + 16]
                {
                    return Some((self.texts[t].0.clone(), o));
                }
            }
        }
        None
    }

    /// Every file under `dirs` holding a window of a known plaintext.
    fn scan(&self, dirs: &[PathBuf]) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack: Vec<PathBuf> = dirs.to_vec();
        let mut files = 0;
        while let Some(p) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                for e in std::fs::read_dir(&p).unwrap().flatten() {
                    stack.push(e.path());
                }
            } else if meta.is_file() {
                files += 1;
                let data = std::fs::read(&p).unwrap_or_default();
                if let Some((label, off)) = self.find(&data) {
                    found.push(format!("{} holds {label} at byte {off}", p.display()));
                }
            }
        }
        assert!(files > 10, "scanned {files} files only");
        found
    }
}

fn write_key(path: &Path) -> libp2p::PeerId {
    let key = Keypair::generate_ed25519();
    std::fs::write(path, key.to_protobuf_encoding().unwrap()).unwrap();
    key.public().to_peer_id()
}

fn get(args: &[&str], id: &Path) -> std::process::Output {
    cli(args, id)
}

#[test]
fn private_files_are_sealed_from_holders_and_read_only_with_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = tmp.path().join("owner.key");
    let friend = tmp.path().join("friend.key");
    let stranger = tmp.path().join("stranger.key");
    write_key(&owner);
    let friend_peer = write_key(&friend);
    // The friend learns its peer id from `whoami` (no access node needed) and tells the owner.
    let friend_id = json(&cli(&["whoami", "--json"], &friend))["peer_id"]
        .as_str()
        .expect("whoami prints a peer id")
        .to_string();
    assert_eq!(friend_id, friend_peer.to_string());
    write_key(&stranger);
    let dirs: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let n0 = NodeProc::start(&dirs[0], &[], &[]);
    let a0 = n0.addr();
    let _rest: Vec<NodeProc> = dirs[1..]
        .iter()
        .map(|d| NodeProc::start(d, std::slice::from_ref(&a0), &[]))
        .collect();
    wait_live(&a0, 3, &owner);

    let big = content(20 << 20, 1);
    let small = content(3 << 10, 2);
    let plain = content(64 << 10, 3);
    let files = tmp.path().join("in");
    std::fs::create_dir_all(&files).unwrap();
    for (name, data) in [("big", &big), ("small", &small), ("plain", &plain)] {
        std::fs::write(files.join(name), data).unwrap();
    }
    let put = |name: &str, private: bool| {
        let path = files.join(name);
        let mut args = vec!["put", path.to_str().unwrap(), "--json", "--node", &a0];
        if private {
            args.push("--private");
        }
        json(&cli(&args, &owner))
    };
    let big_put = put("big", true);
    assert_eq!(big_put["private"], true);
    assert_eq!(
        big_put["size"],
        20 << 20,
        "the content's size, not the ciphertext's"
    );
    let cap = big_put["capability"]
        .as_str()
        .expect("a capability")
        .to_string();
    assert!(cap.starts_with("swarmstore:cap:1:latest:"), "{cap}");
    let small_put = put("small", true);
    let small_cap = small_put["capability"].as_str().unwrap().to_string();
    put("plain", false);

    // No file in any data dir holds a 16-byte window of a private plaintext; the plain
    // file's bytes are found (the scan works).
    let mut scanner = Scanner::new();
    scanner.add("the private 20 MiB file", &big);
    scanner.add("the private 3 KiB file", &small);
    let leaks = scanner.scan(&dirs);
    assert!(leaks.is_empty(), "plaintext on disk: {leaks:#?}");
    let mut control = Scanner::new();
    control.add("the plain file", &plain);
    assert!(
        !control.scan(&dirs).is_empty(),
        "the scan finds a plain file"
    );

    let sha = |data: &[u8]| {
        use sha2::{Digest, Sha256};
        let d: [u8; 32] = Sha256::digest(data).into();
        d
    };
    let read = |what: &str, id: &Path, out: &str| {
        let dest = tmp.path().join(out);
        let o = get(
            &["get", what, "-o", dest.to_str().unwrap(), "--node", &a0],
            id,
        );
        (o, dest)
    };
    // The owner, a capability under a stranger's identity, and after sharing the friend, all
    // read the same bytes.
    let (o, dest) = read("big", &owner, "owner.out");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256_of(&dest), sha(&big));
    let (o, dest) = read(&cap, &stranger, "cap.out");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256_of(&dest), sha(&big));
    let (o, dest) = read(&small_cap, &stranger, "small.out");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), small);
    // A stranger by name: a clear error, exit code 4, no file written.
    for name in ["big", "small"] {
        let (o, dest) = read(name, &stranger, &format!("stranger-{name}.out"));
        assert_eq!(
            o.status.code(),
            Some(4),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("no read capability"), "{err}");
        assert!(!dest.exists(), "nothing written for a stranger");
    }
    // An update stays private under a fresh key: the "latest" capability opens it, a
    // stranger still cannot.
    let small2 = content(3 << 10, 4);
    std::fs::write(files.join("small2"), &small2).unwrap();
    let up = json(&cli(
        &[
            "update",
            "small",
            files.join("small2").to_str().unwrap(),
            "--json",
            "--node",
            &a0,
        ],
        &owner,
    ));
    assert_eq!(up["private"], true, "{up}");
    let (o, dest) = read(&small_cap, &stranger, "small2.out");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), small2);
    let (o, _) = read("small", &stranger, "small2-stranger.out");
    assert_eq!(o.status.code(), Some(4));
    scanner.add("the updated private 3 KiB file", &small2);

    let (o, _) = read("big", &friend, "friend-before.out");
    assert_eq!(o.status.code(), Some(4));
    let shared = json(&cli(
        &["share", "big", "--to", &friend_id, "--json", "--node", &a0],
        &owner,
    ));
    assert_eq!(shared["version"], 2);
    let (o, dest) = read("big", &friend, "friend.out");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256_of(&dest), sha(&big));

    // Unshare: the friend cannot read the new version, nor can the old capability; the new
    // capability and the owner can.
    let un = json(&cli(
        &[
            "unshare", "big", "--from", &friend_id, "--json", "--node", &a0,
        ],
        &owner,
    ));
    assert_eq!(un["version"], 3);
    let new_cap = un["capability"].as_str().unwrap().to_string();
    assert_ne!(new_cap, cap);
    let (o, _) = read("big", &friend, "friend-after.out");
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (o, _) = read(&cap, &stranger, "old-cap.out");
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for (what, id) in [("big", &owner), (new_cap.as_str(), &stranger)] {
        let (o, dest) = read(what, id, "after.out");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(sha256_of(&dest), sha(&big));
    }
    // Still nothing in the clear after re-sealing.
    assert!(scanner.scan(&dirs).is_empty());

    // A client config that makes private the default (and names the access node): `put`
    // seals, `put --plain` does not.
    let cfg = tmp.path().join("client.toml");
    std::fs::write(&cfg, format!("node = {a0:?}\nprivate = true\n")).unwrap();
    let c = cfg.to_str().unwrap();
    let f = files.join("small2");
    let f = f.to_str().unwrap();
    let by_default = json(&cli(
        &[
            "put",
            f,
            "--name",
            "cfg-private",
            "--client-config",
            c,
            "--json",
        ],
        &owner,
    ));
    assert_eq!(by_default["private"], true, "{by_default}");
    assert!(by_default["capability"].is_string());
    let plain_put = json(&cli(
        &[
            "put",
            f,
            "--name",
            "cfg-plain",
            "--plain",
            "--client-config",
            c,
            "--json",
        ],
        &owner,
    ));
    assert_eq!(plain_put["private"], false, "{plain_put}");

    // Every holder of the head's first block swaps in another block of the file: the get
    // fails, and no output appears.
    let stat = json(&cli(&["stat", "big", "--json", "--node", &a0], &owner));
    let blocks = stat["blocks"].as_array().unwrap();
    let first = blocks[0]["id"].as_str().unwrap();
    let second = blocks[1]["id"].as_str().unwrap();
    let block_file = |dir: &Path, id: &str| dir.join("blocks").join(&id[..2]).join(id);
    let donor = dirs
        .iter()
        .map(|d| block_file(d, second))
        .find(|p| p.exists())
        .expect("a holder of the second block");
    let swapped_in = std::fs::read(&donor).unwrap();
    let mut swapped = 0;
    for d in &dirs {
        let f = block_file(d, first);
        if f.exists() {
            std::fs::write(&f, &swapped_in).unwrap();
            swapped += 1;
        }
    }
    assert!(swapped >= 1, "the first block has holders");
    let (o, dest) = read("big", &owner, "tampered.out");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a get of swapped blocks fails");
    assert!(!dest.exists(), "no output from swapped blocks: {err}");
    assert!(err.contains(first), "the error names the block: {err}");
    eprintln!("the tampered get said: {err}");
}
