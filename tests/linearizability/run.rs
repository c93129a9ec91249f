//! A linearizability run against real node processes: concurrent clients put, update (with
//! and without `--if-version`), get and rm a few files while a nemesis SIGKILLs and restarts
//! storage nodes, and every operation is recorded and then checked ([`crate::checker`]).
//!
//! Five `swarmstore node` processes, R = 3. The nemesis kills one node other than the
//! clients' access node at a time (so never more than R - 1 of any replica set is down),
//! restarts it after a few seconds, and moves on to another; where the machine allows network
//! namespaces (root), the nodes run in a lab of namespaces and every other fault is instead a
//! partition that cuts two nodes off for a few seconds and heals. Four library clients in this
//! process share one identity (one owner, so their writes race on the same chains) and reach
//! the swarm through node 0. Values are 8-byte tags at the start of each file's content;
//! some files are written inline (small) and some as blocks on holders.
//!
//! `SWARMSTORE_LIN_SECS` sets the length of the run (default 60).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use rand::{Rng, SeedableRng};
use swarmstore::error::Error;
use swarmstore::record::RecordError;
use swarmstore::Client;

use crate::checker::{check, Kind};
use crate::common::netns::Lab;
use crate::common::procs::{wait_live, NodeProc};
use crate::history::{Entry, History, Op, Outcome, Value};

const NODES: usize = 5;
const CLIENTS: usize = 4;
const FILES: &[&str] = &["lin/a", "lin/b", "lin/c"];
/// A client call that takes longer than this is abandoned and left indeterminate.
const OP_TIMEOUT: Duration = Duration::from_secs(20);

/// The content of a write of `value`: the tag, then padding; one write in four is big
/// enough to go to holders as a block instead of inside the record.
fn content(value: Value, big: bool) -> Vec<u8> {
    let len = if big { 20_000 } else { 64 };
    let mut data = vec![(value % 251) as u8; len];
    data[..8].copy_from_slice(&value.to_le_bytes());
    data
}

/// A write refused before it could take effect (the client checked, or the root refused).
fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::AlreadyExists { .. }
            | Error::NotFound(_)
            | Error::Deleted { .. }
            | Error::Rejected(RecordError::Conflict { .. })
    )
}

/// The outcome of a write, and the error's text when there was one (kept as the op's note).
async fn write_outcome<T>(
    call: impl std::future::Future<Output = swarmstore::error::Result<T>>,
    version: impl Fn(&T) -> u64,
) -> (Option<Outcome>, Option<String>) {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Err(_) => (None, None),
        Ok(Ok(done)) => (Some(Outcome::Written(version(&done))), None),
        Ok(Err(e)) if refused(&e) => (Some(Outcome::Conflict), Some(e.to_string())),
        Ok(Err(e)) => (Some(Outcome::Failed(e.to_string())), None),
    }
}

async fn get_outcome(client: &Client, file: &str) -> Option<Outcome> {
    let mut out = Vec::new();
    let call = client.get_into(file, None, &mut out, None);
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Err(_) => None,
        Ok(Ok(got)) => {
            let tag: [u8; 8] = match out.get(..8).and_then(|b| b.try_into().ok()) {
                Some(tag) => tag,
                None => return Some(Outcome::Failed(format!("{} bytes", out.len()))),
            };
            Some(Outcome::Read {
                version: got.version,
                value: u64::from_le_bytes(tag),
            })
        }
        Ok(Err(Error::NotFound(_))) => Some(Outcome::NotFound),
        Ok(Err(Error::Deleted { version, .. })) => Some(Outcome::Deleted { version }),
        Ok(Err(e)) => Some(Outcome::Failed(e.to_string())),
    }
}

/// One client: random operations on random files until `stop`.
async fn client_loop(id: usize, client: Client, history: History, stop: Arc<AtomicBool>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(id as u64 + 1);
    let mut last_seen: std::collections::HashMap<&str, u64> = Default::default();
    let mut next_value: Value = (id as u64 + 1) << 32;
    while !stop.load(Ordering::Relaxed) {
        let file = FILES[rng.gen_range(0..FILES.len())];
        let roll = rng.gen_range(0..100);
        next_value += 1;
        let value = next_value;
        let big = rng.gen_range(0..4) == 0;
        let (op, outcome) = if roll < 45 {
            let op = history.invoke(file, Op::Get);
            let outcome = get_outcome(&client, file).await;
            if let Some(Outcome::Read { version, .. } | Outcome::Deleted { version }) = &outcome {
                last_seen.insert(file, *version);
            }
            (op, (outcome, None))
        } else if roll < 65 {
            let if_version = last_seen.get(file).copied();
            let op = history.invoke(file, Op::Update { if_version, value });
            let data = content(value, big);
            let call = client.update(file, &data[..], if_version, None);
            (op, write_outcome(call, |p| p.version).await)
        } else if roll < 75 {
            let op = history.invoke(
                file,
                Op::Update {
                    if_version: None,
                    value,
                },
            );
            let data = content(value, big);
            let call = client.update(file, &data[..], None, None);
            (op, write_outcome(call, |p| p.version).await)
        } else if roll < 92 {
            let op = history.invoke(file, Op::Put { value });
            let data = content(value, big);
            let call = client.put(file, &data[..], None);
            (op, write_outcome(call, |p| p.version).await)
        } else {
            let if_version = last_seen.get(file).copied();
            let op = history.invoke(file, Op::Rm { if_version });
            let call = client.remove(file, if_version);
            (op, write_outcome(call, |v| *v).await)
        };
        let (outcome, note) = outcome;
        if let Some(note) = note {
            history.note(op, format!("client {id}: {note}"));
        }
        if let Some(outcome) = outcome {
            history.complete(op, outcome);
        }
    }
}

/// What the nemesis did, and when (on the history's clock).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Partition,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_kills_and_partitions_give_a_linearizable_history() {
    let secs: u64 = std::env::var("SWARMSTORE_LIN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Partitions need network namespaces; without them the nemesis only kills.
    let lab = match Lab::build(NODES, "10.204.0", true) {
        Ok(lab) => Some(lab),
        Err(why) => {
            eprintln!("no partitions in this run, kills only: {why}");
            None
        }
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let id = tmp.path().join("cli.key");
    let start = |i: usize, boot: &[String]| {
        let dir = tmp.path().join(format!("n{i}"));
        match &lab {
            Some(lab) => {
                let ns = lab.ns(i);
                let listen = format!("/ip4/{}/tcp/4001", lab.addr(i));
                NodeProc::start_in(&["ip", "netns", "exec", &ns], &listen, &dir, boot, &[])
            }
            None => NodeProc::start(&dir, boot, &[]),
        }
    };
    let mut nodes = vec![start(0, &[])];
    let boot = vec![nodes[0].addr()];
    for i in 1..NODES {
        nodes.push(start(i, &boot));
    }
    for n in &nodes {
        wait_live(&n.addr(), NODES - 1, &id);
    }

    let key = Keypair::generate_ed25519();
    let access: libp2p::Multiaddr = boot[0].parse().expect("node address");
    let history = History::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let client = Client::connect(access.clone(), key.clone())
            .await
            .expect("connect");
        clients.push(tokio::spawn(client_loop(
            c,
            client,
            history.clone(),
            stop.clone(),
        )));
    }

    // The nemesis, one fault at a time, never touching node 0 (the clients' access node):
    // kill a node and restart it, or (with the lab) cut two nodes off and heal. Either way at
    // most two of the five are out, so every replica set of three keeps one member, and
    // most keep a majority.
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut faults: Vec<(Fault, Duration, Duration)> = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2_000..4_000))).await;
        let partition = lab.is_some() && faults.len() % 2 == 1;
        let from = history.elapsed();
        if let (true, Some(lab)) = (partition, &lab) {
            let a = rng.gen_range(1..NODES);
            let b = 1 + (a + rng.gen_range(0..NODES - 2)) % (NODES - 1);
            lab.attach(a, "br1");
            lab.attach(b, "br1");
            tokio::time::sleep(Duration::from_millis(rng.gen_range(3_000..6_000))).await;
            lab.attach(a, "br0");
            lab.attach(b, "br0");
            faults.push((Fault::Partition, from, history.elapsed()));
        } else {
            let victim = rng.gen_range(1..NODES);
            nodes[victim].kill9();
            tokio::time::sleep(Duration::from_millis(rng.gen_range(2_000..4_000))).await;
            nodes[victim].restart(&boot);
            faults.push((Fault::Kill, from, history.elapsed()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }

    let entries = history.entries();
    let report = check(&entries);
    let kills = faults.iter().filter(|f| f.0 == Fault::Kill).count();
    let partitions = faults.len() - kills;
    let answered = |e: &Entry| {
        matches!(
            e.outcome(),
            Some(
                Outcome::Written(_)
                    | Outcome::Read { .. }
                    | Outcome::NotFound
                    | Outcome::Deleted { .. }
                    | Outcome::Conflict
            )
        )
    };
    // Availability: answered operations among those invoked during each kind of fault.
    let during = |kind: Option<Fault>| {
        let mine: Vec<&Entry> = entries
            .iter()
            .filter(|e| {
                let inside = faults
                    .iter()
                    .find(|(_, from, to)| e.invoked >= *from && e.invoked < *to)
                    .map(|f| f.0);
                inside == kind
            })
            .collect();
        let ok = mine.iter().filter(|e| answered(e)).count();
        (ok, mine.len())
    };
    let pct = |(ok, all): (usize, usize)| 100.0 * ok as f64 / all.max(1) as f64;
    let completed: Vec<&Outcome> = entries.iter().filter_map(|e| e.outcome()).collect();
    let count = |f: fn(&Outcome) -> bool| completed.iter().filter(|o| f(o)).count();
    let written = count(|o| matches!(o, Outcome::Written(_)));
    let reads = count(|o| {
        matches!(
            o,
            Outcome::Read { .. } | Outcome::NotFound | Outcome::Deleted { .. }
        )
    });
    let refused = count(|o| matches!(o, Outcome::Conflict));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let open = entries.len() - completed.len();
    eprintln!(
        "{secs} s, {kills} kills, {partitions} partitions: {} ops ({written} writes \
         acknowledged, {reads} reads, {refused} refused, {failed} failed, {open} never \
         answered); availability {:.1}% overall, {:.1}% with no fault, {:.1}% during kills \
         ({} ops), {:.1}% during partitions ({} ops); violations: {:?}",
        entries.len(),
        pct((
            entries.iter().filter(|e| answered(e)).count(),
            entries.len()
        )),
        pct(during(None)),
        pct(during(Some(Fault::Kill))),
        during(Some(Fault::Kill)).1,
        pct(during(Some(Fault::Partition))),
        during(Some(Fault::Partition)).1,
        report.kinds()
    );
    for e in entries
        .iter()
        .filter(|e| matches!(e.outcome(), Some(Outcome::Failed(_))))
        .take(20)
    {
        eprintln!("failed: {:?} {:?}", e.op, e.outcome());
    }
    // Reads through several clients may see an in-flight write before it is acknowledged and
    // then an older head; the README promises monotonic reads per client only.
    let violations: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.kind != Kind::NonMonotonicRead)
        .collect();
    for v in &violations {
        dump_around(&entries, &history, v);
    }
    assert!(violations.is_empty(), "violations: {violations:#?}");
    assert!(written >= 20 && reads >= 20, "the run did too little");
    assert!(kills >= 1, "the nemesis never struck");
    assert!(
        lab.is_none() || partitions >= 1,
        "the nemesis never partitioned"
    );
    drop(nodes);
}

/// Prints the operations on a violation's file from 10 s before its first operation to the
/// end of its last, and every operation that wrote a value one of them read: what a failed
/// run needs to be understood (with `NODE_LOG=1`, the nodes' logs say the rest).
fn dump_around(entries: &[Entry], history: &History, v: &crate::checker::Violation) {
    let named: Vec<&Entry> = v.ops.iter().filter_map(|&id| entries.get(id)).collect();
    let from = named
        .iter()
        .map(|e| e.invoked)
        .min()
        .unwrap_or_default()
        .saturating_sub(Duration::from_secs(10));
    let to = named
        .iter()
        .map(|e| e.completed().unwrap_or(e.invoked))
        .max()
        .unwrap_or_default();
    let read: Vec<Value> = named
        .iter()
        .filter_map(|e| match e.outcome() {
            Some(Outcome::Read { value, .. }) => Some(*value),
            _ => None,
        })
        .collect();
    eprintln!("--- {v}");
    for (id, e) in entries.iter().enumerate() {
        let near = e.file == v.file && e.invoked <= to && e.completed().is_none_or(|c| c >= from);
        let wrote_read = matches!(
            e.op,
            Op::Put { value } | Op::Update { value, .. } if read.contains(&value)
        );
        if near || wrote_read {
            eprintln!(
                "  #{id} {:?} {:?} [{:?} .. {:?}] {:?}{}",
                e.file,
                e.op,
                e.invoked,
                e.completed(),
                e.outcome(),
                history
                    .note_of(id)
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
        }
    }
}
