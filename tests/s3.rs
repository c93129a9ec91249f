//! The S3 API with clients nobody here wrote: 5 node processes, `--s3` on two of them, the
//! official AWS SDK for Rust (`tests/s3/sdk.rs`), and
//! `tests/s3/clients.py` driving boto3, the AWS CLI and rclone against them (100 MiB multipart
//! in and out, 2,500-key listings with prefix, delimiter and pagination from both nodes,
//! ranged and conditional GETs, rclone sync and check, presigned URLs, and the refusals:
//! wrong signature, revoked key, another owner's bucket, endless headers, an overlong body), and
//! the HTTP gateway with curl and a boto3 presigned URL. The node's metrics and `status`
//! count what the S3 API and the gateway answered.
//! `.ci/run` installs the Python clients; where they are missing that part says so and skips.

mod common;
#[path = "s3/sdk.rs"]
mod sdk;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::procs::{cli, free_port, http, json, wait_live, NodeProc, BIN};

fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes an access key on the node of `data_dir` for the identity in `identity`.
fn make_key(data_dir: &Path, identity: &Path) -> (String, String) {
    let out = Command::new(BIN)
        .args(["s3-key", "create", "--json", "--data-dir"])
        .arg(data_dir)
        .arg("--identity")
        .arg(identity)
        .output()
        .unwrap();
    let v = json(&out);
    (
        v["access_key"].as_str().unwrap().to_string(),
        v["secret_key"].as_str().unwrap().to_string(),
    )
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "S3 port {port} never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn real_s3_clients_work_against_the_swarm() {
    let python_clients = have("python3", &["-c", "import boto3"]) && have("aws", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    let owner = tmp.path().join("owner.key");
    let other = tmp.path().join("other.key");
    // Identities are made on first use; `whoami` makes them without a node.
    cli(&["whoami"], &owner);
    cli(&["whoami"], &other);
    let dirs: Vec<_> = (0..5).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let (pa, pb, pg, pm) = (free_port(), free_port(), free_port(), free_port());
    let s3a = format!("127.0.0.1:{pa}");
    let s3b = format!("127.0.0.1:{pb}");
    let gw = format!("127.0.0.1:{pg}");
    let metrics = format!("127.0.0.1:{pm}");
    let mut n0 = NodeProc::start(
        &dirs[0],
        &[],
        &["--s3", &s3a, "--gateway", &gw, "--metrics", &metrics],
    );
    let a0 = n0.addr();
    let mut rest: Vec<NodeProc> = dirs[1..]
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let extra: &[&str] = if i == 2 { &["--s3", &s3b] } else { &[] };
            NodeProc::start(d, std::slice::from_ref(&a0), extra)
        })
        .collect();
    wait_live(&a0, 4, &owner);
    wait_port(pa);
    wait_port(pb);
    wait_port(pg);

    let (ka, sa) = make_key(&dirs[0], &owner);
    let (kb, sb) = make_key(&dirs[3], &owner);
    let (kx, sx) = make_key(&dirs[0], &other);
    let (kr, sr) = make_key(&dirs[0], &owner);
    let revoked = Command::new(BIN)
        .args(["s3-key", "revoke", &kr, "--data-dir"])
        .arg(&dirs[0])
        .output()
        .unwrap();
    assert!(revoked.status.success());
    let listed = Command::new(BIN)
        .args(["s3-key", "list", "--json", "--data-dir"])
        .arg(&dirs[0])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(&ka) && !listed.contains(&kr) && !listed.contains(&sa));

    // A private bucket: what the S3 API writes into it is sealed for the owner.
    json(&cli(
        &["mb", "vault", "--private", "--json", "--node", &a0],
        &owner,
    ));
    let secret: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    let control: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8 ^ 0x5a)
        .collect();
    let control_file = tmp.path().join("control.bin");
    std::fs::write(&control_file, &control).unwrap();
    json(&cli(
        &[
            "put",
            control_file.to_str().unwrap(),
            "--name",
            "control",
            "--json",
            "--node",
            &a0,
        ],
        &owner,
    ));

    // The AWS SDK for Rust first: it needs no Python.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let a = sdk::client(&format!("http://{s3a}"), &ka, &sa);
        let b = sdk::client(&format!("http://{s3b}"), &kb, &sb);
        let stranger = sdk::client(&format!("http://{s3a}"), &kx, &sx);
        let forged = sdk::client(&format!("http://{s3a}"), &ka, "not-the-secret-at-all");
        sdk::run(&a, &b, &stranger, &forged).await;
    });
    println!("AWS SDK for Rust: all checks passed");
    check_counted(&metrics, &a0, &owner, false);

    if !python_clients {
        eprintln!("SKIP: boto3 or the AWS CLI is missing (bash .ci/run installs them)");
        return;
    }
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("private.bin"), &secret).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/clients.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("S3_A", format!("http://{s3a}"))
        .env("S3_B", format!("http://{s3b}"))
        .env("GATEWAY", format!("http://{gw}"))
        .env("KEY_A", &ka)
        .env("SECRET_A", &sa)
        .env("KEY_B", &kb)
        .env("SECRET_B", &sb)
        .env("KEY_X", &kx)
        .env("SECRET_X", &sx)
        .env("KEY_REVOKED", &kr)
        .env("SECRET_REVOKED", &sr)
        .env("WORK", &work)
        .env("PRIVATE_FILE", work.join("private.bin"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all S3 client checks passed"),
        "the S3 clients failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_counted(&metrics, &a0, &owner, true);
    // No secret reaches a log: the nodes run with their logs captured by nothing, so look at
    // what the key file holds instead (user-only).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dirs[0].join("s3-keys.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for n in std::iter::once(&mut n0).chain(rest.iter_mut()) {
        n.terminate();
        n.assert_clean("after the S3 run");
    }
    // No node stores the private object's plaintext (no 32-byte window of it in any block or
    // record file); the control, a plain file put the same way, is found.
    assert_eq!(
        files_holding(&dirs, &secret[..32]),
        0,
        "a node holds private plaintext"
    );
    assert!(
        files_holding(&dirs, &control[..32]) > 0,
        "the scan misses plain content"
    );
}

/// The node's metrics count what its S3 API (and, once the Python clients have used it, its
/// gateway) answered, by operation and status, and `status` shows both listeners.
fn check_counted(metrics: &str, node: &str, identity: &Path, gateway_used: bool) {
    let (code, body) = http(metrics, "GET", "/metrics");
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body);
    let count = |api: &str, op: &str, code: u16| -> u64 {
        let series =
            format!("swarmstore_http_requests_total{{api=\"{api}\",op=\"{op}\",code=\"{code}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(count("s3", "PutObject", 200) >= 46, "{text}");
    assert!(count("s3", "UploadPart", 200) >= 3);
    assert!(count("s3", "GetObject", 206) >= 2);
    assert!(count("s3", "GetObject", 404) >= 1);
    assert!(count("s3", "PutObject", 403) >= 1, "another owner's bucket");
    assert!(count("s3", "unknown", 403) >= 1, "the forged signature");
    assert!(text.contains(
        "swarmstore_http_request_duration_seconds_count{api=\"s3\",op=\"ListObjectsV2\"}"
    ));
    if gateway_used {
        assert!(
            count("gateway", "get", 200) + count("gateway", "get", 206) >= 1,
            "{text}"
        );
    }
    let status = json(&cli(&["status", "--json", "--node", node], identity));
    let doors = status["front_doors"]
        .as_array()
        .expect("front doors in status");
    let s3 = doors.iter().find(|d| d["api"] == "s3").expect("the S3 row");
    assert!(s3["requests"].as_u64().unwrap() >= 50);
    assert!(s3["client_errors"].as_u64().unwrap() >= 3);
    assert!(doors.iter().any(|d| d["api"] == "gateway"));
    let plain = cli(&["status", "--node", node], identity);
    assert!(String::from_utf8_lossy(&plain.stdout).contains("S3 API"));
}

/// How many files under `dirs` (staged uploads aside) contain `needle`.
fn files_holding(dirs: &[std::path::PathBuf], needle: &[u8]) -> usize {
    let mut found = 0;
    let mut stack: Vec<std::path::PathBuf> = dirs.to_vec();
    while let Some(p) = stack.pop() {
        if p.ends_with("s3-uploads") {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if meta.len() < (64 << 20) {
            let data = std::fs::read(&p).unwrap_or_default();
            if memchr::memmem::find(&data, needle).is_some() {
                found += 1;
            }
        }
    }
    found
}
