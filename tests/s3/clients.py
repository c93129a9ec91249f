#!/usr/bin/env python3
"""Real S3 clients against swarmstore's --s3: boto3, the AWS CLI and rclone.

Run by tests/s3.rs, which starts the node processes and passes, in the environment:
  S3_A, S3_B            two nodes' S3 endpoints (http://127.0.0.1:PORT)
  KEY_A, SECRET_A       an access key on node A for the owner
  KEY_B, SECRET_B       an access key on node B for the same owner
  KEY_X, SECRET_X       an access key on node A for another identity
  KEY_REVOKED, SECRET_REVOKED   a key created on node A and revoked before this runs
  WORK                  a scratch directory
Prints one line per check; exits non-zero on the first failure.
"""

import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import boto3
import botocore
from botocore.config import Config

ENV = os.environ
WORK = ENV["WORK"]
BUCKET = "accept"


def client(endpoint, key, secret):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
            max_pool_connections=16,
        ),
    )


def check(what, cond, detail=""):
    if not cond:
        print(f"FAIL {what} {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {what}", flush=True)


def error_code(fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None


def aws(*args, key="A"):
    env = dict(ENV)
    env.update(
        AWS_ACCESS_KEY_ID=ENV[f"KEY_{key}"],
        AWS_SECRET_ACCESS_KEY=ENV[f"SECRET_{key}"],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    out = subprocess.run(
        ["aws", "--endpoint-url", ENV["S3_A"], *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        print(out.stdout[-2000:], out.stderr[-2000:])
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def list_all(s3, **kw):
    keys, prefixes, token = [], [], None
    while True:
        args = dict(Bucket=BUCKET, **kw)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        keys += [o["Key"] for o in r.get("Contents", [])]
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r.get("IsTruncated"):
            return keys, prefixes
        token = r["NextContinuationToken"]


def main():
    a = client(ENV["S3_A"], ENV["KEY_A"], ENV["SECRET_A"])
    b = client(ENV["S3_B"], ENV["KEY_B"], ENV["SECRET_B"])
    x = client(ENV["S3_A"], ENV["KEY_X"], ENV["SECRET_X"])

    a.create_bucket(Bucket=BUCKET)
    names = [bk["Name"] for bk in a.list_buckets()["Buckets"]]
    check("create_bucket and list_buckets", BUCKET in names, names)
    check(
        "create_bucket again: BucketAlreadyOwnedByYou",
        error_code(lambda: a.create_bucket(Bucket=BUCKET)) == "BucketAlreadyOwnedByYou",
    )
    check(
        "another owner's create: BucketAlreadyExists",
        error_code(lambda: x.create_bucket(Bucket=BUCKET)) == "BucketAlreadyExists",
    )
    check(
        "head_bucket of a missing bucket: 404",
        error_code(lambda: a.head_bucket(Bucket="no-such-bucket")) in ("404", "NoSuchBucket"),
    )

    # 100 MiB through the AWS CLI: multipart in, and back byte-identical.
    big = os.path.join(WORK, "big.bin")
    with open(big, "wb") as f:
        rnd = random.Random(7)
        for _ in range(100):
            f.write(rnd.randbytes(1 << 20))
    t0 = time.time()
    out = aws("s3", "cp", big, f"s3://{BUCKET}/big/big.bin", "--only-show-errors")
    up = time.time() - t0
    check("aws s3 cp 100 MiB in", out.returncode == 0)
    head = a.head_object(Bucket=BUCKET, Key="big/big.bin")
    check(
        "the 100 MiB object went up in parts",
        head["ETag"].strip('"').endswith("-13") and head["ContentLength"] == 100 << 20,
        head["ETag"],
    )
    back = os.path.join(WORK, "big.back")
    t0 = time.time()
    out = aws("s3", "cp", f"s3://{BUCKET}/big/big.bin", back, "--only-show-errors")
    down = time.time() - t0
    check("aws s3 cp 100 MiB out, byte-identical", out.returncode == 0 and sha256(back) == sha256(big))
    print(f"info 100 MiB: in {100 / up:.1f} MiB/s, out {100 / down:.1f} MiB/s (debug build)")

    # A ranged GET returns exactly those bytes.
    with open(big, "rb") as f:
        f.seek(5_000_000)
        want = f.read(3_000_001)
    got = a.get_object(Bucket=BUCKET, Key="big/big.bin", Range="bytes=5000000-8000000")
    check(
        "ranged GET",
        got["ContentRange"] == f"bytes 5000000-8000000/{100 << 20}" and got["Body"].read() == want,
    )
    etag = head["ETag"]
    check(
        "If-None-Match with the ETag: 304",
        error_code(lambda: a.get_object(Bucket=BUCKET, Key="big/big.bin", IfNoneMatch=etag))
        in ("304", "NotModified"),
    )
    check(
        "an unsatisfiable range: InvalidRange",
        error_code(lambda: a.get_object(Bucket=BUCKET, Key="big/big.bin", Range=f"bytes={200 << 20}-"))
        == "InvalidRange",
    )

    # 2,500 keys in folders, put 8 at a time; listings must return exactly them.
    keys = sorted(f"k/{i % 5}/{i % 7}/obj-{i:05}" for i in range(2500))

    def put(k):
        a.put_object(Bucket=BUCKET, Key=k, Body=k.encode(), ContentType="text/plain")

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    print(f"info 2,500 puts in {time.time() - t0:.1f} s")
    got, prefixes = list_all(a, Prefix="k/")
    check("ListObjectsV2 of 2,500 keys (1,000 a page)", got == keys, f"{len(got)} keys")
    got, _ = list_all(a, Prefix="k/", MaxKeys=333)
    check("ListObjectsV2, 333 a page", got == keys)
    got, prefixes = list_all(a, Prefix="k/3/", Delimiter="/")
    check(
        "prefix and delimiter roll up folders",
        got == [] and prefixes == [f"k/3/{j}/" for j in range(7)],
        prefixes,
    )
    got, _ = list_all(b, Prefix="k/3/4/")
    check("the same listing through node B", got == [k for k in keys if k.startswith("k/3/4/")])
    t0 = time.time()
    r = a.list_objects_v2(Bucket=BUCKET, Prefix="k/", MaxKeys=1000)
    print(f"info ListObjectsV2 of 1,000 keys: {(time.time() - t0) * 1000:.0f} ms")
    v1, marker = [], None
    while True:
        args = dict(Bucket=BUCKET, Prefix="k/0/")
        if marker:
            args["Marker"] = marker
        r = a.list_objects(**args, MaxKeys=100)
        page = [o["Key"] for o in r.get("Contents", [])]
        v1 += page
        if not r.get("IsTruncated"):
            break
        marker = r.get("NextMarker", page[-1])
    check("ListObjects v1 with markers", v1 == [k for k in keys if k.startswith("k/0/")])
    out = aws("s3", "ls", f"s3://{BUCKET}/k/", "--recursive")
    lines = [l for l in out.stdout.splitlines() if l.strip()]
    check("aws s3 ls --recursive", out.returncode == 0 and len(lines) == 2500, len(lines))
    obj = b.get_object(Bucket=BUCKET, Key=keys[17])
    check(
        "GET through node B with Content-Type",
        obj["Body"].read() == keys[17].encode() and obj["ContentType"] == "text/plain",
    )

    # Metadata and copy.
    a.put_object(Bucket=BUCKET, Key="meta/one", Body=b"hello", Metadata={"colour": "blue"})
    a.copy_object(Bucket=BUCKET, Key="meta/two", CopySource={"Bucket": BUCKET, "Key": "meta/one"})
    two = a.head_object(Bucket=BUCKET, Key="meta/two")
    check(
        "user metadata kept, and copied",
        two["Metadata"] == {"colour": "blue"} and two["ContentLength"] == 5,
        two["Metadata"],
    )

    # Delete, then list again.
    gone = keys[:100]
    r = a.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in gone]})
    check("DeleteObjects", len(r.get("Deleted", [])) == 100 and not r.get("Errors"))
    a.delete_object(Bucket=BUCKET, Key=keys[100])
    got, _ = list_all(a, Prefix="k/")
    check("deleted keys leave the listing at once", got == keys[101:])
    check(
        "GET of a deleted key: NoSuchKey",
        error_code(lambda: a.get_object(Bucket=BUCKET, Key=keys[0])) == "NoSuchKey",
    )
    check(
        "delete_bucket of a non-empty bucket: BucketNotEmpty",
        error_code(lambda: a.delete_bucket(Bucket=BUCKET)) == "BucketNotEmpty",
    )

    # Refusals.
    bad = client(ENV["S3_A"], ENV["KEY_A"], "not-the-secret-at-all-0000000000000000000")
    check(
        "a wrong signature: SignatureDoesNotMatch",
        error_code(lambda: bad.list_objects_v2(Bucket=BUCKET)) == "SignatureDoesNotMatch",
    )
    revoked = client(ENV["S3_A"], ENV["KEY_REVOKED"], ENV["SECRET_REVOKED"])
    check(
        "a revoked key: InvalidAccessKeyId",
        error_code(lambda: revoked.list_buckets()) == "InvalidAccessKeyId",
    )
    for what, fn in [
        ("put", lambda: x.put_object(Bucket=BUCKET, Key="evil", Body=b"x")),
        ("get", lambda: x.get_object(Bucket=BUCKET, Key=keys[200])),
        ("list", lambda: x.list_objects_v2(Bucket=BUCKET)),
        ("delete", lambda: x.delete_object(Bucket=BUCKET, Key=keys[200])),
        ("delete_bucket", lambda: x.delete_bucket(Bucket=BUCKET)),
    ]:
        check(f"another owner's bucket, {what}: AccessDenied", error_code(fn) == "AccessDenied")
    anon = boto3.client(
        "s3",
        endpoint_url=ENV["S3_A"],
        region_name="us-east-1",
        config=Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"}),
    )
    check("an unsigned read of a private bucket: AccessDenied",
          error_code(lambda: anon.get_object(Bucket=BUCKET, Key=keys[200])) == "AccessDenied")

    # A presigned URL works for anyone holding it (curl, a browser).
    url = a.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": keys[300]}, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=30) as r:
        check("presigned GET", r.read() == keys[300].encode())

    # Abusive requests: refused, and the node keeps serving.
    endpoint = urllib.parse.urlparse(ENV["S3_A"])
    sent = 0
    with socket.create_connection((endpoint.hostname, endpoint.port), timeout=30) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        filler = b"X-Filler: " + b"a" * 8000 + b"\r\n"
        try:
            while sent < (1 << 30):
                s.sendall(filler)
                sent += len(filler)
        except OSError:
            pass
        try:
            reply = s.recv(200)
        except OSError:
            reply = b""
    check(
        "a request with endless headers is cut off early",
        sent < (64 << 20) and (reply == b"" or b" 431 " in reply or b" 400 " in reply),
        f"sent {sent} bytes, reply {reply[:60]!r}",
    )
    with socket.create_connection((endpoint.hostname, endpoint.port), timeout=30) as s:
        s.sendall(
            f"PUT /{BUCKET}/short HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n".encode()
            + b"y" * 100_000
        )
        try:
            reply = s.recv(200)
        except OSError:
            reply = b""
    check("a body longer than declared is refused", not reply.startswith(b"HTTP/1.1 200"), reply[:60])
    check("the node still serves after both", a.head_object(Bucket=BUCKET, Key=keys[300])["ContentLength"] > 0)

    # A private bucket (made with `mb --private` by the test): the node seals objects with the
    # owner's key it holds for this access key; the reader sees plaintext.
    with open(ENV["PRIVATE_FILE"], "rb") as f:
        secret = f.read()
    a.put_object(Bucket="vault", Key="secret.bin", Body=secret)
    check("a private bucket's object reads back", a.get_object(Bucket="vault", Key="secret.bin")["Body"].read() == secret)
    gateway_checks(a, keys)
    rclone_checks()
    print("all S3 client checks passed", flush=True)


def curl(*args):
    out = subprocess.run(["curl", "-s", "-S", *args], capture_output=True, timeout=120)
    return out


def gateway_checks(a, keys):
    gw = ENV["GATEWAY"]
    # A presigned URL for the gateway's address: the gateway hands it to the S3 service.
    g = client(gw, ENV["KEY_A"], ENV["SECRET_A"])
    url = g.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": keys[400]}, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=30) as r:
        check("boto3 presigned URL GET through --gateway", r.read() == keys[400].encode())
    if shutil.which("curl") is None:
        print("skip curl checks: curl is not installed", flush=True)
        return
    a.create_bucket(Bucket="pub", ACL="public-read")
    body = bytes(random.Random(5).randbytes(300_000))
    a.put_object(Bucket="pub", Key="site/index.html", Body=b"<h1>hi</h1>", ContentType="text/html")
    a.put_object(Bucket="pub", Key="site/data.bin", Body=body)
    out_path = os.path.join(WORK, "gw.bin")
    r = curl("-o", out_path, "-w", "%{http_code} %{content_type}", f"{gw}/b/pub/site/index.html")
    check("curl GET of a public object", r.stdout == b"200 text/html" and open(out_path, "rb").read() == b"<h1>hi</h1>", r.stdout)
    r = curl("-o", out_path, "-w", "%{http_code}", "-r", "1000-1999", f"{gw}/b/pub/site/data.bin")
    check("curl ranged GET: 206 and the exact bytes", r.stdout == b"206" and open(out_path, "rb").read() == body[1000:2000], r.stdout)
    r = curl("-D", "-", "-o", "/dev/null", f"{gw}/b/pub/site/data.bin")
    etag = next((l.split(b":", 1)[1].strip() for l in r.stdout.splitlines() if l.lower().startswith(b"etag:")), b"")
    length = next((l.split(b":", 1)[1].strip() for l in r.stdout.splitlines() if l.lower().startswith(b"content-length:")), b"")
    check("ETag and Content-Length", etag.startswith(b'"') and length == b"300000", r.stdout[:300])
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", f"If-None-Match: {etag.decode()}", f"{gw}/b/pub/site/data.bin")
    check("If-None-Match: 304", r.stdout == b"304", r.stdout)
    r = curl("-w", "\n%{http_code}", f"{gw}/b/pub/site/")
    check("an HTML index of a prefix", r.stdout.endswith(b"200") and b"index.html" in r.stdout and b"data.bin" in r.stdout, r.stdout[:300])
    r = curl("-o", "/dev/null", "-w", "%{http_code}", f"{gw}/b/{BUCKET}/{keys[400]}")
    check("a private bucket through the gateway: 403", r.stdout == b"403", r.stdout)
    r = curl("-o", "/dev/null", "-w", "%{http_code}", f"{gw}/b/pub/site/nothing")
    check("a missing key through the gateway: 404", r.stdout == b"404", r.stdout)
    anon = boto3.client(
        "s3",
        endpoint_url=ENV["S3_A"],
        region_name="us-east-1",
        config=Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"}),
    )
    check("an unsigned S3 read of a public-read bucket", anon.get_object(Bucket="pub", Key="site/data.bin")["Body"].read() == body)


def rclone_checks():
    if shutil.which("rclone") is None:
        if ENV.get("REQUIRE_RCLONE") == "1":
            check("rclone is installed", False)
        print("skip rclone: not installed (.ci/run installs it)", flush=True)
        return
    conf = os.path.join(WORK, "rclone.conf")
    with open(conf, "w") as f:
        f.write(
            "[swarm]\ntype = s3\nprovider = Other\nenv_auth = false\n"
            f"access_key_id = {ENV['KEY_A']}\nsecret_access_key = {ENV['SECRET_A']}\n"
            f"endpoint = {ENV['S3_A']}\nregion = us-east-1\nforce_path_style = true\n"
        )
    tree = os.path.join(WORK, "tree")
    rnd = random.Random(3)
    files = []
    for i in range(200):
        d = os.path.join(tree, f"d{i % 9}", f"e{i % 4}")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"f{i:03}.dat")
        with open(p, "wb") as f:
            f.write(rnd.randbytes(rnd.randint(1, 200_000)))
        files.append(p)

    # rclone's S3 backend fails on a custom CA bundle with a plain-HTTP endpoint.
    env = {k: v for k, v in ENV.items() if k != "AWS_CA_BUNDLE"}

    def rclone(*args):
        out = subprocess.run(
            ["rclone", "--config", conf, *args], capture_output=True, text=True, timeout=900, env=env
        )
        if out.returncode != 0:
            print(out.stdout[-2000:], out.stderr[-2000:])
        return out

    def copied(out):
        return sum(1 for l in out.stderr.splitlines() if ": Copied (" in l)

    out = rclone("sync", tree, f"swarm:{BUCKET}/tree", "-v", "--transfers", "4")
    check("rclone sync of 200 files", out.returncode == 0 and copied(out) == 200, copied(out))
    for p in files[:10]:
        with open(p, "ab") as f:
            f.write(b"changed")
    out = rclone("sync", tree, f"swarm:{BUCKET}/tree", "-v", "--transfers", "4")
    check("sync again re-sends only the 10 changed", out.returncode == 0 and copied(out) == 10, copied(out))
    out = rclone("check", tree, f"swarm:{BUCKET}/tree")
    check("rclone check: no differences", out.returncode == 0, out.stderr[-500:])


if __name__ == "__main__":
    main()
