//! The bucket index's decoders (`Page`, `BucketMeta`, `BucketList`: content of files any peer
//! may have written, read by every listing) on arbitrary and mutated bytes, valid pages
//! round-tripping, and the listing against a plain model of S3's rules.

use std::collections::BTreeSet;

use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

use swarmstore::client::bucket::index::{
    list, shard_of, BucketList, BucketMeta, ListQuery, ObjectEntry, Page,
};

use crate::measure;
use crate::mutation::mutated;
use crate::wire::decode_allowance;

fn decode_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (_, usage) = measure(|| {
        let _ = Page::decode(bytes, 3, 16);
        let _ = BucketMeta::decode(bytes);
        let _ = BucketList::decode(bytes);
    });
    prop_assert!(
        usage.peak <= decode_allowance(bytes.len()),
        "{} bytes made the decoders allocate {}",
        bytes.len(),
        usage.peak
    );
    Ok(())
}

fn entry(key: String) -> ObjectEntry {
    ObjectEntry {
        size: key.len() as u64,
        version: 1,
        modified_ms: 1,
        etag: Some("0123".into()),
        content_type: None,
        meta: vec![],
        key,
    }
}

/// Keys over a small alphabet, so prefixes and delimiters meet often.
fn keys() -> impl Strategy<Value = BTreeSet<String>> {
    btree_set("[ab/]{1,6}", 0..60)
}

/// S3's listing, written the plain way: every selected key in order, each rolled into its
/// common prefix if it has one, duplicates dropped.
fn model(keys: &BTreeSet<String>, prefix: &str, delimiter: Option<&str>) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    for k in keys.iter().filter(|k| k.starts_with(prefix)) {
        let rolled = delimiter.and_then(|d| {
            k[prefix.len()..]
                .find(d)
                .map(|at| k[..prefix.len() + at + d.len()].to_string())
        });
        let item = match rolled {
            Some(cp) => (true, cp),
            None => (false, k.clone()),
        };
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn bucket_decoders_survive_arbitrary_bytes(bytes in vec(any::<u8>(), 0..4096)) {
        decode_all(&bytes)?;
    }

    #[test]
    fn bucket_decoders_survive_mutated_seeds(bytes in mutated("bucket-page")) {
        decode_all(&bytes)?;
    }

    #[test]
    fn bucket_meta_seeds_mutated(bytes in mutated("bucket-meta")) {
        decode_all(&bytes)?;
    }

    #[test]
    fn valid_pages_round_trip(keys in keys(), shards in 1u16..8) {
        for shard in 0..shards {
            let mut page = Page::default();
            for k in keys.iter().filter(|k| shard_of(k, shards) == shard) {
                page.entries.insert(k.clone(), entry(k.clone()));
            }
            prop_assert_eq!(Page::decode(&page.encode(), shard, shards), Ok(page));
        }
    }

    #[test]
    fn listing_matches_the_model_page_by_page(
        keys in keys(),
        prefix in "[ab/]{0,2}",
        delimited in any::<bool>(),
        max in 1usize..9,
        shards in 1u16..6,
    ) {
        let mut pages = vec![Page::default(); shards as usize];
        for k in &keys {
            pages[shard_of(k, shards) as usize].entries.insert(k.clone(), entry(k.clone()));
        }
        let delimiter = delimited.then(|| "/".to_string());
        let mut query = ListQuery { prefix: prefix.clone(), delimiter: delimiter.clone(), after: None, max_keys: max };
        let mut got: Vec<(bool, String)> = Vec::new();
        for _ in 0..200 {
            let l = list(&pages, &query);
            prop_assert!(l.objects.len() + l.common_prefixes.len() <= max);
            // S3 returns a page's keys and prefixes each in order; merged they are in order.
            let mut page: Vec<(bool, String)> = l.objects.into_iter().map(|o| (false, o.key)).collect();
            page.extend(l.common_prefixes.into_iter().map(|p| (true, p)));
            page.sort_by(|a, b| a.1.cmp(&b.1));
            got.extend(page);
            match l.next_after {
                Some(a) => query.after = Some(a),
                None => break,
            }
        }
        prop_assert_eq!(got, model(&keys, &prefix, delimiter.as_deref()));
    }
}
