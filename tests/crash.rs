//! Crash consistency: SIGKILL the access node in the middle of a 64 MiB put, at several random
//! instants. After each crash the store checks clean (no torn block, no record naming the node
//! for a block it lacks), and after restart every file is either complete or absent.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::procs::{NodeProc, BIN};
use rand::{Rng, SeedableRng};

const ARGS: &[&str] = &[
    "--liveness",
    "3s",
    "--repair-interval",
    "1s",
    "--sync-interval",
    "1s",
];

#[test]
fn sigkill_during_put_leaves_complete_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let id = tmp.path().join("client.key");
    let src = tmp.path().join("big.bin");
    let data = common::random_bytes(64 << 20, 77);
    std::fs::write(&src, &data).unwrap();

    let mut nodes = vec![NodeProc::start(&tmp.path().join("n0"), &[], ARGS)];
    let a0 = nodes[0].addr();
    for i in 1..3 {
        nodes.push(NodeProc::start(
            &tmp.path().join(format!("n{i}")),
            std::slice::from_ref(&a0),
            ARGS,
        ));
    }
    std::thread::sleep(Duration::from_secs(2));

    // How long an uninterrupted put takes here, so the kills can span the whole of one:
    // early in the upload, late in it, around the publish, and after the acknowledgement.
    let t = std::time::Instant::now();
    let reference = Command::new(BIN)
        .args([
            "put",
            src.to_str().unwrap(),
            "--name",
            "reference",
            "--node",
            &a0,
            "--identity",
        ])
        .arg(&id)
        .output()
        .unwrap();
    assert!(reference.status.success());
    let full_ms = t.elapsed().as_millis() as u64;
    eprintln!("an uninterrupted 64 MiB put takes {full_ms} ms");

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut outcomes = Vec::new();
    let fractions = [0.1, 0.5, 0.85, 0.97, 1.03, 1.5];
    for (attempt, fraction) in fractions.iter().enumerate() {
        let name = format!("crash-{attempt}");
        let access = nodes[0].addr();
        let mut put = Command::new(BIN)
            .args([
                "put",
                src.to_str().unwrap(),
                "--name",
                &name,
                "--node",
                &access,
                "--identity",
            ])
            .arg(&id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let jitter: f64 = rng.gen_range(0.95..1.05);
        let delay = (full_ms as f64 * fraction * jitter) as u64;
        std::thread::sleep(Duration::from_millis(delay));
        nodes[0].kill9();
        let status = put.wait().unwrap();

        // Crash consistency of the killed node's own store.
        nodes[0].assert_clean("after a kill during put");

        let boot = vec![nodes[1].addr()];
        nodes[0].restart(&boot);
        std::thread::sleep(Duration::from_secs(1));
        let out = Command::new(BIN)
            .args([
                "get",
                &name,
                "-o",
                "-",
                "--node",
                &nodes[1].addr(),
                "--identity",
            ])
            .arg(&id)
            .output()
            .unwrap();
        let outcome = match out.status.code() {
            Some(0) => {
                assert!(
                    out.stdout == data,
                    "{name}: a visible file is complete and identical"
                );
                "complete"
            }
            Some(2) => "absent",
            other => panic!(
                "{name}: neither complete nor absent ({other:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        };
        eprintln!(
            "attempt {attempt}: killed after {delay} ms, put exit {:?}, file {outcome}",
            status.code()
        );
        if status.success() {
            assert_eq!(outcome, "complete", "an acknowledged put must survive");
        }
        outcomes.push(outcome);
    }
    // The other nodes' stores check clean too.
    for n in nodes.iter_mut().skip(1) {
        n.terminate();
        let report = n.check();
        assert!(
            report["problems"].as_array().unwrap().is_empty(),
            "{report}"
        );
    }
    eprintln!("outcomes: {outcomes:?}");
}
