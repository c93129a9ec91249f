//! What the bucket index stores, and listing over it: pure data, no network.
//!
//! A bucket is a signed file `bucket:NAME` (first come, first served, like S3's global bucket
//! names) whose content is a [`BucketMeta`]. Its objects are files in the owner's own space,
//! `~OWNER/NAME/KEY`, which no other peer may sign (`ids::owner_scope`), so nobody can squat a
//! key in someone else's bucket. The index is `shards` pages, `~OWNER/!index/NAME/NNNN`, each
//! one signed file listing the keys that hash to it: every page has its own root and replica
//! set, so no node holds every name of a large bucket, and a write touches exactly one page.
//! A listing reads every page and merges them in key order ([`list`]).

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of a bucket's own record.
pub const BUCKET_PREFIX: &str = "bucket:";
/// Pages a new bucket gets unless told otherwise.
pub const DEFAULT_SHARDS: u16 = 16;
/// The most pages a bucket may have (a listing reads all of them).
pub const MAX_SHARDS: u16 = 1024;
/// The largest page or bucket list a client reads into memory.
pub const MAX_PAGE_BYTES: u64 = 16 * 1024 * 1024;
/// The most keys one listing call returns (S3's limit).
pub const MAX_LIST_KEYS: usize = 1000;
/// Longest object key (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024 - 200;
/// The format of a bucket record and of index pages.
const FORMAT: u8 = 1;

/// A bucket's record content, signed by its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketMeta {
    pub format: u8,
    /// How many index pages the bucket has; fixed at creation.
    pub shards: u16,
    /// Anyone may read and list it (the gateway serves it without a signature).
    #[serde(default)]
    pub public_read: bool,
    /// Objects are sealed for the owner (and the gateway node that holds its key).
    #[serde(default)]
    pub private: bool,
}

impl BucketMeta {
    pub fn new(shards: u16, public_read: bool, private: bool) -> Self {
        BucketMeta {
            format: FORMAT,
            shards,
            public_read,
            private,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), self).unwrap_or_default()
    }

    /// Decodes and checks a bucket record's content.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let meta: BucketMeta =
            cbor4ii::serde::from_slice(bytes).map_err(|e| format!("not a bucket record: {e}"))?;
        if meta.format != FORMAT {
            return Err(format!("bucket record format {} is unknown", meta.format));
        }
        if meta.shards == 0 || meta.shards > MAX_SHARDS {
            return Err(format!(
                "bucket has {} index pages; 1..={MAX_SHARDS} allowed",
                meta.shards
            ));
        }
        Ok(meta)
    }
}

/// One object as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    /// Content bytes.
    pub size: u64,
    /// The object file's version this entry describes.
    pub version: u64,
    pub modified_ms: u64,
    /// The ETag S3 clients compare (the MD5 of the content for a single upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata (S3's `x-amz-meta-*`), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta: Vec<(String, String)>,
}

/// One index page: the entries of the keys that hash to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: BTreeMap<String, ObjectEntry>,
}

#[derive(Serialize, Deserialize)]
struct PageWire {
    format: u8,
    entries: Vec<ObjectEntry>,
}

impl Page {
    pub fn encode(&self) -> Vec<u8> {
        let wire = PageWire {
            format: FORMAT,
            entries: self.entries.values().cloned().collect(),
        };
        cbor4ii::serde::to_vec(Vec::new(), &wire).unwrap_or_default()
    }

    /// Decodes page `shard` of `shards`: keys sorted, unique, valid, and each on its own page
    /// (an entry on the wrong page would be listed twice or shadow the right one).
    pub fn decode(bytes: &[u8], shard: u16, shards: u16) -> Result<Self, String> {
        let wire: PageWire =
            decode(bytes, "index page").map_err(|e| format!("not an index page: {e}"))?;
        if wire.format != FORMAT {
            return Err(format!("index page format {} is unknown", wire.format));
        }
        let mut entries = BTreeMap::new();
        for e in wire.entries {
            validate_key(&e.key)?;
            if shard_of(&e.key, shards) != shard {
                return Err(format!("key {:?} is not on index page {shard}", e.key));
            }
            if let Some((last, _)) = entries.last_key_value() {
                if *last >= e.key {
                    return Err("index page keys are not sorted and unique".into());
                }
            }
            entries.insert(e.key.clone(), e);
        }
        Ok(Page { entries })
    }
}

/// Decodes CBOR from a file any peer may have written, as frames are: a count the bytes
/// cannot hold is refused before serde reserves anything for it (fuzzing found a 26-byte
/// page that made the plain decoder reserve 1 MiB).
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    crate::protocol::codec::decode_body(bytes, what).map_err(|e| e.to_string())
}

/// The index page a key lives on.
pub fn shard_of(key: &str, shards: u16) -> u16 {
    let h = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(first) % u64::from(shards.max(1))) as u16
}

/// S3's bucket name rules: 3–63 lowercase letters, digits, `.` and `-`, starting and ending
/// with a letter or digit. (They also keep `!`, `/` and `~` out of the names built on them.)
pub fn validate_bucket(name: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let ends = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok_len && ok_chars && ends(name.bytes().next()) && ends(name.bytes().last()) {
        Ok(())
    } else {
        Err(format!(
            "invalid bucket name {name:?}: 3 to 63 lowercase letters, digits, '.' and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

/// An object key: 1 to [`MAX_KEY_BYTES`] bytes, no control characters.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "object key of {} bytes; 1..={MAX_KEY_BYTES} allowed",
            key.len()
        ));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(format!("object key {key:?} contains control characters"));
    }
    Ok(())
}

/// The file holding a bucket's record.
pub fn bucket_name(bucket: &str) -> String {
    format!("{BUCKET_PREFIX}{bucket}")
}

/// The file holding object `key` of `owner`'s `bucket`.
pub fn object_name(owner: &str, bucket: &str, key: &str) -> String {
    format!("~{owner}/{bucket}/{key}")
}

/// The file holding index page `shard` of `owner`'s `bucket`.
pub fn page_name(owner: &str, bucket: &str, shard: u16) -> String {
    format!("~{owner}/!index/{bucket}/{shard:04}")
}

/// The file listing `owner`'s buckets.
pub fn bucket_list_name(owner: &str) -> String {
    format!("~{owner}/!buckets")
}

/// A client's own bucket list (S3's ListBuckets): names and creation times.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketList {
    pub buckets: BTreeMap<String, u64>,
}

impl BucketList {
    pub fn encode(&self) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let list: BucketList =
            decode(bytes, "bucket list").map_err(|e| format!("not a bucket list: {e}"))?;
        if let Some(bad) = list.buckets.keys().find(|b| validate_bucket(b).is_err()) {
            return Err(format!("bucket list names an invalid bucket {bad:?}"));
        }
        Ok(list)
    }
}

/// What a listing asks for (S3's ListObjectsV2 parameters).
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub prefix: String,
    /// Keys sharing the prefix up to the next delimiter are rolled into one common prefix.
    pub delimiter: Option<String>,
    /// Only keys after this one (S3's StartAfter, or a continuation token's position).
    pub after: Option<String>,
    /// At most this many keys and common prefixes together (capped at [`MAX_LIST_KEYS`]).
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub objects: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
    /// Where the next call starts (`after`), if the listing stopped at `max_keys`.
    pub next_after: Option<String>,
}

/// Lists the keys of `pages` that `query` selects, in key order, as S3 does: a common prefix
/// counts once toward `max_keys`, and resuming after a common prefix skips all its keys.
pub fn list<'a>(pages: impl IntoIterator<Item = &'a Page>, query: &ListQuery) -> Listing {
    let max = query.max_keys.clamp(1, MAX_LIST_KEYS);
    let prefix = query.prefix.as_str();
    // Each page is sorted: its matching keys are one run from the prefix on.
    let mut keys: Vec<&ObjectEntry> = pages
        .into_iter()
        .flat_map(|p| {
            p.entries
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, e)| e)
        })
        .filter(|e| query.after.as_ref().is_none_or(|a| e.key > *a))
        .collect();
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = Listing::default();
    let mut emitted = 0usize;
    let mut last: Option<String> = None;
    for e in keys {
        let rolled = query
            .delimiter
            .as_deref()
            .filter(|d| !d.is_empty())
            .and_then(|d| {
                e.key[query.prefix.len()..]
                    .find(d)
                    .map(|at| e.key[..query.prefix.len() + at + d.len()].to_string())
            });
        // A resumed listing starts after a common prefix: skip all of its keys.
        if let (Some(after), Some(cp)) = (&query.after, &rolled) {
            if cp == after {
                continue;
            }
        }
        if rolled.is_some() && out.common_prefixes.last() == rolled.as_ref() {
            continue;
        }
        if emitted == max {
            out.next_after = last;
            return out;
        }
        emitted += 1;
        match rolled {
            Some(cp) => {
                last = Some(cp.clone());
                out.common_prefixes.push(cp);
            }
            None => {
                last = Some(e.key.clone());
                out.objects.push(e.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> ObjectEntry {
        ObjectEntry {
            key: key.to_string(),
            size: key.len() as u64,
            version: 1,
            modified_ms: 7,
            etag: None,
            content_type: None,
            meta: Vec::new(),
        }
    }

    fn pages_of(keys: &[String], shards: u16) -> Vec<Page> {
        let mut pages = vec![Page::default(); shards as usize];
        for k in keys {
            pages[shard_of(k, shards) as usize]
                .entries
                .insert(k.clone(), entry(k));
        }
        pages
    }

    /// Every item of a listing, following `next_after` to the end.
    fn all(pages: &[Page], mut q: ListQuery) -> (Vec<String>, Vec<String>, usize) {
        let (mut objects, mut prefixes, mut calls) = (Vec::new(), Vec::new(), 0);
        loop {
            let l = list(pages, &q);
            calls += 1;
            assert!(l.objects.len() + l.common_prefixes.len() <= q.max_keys.max(1));
            objects.extend(l.objects.into_iter().map(|e| e.key));
            prefixes.extend(l.common_prefixes);
            match l.next_after {
                Some(a) => q.after = Some(a),
                None => return (objects, prefixes, calls),
            }
        }
    }

    #[test]
    fn listing_rolls_up_folders_and_pages_exactly() {
        let keys: Vec<String> = [
            "a.txt", "docs/x", "docs/y/z", "docs/y/w", "img/1", "img/2", "z",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pages = pages_of(&keys, 4);
        let q = |prefix: &str, delim: Option<&str>, max| ListQuery {
            prefix: prefix.into(),
            delimiter: delim.map(Into::into),
            after: None,
            max_keys: max,
        };
        let top = list(&pages, &q("", Some("/"), 1000));
        let names: Vec<_> = top.objects.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(names, ["a.txt", "z"]);
        assert_eq!(top.common_prefixes, ["docs/", "img/"]);
        assert_eq!(top.next_after, None);
        let docs = list(&pages, &q("docs/", Some("/"), 1000));
        assert_eq!(docs.objects.len(), 1);
        assert_eq!(docs.common_prefixes, ["docs/y/"]);
        // One item per call: a common prefix is one item, and resuming after it skips its keys.
        let (objects, prefixes, calls) = all(&pages, q("", Some("/"), 1));
        assert_eq!(objects, ["a.txt", "z"]);
        assert_eq!(prefixes, ["docs/", "img/"]);
        assert_eq!(calls, 4);
        let (objects, _, _) = all(&pages, q("", None, 3));
        assert_eq!(objects, {
            let mut k = keys.clone();
            k.sort();
            k
        });
    }

    #[test]
    fn paginating_2500_keys_returns_each_key_once_in_order() {
        let keys: Vec<String> = (0..2500)
            .map(|i| format!("dir{}/sub{}/file-{i:05}", i % 7, i % 3))
            .collect();
        let pages = pages_of(&keys, DEFAULT_SHARDS);
        let mut sorted = keys.clone();
        sorted.sort();
        for max in [1, 7, 1000] {
            let (objects, prefixes, _) = all(
                &pages,
                ListQuery {
                    max_keys: max,
                    ..ListQuery::default()
                },
            );
            assert_eq!(objects, sorted, "max-keys {max}");
            assert!(prefixes.is_empty());
        }
        let (objects, prefixes, _) = all(
            &pages,
            ListQuery {
                prefix: "dir3/".into(),
                delimiter: Some("/".into()),
                max_keys: 2,
                ..ListQuery::default()
            },
        );
        assert!(objects.is_empty());
        assert_eq!(prefixes, ["dir3/sub0/", "dir3/sub1/", "dir3/sub2/"]);
        let want: Vec<_> = sorted
            .iter()
            .filter(|k| k.starts_with("dir3/sub1/"))
            .cloned()
            .collect();
        let (objects, _, _) = all(
            &pages,
            ListQuery {
                prefix: "dir3/sub1/".into(),
                delimiter: Some("/".into()),
                max_keys: 100,
                ..ListQuery::default()
            },
        );
        assert_eq!(objects, want);
    }

    #[test]
    fn pages_round_trip_and_refuse_misplaced_or_unsorted_keys() {
        let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        let pages = pages_of(&keys, 4);
        for (i, p) in pages.iter().enumerate() {
            assert_eq!(&Page::decode(&p.encode(), i as u16, 4).unwrap(), p);
        }
        // A page listing a key that belongs on another page.
        let wrong = (0..4u16).find(|&s| s != shard_of("k1", 4)).unwrap();
        let mut p = Page::default();
        p.entries.insert("k1".into(), entry("k1"));
        assert!(Page::decode(&p.encode(), wrong, 4).is_err());
        // Unsorted or duplicate keys.
        let one = shard_of("k1", 1);
        let wire = PageWire {
            format: FORMAT,
            entries: vec![entry("k2"), entry("k1")],
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &wire).unwrap();
        assert!(Page::decode(&bytes, one, 1).is_err());
        let wire = PageWire {
            format: FORMAT,
            entries: vec![entry("k1"), entry("k1")],
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &wire).unwrap();
        assert!(Page::decode(&bytes, one, 1).is_err());
        assert!(Page::decode(b"\xff\x00junk", 0, 1).is_err());
    }

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "my-bucket.2", "0a0"] {
            assert!(validate_bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            "a/b",
            "a!b",
            "~ab",
            &"a".repeat(64),
        ] {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
        let meta = BucketMeta::new(16, true, false);
        assert_eq!(BucketMeta::decode(&meta.encode()).unwrap(), meta);
        assert!(BucketMeta::decode(&BucketMeta::new(0, false, false).encode()).is_err());
        assert!(BucketMeta::decode(b"hello").is_err());
    }
}
