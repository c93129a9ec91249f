//! `swarmstore soak`: a devnet of node processes under a mixed workload with churn, for a
//! given time, sampled every interval into a CSV and a plot (`soak_report`).
//!
//! The nodes are separate OS processes (this binary's `node` command), so a kill is a real
//! SIGKILL and each node's memory and file descriptors are its own. Node 0 is the workload's
//! access node and is never stopped; churn, one event at a time, cycles through: SIGKILL a
//! node and restart it after a pause, start an extra node, kill another, and drain an extra
//! node out (SIGTERM with `--drain`). At most one of the swarm's nodes is down at a time,
//! fewer than any replica set of R ≥ 2 can lose.
//!
//! The workload is one client, one operation at a time (put, update, get, stat, rm on a fixed
//! set of names, small and block-sized), so every get has one right answer: the last
//! acknowledged write, or one of the writes whose outcome was an error (it may have landed).
//! A get that returns anything else is a mismatch, and the command fails if there was one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::soak_report::{self, Counters, Sampler, WorkloadStats};
use crate::{Client, Error};

/// How long a killed node stays down.
const RESTART_AFTER: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Node processes in the swarm at the start (extra ones join and leave).
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Copies of each block and record.
    #[arg(long, default_value_t = 3)]
    pub replication: usize,
    /// How long to run, e.g. 1h, 10m.
    #[arg(long, default_value = "10m", value_parser = crate::units::parse_duration)]
    pub duration: Duration,
    /// How often to sample every process.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_duration)]
    pub interval: Duration,
    /// Time between churn events (kill, join, leave).
    #[arg(long, default_value = "60s", value_parser = crate::units::parse_duration)]
    pub churn_every: Duration,
    /// Pause between two workload operations.
    #[arg(long, default_value = "100ms", value_parser = crate::units::parse_duration)]
    pub pause: Duration,
    /// Seed of the workload and churn choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for the node data dirs and logs, `samples.csv`, `maps.csv`, `summary.json`, `soak.svg`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// One node process the soak started.
struct Proc {
    label: String,
    dir: PathBuf,
    extra_args: Vec<String>,
    /// Where the node serves `/metrics` (the soak reads its heap figures there).
    metrics_port: u16,
    child: Option<Child>,
    started: Instant,
}

impl Proc {
    fn spawn(
        label: String,
        dir: PathBuf,
        extra_args: Vec<String>,
        bootstrap: Option<&str>,
    ) -> anyhow::Result<Proc> {
        let mut p = Proc {
            label,
            dir,
            extra_args,
            metrics_port: free_port()?,
            child: None,
            started: Instant::now(),
        };
        p.start(bootstrap)?;
        Ok(p)
    }

    fn start(&mut self, bootstrap: Option<&str>) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let _ = std::fs::remove_file(self.dir.join("node.addr"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--metrics")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(b) = bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        self.child = Some(cmd.spawn()?);
        self.started = Instant::now();
        self.addr(Duration::from_secs(30))?;
        Ok(())
    }

    fn addr(&self, wait: Duration) -> anyhow::Result<String> {
        let file = self.dir.join("node.addr");
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(s) = std::fs::read_to_string(&file) {
                if !s.trim().is_empty() {
                    return Ok(s.trim().to_string());
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("{} never wrote {}", self.label, file.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (a drain when the node runs with `--drain`), then SIGKILL after `wait`.
    fn terminate(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(pid) = i32::try_from(c.id()) {
            // SAFETY: plain kill(2) on our own child's pid; it has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

/// A port nothing listens on now (the node binds it a moment later; a restart binds it again).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub async fn run_soak(args: SoakArgs, json: bool) -> anyhow::Result<()> {
    if args.nodes < 3 {
        anyhow::bail!("--nodes must be at least 3 (one access node, one to kill, one more)");
    }
    if args.replication < 2 || args.replication > args.nodes {
        anyhow::bail!("--replication must be between 2 and --nodes");
    }
    std::fs::create_dir_all(&args.out)?;
    let nodes_dir = args.out.join("nodes");
    let common: Vec<String> = [
        "--replication",
        &args.replication.to_string(),
        "--liveness",
        "5s",
        "--repair-interval",
        "5s",
        "--sync-interval",
        "5s",
        "--gc-grace",
        "1m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let mut procs: Vec<Proc> = Vec::new();
    procs.push(Proc::spawn(
        "n0".into(),
        nodes_dir.join("n0"),
        common.clone(),
        None,
    )?);
    let boot = procs[0].addr(Duration::from_secs(1))?;
    for i in 1..args.nodes {
        procs.push(Proc::spawn(
            format!("n{i}"),
            nodes_dir.join(format!("n{i}")),
            common.clone(),
            Some(&boot),
        )?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let identity = args.out.join("client.key");
    let key = crate::identity::load_or_create(&identity)?;
    let client = Client::connect(boot.parse()?, key).await?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = started + args.duration;
    if !json {
        println!(
            "soak: {} node processes, replication {}, for {:?}; samples every {:?} into {}",
            args.nodes,
            args.replication,
            args.duration,
            args.interval,
            args.out.join("samples.csv").display()
        );
    }

    let workload = tokio::spawn(workload(
        client,
        counters.clone(),
        deadline,
        args.pause,
        args.seed,
    ));

    let mut sampler = Sampler::create(&args.out.join("samples.csv"))?;
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let mut next_sample = Instant::now();
    let mut next_churn = Instant::now() + args.churn_every;
    let mut step = 0usize;
    let mut extra = 0usize;
    // A killed node comes back after a pause; no other churn happens meanwhile.
    let mut down: Option<(usize, Instant)> = None;
    while Instant::now() < deadline {
        if let Some((i, at)) = down {
            if Instant::now() >= at {
                procs[i].start(Some(&boot))?;
                if !json {
                    println!(
                        "[{:>5} s] restarted {}",
                        started.elapsed().as_secs(),
                        procs[i].label
                    );
                }
                down = None;
                next_churn = Instant::now() + args.churn_every;
            }
        }
        if Instant::now() >= next_sample {
            let t = started.elapsed().as_secs_f64();
            let mut rows = Vec::new();
            for p in &procs {
                if let Some(pid) = p.pid() {
                    let mut row = soak_report::sample(
                        &p.label,
                        pid,
                        t,
                        p.started.elapsed().as_secs_f64(),
                        Some(&p.dir),
                        &counters,
                    );
                    let (heap, maps) = soak_report::scrape_node(p.metrics_port).await;
                    row.heap_kib = heap;
                    row.map_entries = (!maps.is_empty()).then(|| maps.iter().map(|m| m.1).sum());
                    row.maps = maps;
                    rows.push(row);
                }
            }
            let mut me = soak_report::sample("client", std::process::id(), t, t, None, &counters);
            me.heap_kib = crate::node::metrics::heap_usage().map(|h| h.in_use / 1024);
            rows.push(me);
            for mut r in rows {
                sampler.write(&mut r)?;
            }
            next_sample += args.interval;
        }
        if down.is_none() && Instant::now() >= next_churn {
            down = churn(
                &mut procs, &mut step, &mut extra, &mut rng, &boot, &common, &nodes_dir, json,
                started,
            )?;
            counters.events.fetch_add(1, Ordering::Relaxed);
            next_churn = Instant::now() + args.churn_every;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = workload.await??;
    for p in &mut procs {
        p.terminate(Duration::from_secs(20));
    }
    let samples = soak_report::read_samples(&args.out.join("samples.csv"))?;
    let summary = soak_report::summarize(&samples, &counters, &stats, args.duration);
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    soak_report::plot(&samples, &args.out.join("soak.svg"))?;
    if json {
        super::output::print_json(&summary)?;
    } else {
        print!("{}", soak_report::table(&summary));
    }
    if counters.mismatches.load(Ordering::Relaxed) > 0 {
        anyhow::bail!("gets returned bytes no write put there");
    }
    Ok(())
}

/// One churn event; `step` cycles kill, join, kill, leave (a leave only once an extra node is
/// up, a join only while fewer than two extras are). A kill returns the node to restart and
/// when.
#[allow(clippy::too_many_arguments)]
fn churn(
    procs: &mut Vec<Proc>,
    step: &mut usize,
    extra: &mut usize,
    rng: &mut StdRng,
    boot: &str,
    common: &[String],
    nodes_dir: &Path,
    quiet: bool,
    started: Instant,
) -> anyhow::Result<Option<(usize, Instant)>> {
    let t = started.elapsed().as_secs();
    let kind = *step % 4;
    *step += 1;
    let say = |what: String| {
        if !quiet {
            println!("[{t:>5} s] {what}");
        }
    };
    match kind {
        1 if procs.iter().filter(|p| p.label.starts_with('x')).count() < 2 => {
            *extra += 1;
            let label = format!("x{extra}");
            let mut args = common.to_vec();
            args.push("--drain".into());
            say(format!("join {label}"));
            procs.push(Proc::spawn(
                label.clone(),
                nodes_dir.join(&label),
                args,
                Some(boot),
            )?);
        }
        3 => {
            if let Some(i) = procs.iter().rposition(|p| p.label.starts_with('x')) {
                say(format!("leave {} (drain)", procs[i].label));
                let mut p = procs.remove(i);
                // The drain runs on while sampling goes on; its exit is printed when it ends.
                tokio::task::spawn_blocking(move || {
                    let status = p.terminate(Duration::from_secs(120));
                    if !quiet {
                        println!("{} left: {status:?}", p.label);
                    }
                });
            }
        }
        _ => {
            // Never node 0: it is the workload's access node.
            let i = rng.gen_range(1..procs.len());
            say(format!("kill -9 {}", procs[i].label));
            procs[i].kill9();
            return Ok(Some((i, Instant::now() + RESTART_AFTER)));
        }
    }
    Ok(None)
}

/// What a name may hold: `None` is absent. Several when a write's outcome was an error.
type Possible = Vec<Option<[u8; 32]>>;

async fn workload(
    client: Client,
    counters: Arc<Counters>,
    deadline: Instant,
    pause: Duration,
    seed: u64,
) -> anyhow::Result<WorkloadStats> {
    const NAMES: usize = 40;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut known: Vec<Possible> = vec![vec![None]; NAMES];
    let mut stats = WorkloadStats::default();
    while Instant::now() < deadline {
        let i = rng.gen_range(0..NAMES);
        let name = format!("soak/f{i}");
        let exists = known[i].iter().any(Option::is_some);
        let roll: u32 = rng.gen_range(0..100);
        let op = match roll {
            0..=44 => "get",
            45..=59 => "stat",
            60..=84 if !exists => "put",
            60..=84 => "update",
            _ if exists => "rm",
            _ => "put",
        };
        let result: Result<Option<Option<[u8; 32]>>, Error> = match op {
            "get" => {
                let t = Instant::now();
                let r = client.get_bytes(&name).await;
                stats.record_get(u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
                match r {
                    Ok(data) => check_read(&mut known[i], Some(digest(&data)), &counters, &name),
                    Err(Error::NotFound(_)) | Err(Error::Deleted { .. }) => {
                        check_read(&mut known[i], None, &counters, &name)
                    }
                    Err(e) => Err(e),
                }
                .map(|()| None)
            }
            "stat" => match client.stat(&name).await {
                Ok(_) | Err(Error::NotFound(_)) | Err(Error::Deleted { .. }) => Ok(None),
                Err(e) => Err(e),
            },
            "put" | "update" => {
                let data = payload(&mut rng);
                let d = digest(&data);
                let r = if op == "put" {
                    client.put_bytes(&name, &data).await.map(|_| ())
                } else {
                    client
                        .update(&name, &data[..], None, None)
                        .await
                        .map(|_| ())
                };
                match r {
                    Ok(()) => Ok(Some(Some(d))),
                    Err(e) => {
                        known[i].push(Some(d));
                        Err(e)
                    }
                }
            }
            _ => match client.remove(&name, None).await {
                Ok(_) => Ok(Some(None)),
                Err(e) => {
                    known[i].push(None);
                    Err(e)
                }
            },
        };
        match result {
            Ok(written) => {
                if let Some(now) = written {
                    tracing::debug!(
                        name,
                        op,
                        value = ?now.map(|d| hex::encode(&d[..4])),
                        "acknowledged"
                    );
                    known[i] = vec![now];
                }
                counters.ok.fetch_add(1, Ordering::Relaxed);
                *stats.ops.entry(op.to_string()).or_default() += 1;
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                *stats.errors.entry(op.to_string()).or_default() += 1;
                if stats.last_errors.len() >= 20 {
                    stats.last_errors.remove(0);
                }
                stats.last_errors.push(format!("{op} {name}: {e}"));
            }
        }
        tokio::time::sleep(pause).await;
    }
    Ok(stats)
}

/// A read saw `seen`: right if it is one of the possible values (which it then settles on).
fn check_read(
    possible: &mut Possible,
    seen: Option<[u8; 32]>,
    counters: &Counters,
    name: &str,
) -> Result<(), Error> {
    if possible.contains(&seen) {
        *possible = vec![seen];
    } else {
        counters.mismatches.fetch_add(1, Ordering::Relaxed);
        let short = |v: &Option<[u8; 32]>| match v {
            Some(d) => hex::encode(&d[..4]),
            None => "absent".to_string(),
        };
        tracing::error!(
            name,
            seen = short(&seen),
            expected = ?possible.iter().map(short).collect::<Vec<_>>(),
            "a read returned a value no write put there"
        );
    }
    Ok(())
}

fn digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Mostly small (inline or one block), sometimes a few blocks.
fn payload(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.gen_bool(0.7) {
        rng.gen_range(100..16 << 10)
    } else {
        rng.gen_range(256 << 10..3 << 20)
    };
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    data
}
