//! The official AWS SDK for Rust (`aws-sdk-s3`) against the S3 API: bucket and object
//! operations with content type and user metadata, ranged reads, pagination and delimiters,
//! a multipart upload, copies, batch deletes, the same bucket through another node's API, and
//! the refusals (wrong signature, another owner's bucket, missing key and bucket, a non-empty
//! bucket) with the error codes S3 clients act on.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

const BUCKET: &str = "sdk-bucket";

pub fn client(endpoint: &str, key: &str, secret: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "swarmstore-test"))
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

/// Bytes whose every 4-byte window names its offset, so a wrong range shows.
fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8)
        .collect()
}

async fn get(s3: &Client, bucket: &str, key: &str, range: Option<&str>) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Every key under `prefix`, `page` at a time, and the common prefixes of `delimiter`.
async fn list(
    s3: &Client,
    prefix: &str,
    delimiter: Option<&str>,
    page: i32,
) -> (Vec<String>, Vec<String>, usize) {
    let (mut keys, mut prefixes, mut pages) = (Vec::new(), Vec::new(), 0);
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .max_keys(page)
            .set_continuation_token(token.take())
            .send()
            .await
            .expect("list");
        pages += 1;
        assert!(out.contents().len() + out.common_prefixes().len() <= page as usize);
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        prefixes.extend(
            out.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_string)),
        );
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    (keys, prefixes, pages)
}

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(no code)").to_string()
}

/// Runs every SDK check; `a` and `b` are two nodes' S3 APIs with keys of the same owner,
/// `stranger` a key of another identity, `forged` a known key id with a wrong secret.
pub async fn run(a: &Client, b: &Client, stranger: &Client, forged: &Client) {
    a.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create");
    let buckets = a.list_buckets().send().await.expect("list buckets");
    assert!(buckets.buckets().iter().any(|x| x.name() == Some(BUCKET)));
    a.head_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("head bucket");

    // An object with its content type and user metadata; the ETag is the content's MD5.
    let doc = content(10_000, 1);
    let put = a
        .put_object()
        .bucket(BUCKET)
        .key("docs/readme.txt")
        .content_type("text/plain; charset=utf-8")
        .metadata("colour", "blue")
        .body(ByteStream::from(doc.clone()))
        .send()
        .await
        .expect("put");
    let etag = put.e_tag().expect("etag").to_string();
    assert_eq!(etag.len(), 34, "an MD5 in quotes: {etag}");
    let head = a
        .head_object()
        .bucket(BUCKET)
        .key("docs/readme.txt")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some(10_000));
    assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("colour"))
            .map(String::as_str),
        Some("blue")
    );
    assert_eq!(get(a, BUCKET, "docs/readme.txt", None).await, doc);
    assert_eq!(
        get(a, BUCKET, "docs/readme.txt", Some("bytes=1000-1999")).await,
        doc[1000..2000]
    );
    assert_eq!(
        get(a, BUCKET, "docs/readme.txt", Some("bytes=-10")).await,
        doc[9_990..]
    );
    let beyond = a
        .get_object()
        .bucket(BUCKET)
        .key("docs/readme.txt")
        .range("bytes=20000-")
        .send()
        .await
        .expect_err("a range past the end");
    assert_eq!(code(&beyond), "InvalidRange");
    // A conditional GET with the current ETag: 304, which the SDK reports as an error.
    let unchanged = a
        .get_object()
        .bucket(BUCKET)
        .key("docs/readme.txt")
        .if_none_match(&etag)
        .send()
        .await
        .expect_err("not modified");
    assert_eq!(
        unchanged.raw_response().map(|r| r.status().as_u16()),
        Some(304)
    );

    // 45 keys in three "folders": pages of 7, and the delimiter's common prefixes.
    let mut want = vec!["docs/readme.txt".to_string()];
    for i in 0..45 {
        let key = format!("{}/item-{i:03}", ["img", "logs", "tmp"][i % 3]);
        a.put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(content(100 + i, i as u32)))
            .send()
            .await
            .expect("put many");
        want.push(key);
    }
    want.sort();
    let (keys, _, pages) = list(a, "", None, 7).await;
    assert_eq!(keys, want, "every key, in order, once");
    assert_eq!(pages, want.len().div_ceil(7));
    let (keys, prefixes, _) = list(a, "", Some("/"), 2).await;
    assert!(keys.is_empty(), "no key outside a folder: {keys:?}");
    assert_eq!(prefixes, ["docs/", "img/", "logs/", "tmp/"]);
    let (keys, _, _) = list(a, "logs/", Some("/"), 1000).await;
    assert_eq!(keys.len(), 15);
    assert!(keys.iter().all(|k| k.starts_with("logs/")));

    // The same bucket through another node's S3 API: the index lives in the swarm.
    let (keys, _, _) = list(b, "", None, 1000).await;
    assert_eq!(keys, want, "node B lists what node A wrote");
    assert_eq!(
        get(b, BUCKET, "docs/readme.txt", Some("bytes=0-99")).await,
        doc[..100]
    );

    // Multipart: two 5 MiB parts and a short last one, completed out of upload order.
    let big = content(11 << 20, 7);
    let up = a
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("big/blob.bin")
        .content_type("application/x-test")
        .send()
        .await
        .expect("create multipart");
    let id = up.upload_id().expect("upload id").to_string();
    let mut parts = Vec::new();
    for (n, chunk) in [
        (3, &big[10 << 20..]),
        (1, &big[..5 << 20]),
        (2, &big[5 << 20..10 << 20]),
    ] {
        let part = a
            .upload_part()
            .bucket(BUCKET)
            .key("big/blob.bin")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(part.e_tag().expect("part etag"))
                .build(),
        );
    }
    parts.sort_by_key(|p| p.part_number());
    let listed = a
        .list_parts()
        .bucket(BUCKET)
        .key("big/blob.bin")
        .upload_id(&id)
        .send()
        .await
        .expect("list parts");
    assert_eq!(listed.parts().len(), 3);
    let done = a
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key("big/blob.bin")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    assert!(
        done.e_tag().is_some_and(|t| t.ends_with("-3\"")),
        "{done:?}"
    );
    assert_eq!(get(b, BUCKET, "big/blob.bin", None).await, big);
    let head = b
        .head_object()
        .bucket(BUCKET)
        .key("big/blob.bin")
        .send()
        .await
        .expect("head big");
    assert_eq!(head.content_type(), Some("application/x-test"));
    // An aborted upload leaves nothing behind.
    let gone = a
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("big/aborted.bin")
        .send()
        .await
        .expect("create multipart");
    let gone_id = gone.upload_id().expect("upload id").to_string();
    a.abort_multipart_upload()
        .bucket(BUCKET)
        .key("big/aborted.bin")
        .upload_id(&gone_id)
        .send()
        .await
        .expect("abort");
    let uploads = a
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list uploads");
    assert!(uploads
        .uploads()
        .iter()
        .all(|u| u.upload_id() != Some(&gone_id)));

    // Copy keeps the bytes and the metadata.
    a.copy_object()
        .bucket(BUCKET)
        .key("docs/copy.txt")
        .copy_source(format!("{BUCKET}/docs/readme.txt"))
        .send()
        .await
        .expect("copy");
    assert_eq!(get(b, BUCKET, "docs/copy.txt", None).await, doc);

    // The refusals, with the codes S3 clients act on.
    let missing = a
        .get_object()
        .bucket(BUCKET)
        .key("no/such/key")
        .send()
        .await
        .expect_err("missing key");
    assert!(missing.into_service_error().is_no_such_key());
    let no_bucket = a
        .list_objects_v2()
        .bucket("no-such-bucket-here")
        .send()
        .await
        .expect_err("missing bucket");
    assert_eq!(code(&no_bucket), "NoSuchBucket");
    let forged = forged
        .list_buckets()
        .send()
        .await
        .expect_err("a wrong secret");
    assert_eq!(code(&forged), "SignatureDoesNotMatch");
    let intruder = stranger
        .put_object()
        .bucket(BUCKET)
        .key("docs/readme.txt")
        .body(ByteStream::from_static(b"not yours"))
        .send()
        .await
        .expect_err("another owner's bucket");
    assert_eq!(code(&intruder), "AccessDenied");
    let peek = stranger
        .delete_object()
        .bucket(BUCKET)
        .key("docs/readme.txt")
        .send()
        .await
        .expect_err("another owner's delete");
    assert_eq!(code(&peek), "AccessDenied");
    assert_eq!(get(a, BUCKET, "docs/readme.txt", None).await, doc);
    let full = a
        .delete_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect_err("a bucket with objects");
    assert_eq!(code(&full), "BucketNotEmpty");

    // Delete everything in batches of at most 1,000, then the bucket.
    let (all, _, _) = list(a, "", None, 1000).await;
    let ids = all
        .iter()
        .map(|k| ObjectIdentifier::builder().key(k).build().expect("id"))
        .collect::<Vec<_>>();
    let deleted = a
        .delete_objects()
        .bucket(BUCKET)
        .delete(
            Delete::builder()
                .set_objects(Some(ids))
                .build()
                .expect("delete"),
        )
        .send()
        .await
        .expect("delete objects");
    assert_eq!(deleted.deleted().len(), all.len());
    assert!(deleted.errors().is_empty(), "{:?}", deleted.errors());
    let (left, _, _) = list(b, "", None, 1000).await;
    assert!(left.is_empty(), "deleted keys still listed: {left:?}");
    a.delete_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("delete bucket");
    let after = a
        .head_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect_err("a deleted bucket");
    assert_eq!(after.raw_response().map(|r| r.status().as_u16()), Some(404));
}
