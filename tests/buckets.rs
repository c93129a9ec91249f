//! Buckets and listing with node processes: the index lives in the swarm (a second access
//! node lists the same keys), listings are exact under prefix, delimiter and pagination after
//! concurrent puts, a stranger can neither write into a bucket nor forge a name in its owner's
//! space, and a non-empty bucket cannot be removed.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::procs::{cli, json, wait_live, NodeProc};
use futures::StreamExt;
use libp2p::identity::Keypair;
use swarmstore::client::bucket::{ListQuery, Listing};
use swarmstore::{Client, Error};

fn write_key(path: &Path) -> Keypair {
    let key = Keypair::generate_ed25519();
    std::fs::write(path, key.to_protobuf_encoding().unwrap()).unwrap();
    key
}

/// Every key of a listing, following its continuation to the end, `max` per call.
async fn list_all(client: &Client, bucket: &str, mut q: ListQuery) -> (Vec<String>, Vec<String>) {
    let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
    loop {
        let Listing {
            objects,
            common_prefixes,
            next_after,
        } = client.list_objects(bucket, &q).await.unwrap();
        assert!(objects.len() + common_prefixes.len() <= q.max_keys);
        keys.extend(objects.into_iter().map(|o| o.key));
        prefixes.extend(common_prefixes);
        match next_after {
            Some(a) => q.after = Some(a),
            None => return (keys, prefixes),
        }
    }
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn buckets_list_exactly_from_any_node_and_keep_strangers_out() {
    let tmp = tempfile::tempdir().unwrap();
    let owner_path = tmp.path().join("owner.key");
    let stranger_path = tmp.path().join("stranger.key");
    let owner = write_key(&owner_path);
    let stranger = write_key(&stranger_path);
    let me = owner.public().to_peer_id();
    let dirs: Vec<_> = (0..4).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let mut n0 = NodeProc::start(&dirs[0], &[], &[]);
    let a0 = n0.addr();
    let mut rest: Vec<NodeProc> = dirs[1..]
        .iter()
        .map(|d| NodeProc::start(d, std::slice::from_ref(&a0), &[]))
        .collect();
    let a3 = rest[2].addr();
    wait_live(&a0, 3, &owner_path);

    // Making a bucket: once; again by its owner or by anyone else is "already exists".
    let made = json(&cli(
        &["mb", "photos", "--json", "--node", &a0],
        &owner_path,
    ));
    assert_eq!(made["meta"]["shards"], 16);
    let again = cli(&["mb", "photos", "--node", &a0], &owner_path);
    assert_eq!(code(&again), 3);
    assert!(String::from_utf8_lossy(&again.stderr).contains("is yours"));
    let theirs = cli(&["mb", "photos", "--node", &a0], &stranger_path);
    assert_eq!(code(&theirs), 3);
    assert!(String::from_utf8_lossy(&theirs.stderr).contains("someone else"));
    let bad = cli(&["mb", "No_Such", "--node", &a0], &owner_path);
    assert_eq!(code(&bad), 1);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid bucket name"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    // 300 keys in folders, put 8 at a time by one owner: every page write is a compare-and-set,
    // so concurrent puts to one page must lose no entry.
    let keys: BTreeSet<String> = (0..300)
        .map(|i| format!("y{}/m{}/img-{i:04}.jpg", 2020 + i % 3, i % 4))
        .collect();
    let client = rt
        .block_on(Client::connect(a0.parse().unwrap(), owner.clone()))
        .unwrap();
    rt.block_on(async {
        futures::stream::iter(keys.iter())
            .map(|k| {
                let client = &client;
                async move {
                    let body = format!("content of {k}").into_bytes();
                    client
                        .put_object("photos", k, &body[..], Default::default(), None)
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await
    });

    // Every key once, in order, whatever the page size; folders roll up at the delimiter.
    let want: Vec<String> = keys.iter().cloned().collect();
    for max in [1000, 7] {
        let q = ListQuery {
            max_keys: max,
            ..Default::default()
        };
        let (got, prefixes) = rt.block_on(list_all(&client, "photos", q));
        assert_eq!(got, want, "max-keys {max}");
        assert!(prefixes.is_empty());
    }
    let q = ListQuery {
        prefix: "y2021/".into(),
        delimiter: Some("/".into()),
        max_keys: 3,
        ..Default::default()
    };
    let (got, prefixes) = rt.block_on(list_all(&client, "photos", q));
    assert!(got.is_empty());
    assert_eq!(
        prefixes,
        ["y2021/m0/", "y2021/m1/", "y2021/m2/", "y2021/m3/"]
    );

    // The CLI through another access node: the index is in the swarm, not on n0.
    let ls = json(&cli(
        &["ls", "photos/y2020/m1/", "--json", "--node", &a3],
        &stranger_path,
    ));
    let listed: Vec<String> = ls["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect();
    let under: Vec<String> = want
        .iter()
        .filter(|k| k.starts_with("y2020/m1/"))
        .cloned()
        .collect();
    assert_eq!(listed, under);
    let top = json(&cli(
        &["ls", "photos", "--json", "--node", &a3],
        &owner_path,
    ));
    assert_eq!(
        top["common_prefixes"],
        serde_json::json!(["y2020/", "y2021/", "y2022/"])
    );
    let mine = json(&cli(&["ls", "--json", "--node", &a3], &owner_path));
    assert_eq!(mine[0]["name"], "photos");

    // Objects in and out with the CLI; the ETag is the content's MD5.
    let file = tmp.path().join("cat.jpg");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let put = json(&cli(
        &[
            "put",
            file.to_str().unwrap(),
            "--bucket",
            "photos",
            "--name",
            "cats/cat.jpg",
            "--json",
            "--node",
            &a0,
        ],
        &owner_path,
    ));
    assert_eq!(put["name"], format!("~{me}/photos/cats/cat.jpg"));
    let out = tmp.path().join("back.jpg");
    json(&cli(
        &[
            "get",
            "cats/cat.jpg",
            "--bucket",
            "photos",
            "-o",
            out.to_str().unwrap(),
            "--json",
            "--node",
            &a3,
        ],
        &stranger_path,
    ));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let (_, entry) = rt
        .block_on(client.head_object("photos", "cats/cat.jpg"))
        .unwrap();
    let md5 = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(&data))
    };
    assert_eq!(entry.etag.as_deref(), Some(md5.as_str()));
    assert_eq!(entry.size, data.len() as u64);

    // A stranger: the CLI says permission denied (exit 4); one writing the names directly,
    // as a hostile client would, is refused by the root whatever it signs.
    let denied = cli(
        &[
            "put",
            file.to_str().unwrap(),
            "--bucket",
            "photos",
            "--name",
            "evil",
            "--node",
            &a0,
        ],
        &stranger_path,
    );
    assert_eq!(
        code(&denied),
        4,
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let thief = rt
        .block_on(Client::connect(a3.parse().unwrap(), stranger.clone()))
        .unwrap();
    for name in [
        format!("~{me}/photos/evil"),
        format!("~{me}/!index/photos/0003"),
        format!("~{me}/!buckets"),
    ] {
        match rt.block_on(thief.put_bytes(&name, b"forged")) {
            Err(Error::Rejected(_)) | Err(Error::AlreadyExists { .. }) => {}
            other => panic!("a stranger's {name:?} was not refused: {other:?}"),
        }
    }
    let rm = cli(
        &["rm", "cats/cat.jpg", "--bucket", "photos", "--node", &a0],
        &stranger_path,
    );
    assert_eq!(code(&rm), 4);

    // Delete: gone from the listing at once; deleting it again is fine (as in S3).
    let gone = json(&cli(
        &[
            "rm",
            "cats/cat.jpg",
            "--bucket",
            "photos",
            "--json",
            "--node",
            &a0,
        ],
        &owner_path,
    ));
    assert_eq!(gone["deleted"], true);
    let again = json(&cli(
        &[
            "rm",
            "cats/cat.jpg",
            "--bucket",
            "photos",
            "--json",
            "--node",
            &a0,
        ],
        &owner_path,
    ));
    assert_eq!(again["deleted"], false);
    let cats = json(&cli(
        &["ls", "photos/cats/", "--json", "--node", &a0],
        &owner_path,
    ));
    assert_eq!(cats["objects"], serde_json::json!([]));

    // A bucket with objects stays; emptied, it goes, and its name is free.
    let full = cli(&["rb", "photos", "--node", &a0], &owner_path);
    assert_eq!(code(&full), 3);
    assert!(String::from_utf8_lossy(&full.stderr).contains("not empty"));
    rt.block_on(async {
        futures::stream::iter(keys.iter())
            .map(|k| {
                let client = &client;
                async move { client.delete_object("photos", k).await.unwrap() }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await
    });
    let emptied = rt.block_on(list_all(
        &client,
        "photos",
        ListQuery {
            max_keys: 1000,
            ..Default::default()
        },
    ));
    assert_eq!(emptied, (vec![], vec![]));
    json(&cli(
        &["rb", "photos", "--json", "--node", &a0],
        &owner_path,
    ));
    let none = cli(&["ls", "photos", "--node", &a0], &owner_path);
    assert_eq!(code(&none), 2, "{}", String::from_utf8_lossy(&none.stderr));
    assert_eq!(
        json(&cli(&["ls", "--json", "--node", &a0], &owner_path)),
        serde_json::json!([])
    );
    json(&cli(
        &["mb", "photos", "--json", "--node", &a0],
        &stranger_path,
    ));

    // A private bucket: its objects are sealed on the client and read back by the owner.
    json(&cli(
        &["mb", "vault", "--private", "--json", "--node", &a0],
        &owner_path,
    ));
    json(&cli(
        &[
            "put",
            file.to_str().unwrap(),
            "--bucket",
            "vault",
            "--name",
            "a",
            "--json",
            "--node",
            &a0,
        ],
        &owner_path,
    ));
    let stat = json(&cli(
        &["stat", "a", "--bucket", "vault", "--json", "--node", &a3],
        &owner_path,
    ));
    assert_eq!(stat["private"], true, "{stat}");
    let back = tmp.path().join("vault-a");
    json(&cli(
        &[
            "get",
            "a",
            "--bucket",
            "vault",
            "-o",
            back.to_str().unwrap(),
            "--json",
            "--node",
            &a3,
        ],
        &owner_path,
    ));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let locked = cli(
        &["get", "a", "--bucket", "vault", "--node", &a3],
        &stranger_path,
    );
    assert_eq!(code(&locked), 4);

    drop(thief);
    drop(client);
    for n in std::iter::once(&mut n0).chain(rest.iter_mut()) {
        n.terminate();
        n.assert_clean("after the bucket run");
    }
}
