//! What `swarmstore soak` records: one CSV row per process per interval (resident memory and
//! its anonymous part, the heap in use, file descriptors, sockets, store size, the workload's
//! counts, error lines in the node's log), the summary (least-squares slopes of memory and
//! descriptors per process, over its longest uninterrupted life after a warm-up) and the SVG
//! plot.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// What the workload counted so far, read by the sampler.
#[derive(Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub mismatches: AtomicU64,
    pub events: AtomicU64,
}

/// Latency and counts of the workload's operations.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WorkloadStats {
    pub ops: HashMap<String, u64>,
    pub errors: HashMap<String, u64>,
    /// Gets by latency in whole milliseconds (the last bucket: that long or longer). Fixed
    /// size: a list of every get's time grew the soak's own memory for the whole run.
    #[serde(skip)]
    pub get_ms: Vec<u64>,
    pub last_errors: Vec<String>,
}

/// Latency buckets of [`WorkloadStats::get_ms`]: 1 ms each, up to a minute.
const GET_MS_BUCKETS: usize = 60_001;

impl WorkloadStats {
    pub fn record_get(&mut self, ms: u64) {
        if self.get_ms.is_empty() {
            self.get_ms = vec![0; GET_MS_BUCKETS];
        }
        let i = usize::try_from(ms)
            .unwrap_or(usize::MAX)
            .min(GET_MS_BUCKETS - 1);
        self.get_ms[i] += 1;
    }

    /// The `q` quantile of the gets' latency, in ms (0 with no gets).
    pub fn get_quantile_ms(&self, q: f64) -> u64 {
        let total: u64 = self.get_ms.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64 * q) as u64).min(total - 1);
        let mut seen = 0;
        for (ms, n) in self.get_ms.iter().enumerate() {
            seen += n;
            if seen > want {
                return ms as u64;
            }
        }
        (GET_MS_BUCKETS - 1) as u64
    }
}

/// Samples taken before a process has run this long are left out of its slopes: start-up
/// (connections forming, caches filling) is not a leak.
const WARMUP_S: f64 = 120.0;

/// One process at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub process: String,
    pub pid: u32,
    pub up_s: f64,
    pub rss_kib: u64,
    /// The anonymous part of `rss_kib` (heap, stacks): the rest is pages of the executable
    /// and libraries, shared by every node process and bounded by their size.
    pub anon_kib: u64,
    /// The allocator's bytes in use, from the node's `/metrics` (`None` where unread).
    pub heap_kib: Option<u64>,
    /// Entries in the node's bounded balancing maps, summed (`swarmstore_map_entries`): they
    /// fill to their bounds and stay there, so a rise that never stops is a map unbounded.
    pub map_entries: Option<u64>,
    /// The same per map, written to `maps.csv` (which map creeps, when the sum does).
    #[serde(skip)]
    pub maps: Vec<(String, u64)>,
    pub fds: u64,
    pub sockets: u64,
    pub store_bytes: u64,
    pub ops_ok: u64,
    pub ops_err: u64,
    pub mismatches: u64,
    pub events: u64,
    /// ERROR lines in this process's log so far (nodes only).
    pub log_errors: u64,
    #[serde(skip)]
    log: Option<PathBuf>,
}

/// Reads one process's numbers from /proc (zeros where the platform has none).
pub fn sample(
    process: &str,
    pid: u32,
    t_s: f64,
    up_s: f64,
    data_dir: Option<&Path>,
    counters: &Counters,
) -> Sample {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let (rss_kib, anon_kib) = (kib("VmRSS:"), kib("RssAnon:"));
    let (mut fds, mut sockets) = (0, 0);
    if let Ok(entries) = std::fs::read_dir(proc_dir.join("fd")) {
        for e in entries.flatten() {
            fds += 1;
            if std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            {
                sockets += 1;
            }
        }
    }
    Sample {
        t_s,
        process: process.to_string(),
        pid,
        up_s,
        rss_kib,
        anon_kib,
        heap_kib: None,
        map_entries: None,
        maps: Vec::new(),
        fds,
        sockets,
        store_bytes: data_dir.map(dir_bytes).unwrap_or(0),
        ops_ok: counters.ok.load(Ordering::Relaxed),
        ops_err: counters.errors.load(Ordering::Relaxed),
        mismatches: counters.mismatches.load(Ordering::Relaxed),
        events: counters.events.load(Ordering::Relaxed),
        log_errors: 0,
        log: data_dir.map(|d| d.with_extension("log")),
    }
}

/// `swarmstore_heap_in_use_bytes` (in KiB) and `swarmstore_map_entries` per map from a
/// node's `/metrics` on 127.0.0.1; `None` and nothing if it does not answer within a second
/// (a node starting or stopping).
pub async fn scrape_node(port: u16) -> (Option<u64>, Vec<(String, u64)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        Some(body)
    };
    match tokio::time::timeout(Duration::from_secs(1), read).await {
        Ok(Some(body)) => (heap_in_use_kib(&body), map_entries(&body)),
        _ => (None, Vec::new()),
    }
}

fn heap_in_use_kib(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("swarmstore_heap_in_use_bytes "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|b| b / 1024)
}

/// `swarmstore_map_entries{map="NAME"} N` lines as (NAME, N).
fn map_entries(metrics: &str) -> Vec<(String, u64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("swarmstore_map_entries{"))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            let name = labels.split("map=\"").nth(1)?.split('"').next()?;
            Some((name.to_string(), value.trim().parse::<u64>().ok()?))
        })
        .collect()
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// The CSVs (`samples.csv`, and `maps.csv` beside it), and how far each node's log has been
/// scanned for ERROR lines.
pub struct Sampler {
    out: std::fs::File,
    maps: std::fs::File,
    logs: HashMap<PathBuf, (u64, u64)>,
}

/// The samples written to `path` by a [`Sampler`], read back for the summary and the plot:
/// the soak keeps none in memory (kept, they grew the soak's own memory for the whole run,
/// and its row is the workload client's). Rows that do not parse are skipped.
pub fn read_samples(path: &Path) -> std::io::Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 16 {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().ok();
        let x = |i: usize| f[i].parse::<f64>().ok();
        let (Some(t_s), Some(pid), Some(up_s)) = (x(0), n(2), x(3)) else {
            continue;
        };
        out.push(Sample {
            t_s,
            process: f[1].to_string(),
            pid: u32::try_from(pid).unwrap_or(0),
            up_s,
            rss_kib: n(4).unwrap_or(0),
            anon_kib: n(5).unwrap_or(0),
            heap_kib: n(6),
            map_entries: n(7),
            maps: Vec::new(),
            fds: n(8).unwrap_or(0),
            sockets: n(9).unwrap_or(0),
            store_bytes: n(10).unwrap_or(0),
            ops_ok: n(11).unwrap_or(0),
            ops_err: n(12).unwrap_or(0),
            mismatches: n(13).unwrap_or(0),
            events: n(14).unwrap_or(0),
            log_errors: n(15).unwrap_or(0),
            log: None,
        });
    }
    Ok(out)
}

impl Sampler {
    pub fn create(path: &Path) -> std::io::Result<Sampler> {
        let mut out = std::fs::File::create(path)?;
        writeln!(
            out,
            "t_s,process,pid,up_s,rss_kib,anon_kib,heap_kib,map_entries,fds,sockets,store_bytes,ops_ok,ops_err,mismatches,events,log_errors"
        )?;
        let mut maps = std::fs::File::create(path.with_file_name("maps.csv"))?;
        writeln!(maps, "t_s,process,map,entries")?;
        Ok(Sampler {
            out,
            maps,
            logs: HashMap::new(),
        })
    }

    /// Fills in the sample's log count and appends its row.
    pub fn write(&mut self, s: &mut Sample) -> std::io::Result<()> {
        if let Some(log) = s.log.clone() {
            s.log_errors = self.scan(&log);
        }
        writeln!(
            self.out,
            "{:.1},{},{},{:.1},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.t_s,
            s.process,
            s.pid,
            s.up_s,
            s.rss_kib,
            s.anon_kib,
            s.heap_kib.map(|h| h.to_string()).unwrap_or_default(),
            s.map_entries.map(|n| n.to_string()).unwrap_or_default(),
            s.fds,
            s.sockets,
            s.store_bytes,
            s.ops_ok,
            s.ops_err,
            s.mismatches,
            s.events,
            s.log_errors
        )?;
        for (map, n) in &s.maps {
            writeln!(self.maps, "{:.1},{},{map},{n}", s.t_s, s.process)?;
        }
        self.maps.flush()?;
        self.out.flush()
    }

    /// ERROR lines in `log` so far, reading only what was appended since the last call.
    fn scan(&mut self, log: &Path) -> u64 {
        let (offset, count) = self.logs.entry(log.to_path_buf()).or_default();
        if let Ok(mut f) = std::fs::File::open(log) {
            if f.seek(SeekFrom::Start(*offset)).is_ok() {
                let mut reader = BufReader::new(f);
                let mut line = String::new();
                while let Ok(n) = reader.read_line(&mut line) {
                    if n == 0 || !line.ends_with('\n') {
                        break;
                    }
                    *offset += n as u64;
                    if line.contains(" ERROR ") {
                        *count += 1;
                    }
                    line.clear();
                }
            }
        }
        *count
    }
}

/// One process's trend over its longest life.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub process: String,
    pub samples: usize,
    pub span_s: f64,
    pub rss_mib_first: f64,
    pub rss_mib_last: f64,
    pub rss_mib_max: f64,
    pub rss_mib_per_hour: f64,
    /// Anonymous memory (what can leak; the rest of RSS is executable pages).
    pub anon_mib_first: f64,
    pub anon_mib_last: f64,
    pub anon_mib_per_hour: f64,
    /// The allocator's bytes in use, where the process's `/metrics` answered.
    pub heap_mib_first: Option<f64>,
    pub heap_mib_last: Option<f64>,
    pub heap_mib_per_hour: Option<f64>,
    /// Twice the standard error of each MiB/hour slope: a slope inside ± this is flat
    /// within noise.
    pub rss_mib_per_hour_2se: f64,
    pub heap_mib_per_hour_2se: Option<f64>,
    pub fds_first: u64,
    pub fds_last: u64,
    pub fds_per_hour: f64,
    pub sockets_last: u64,
    pub store_mib_last: f64,
    pub log_errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub duration_s: f64,
    pub ops_ok: u64,
    pub ops_err: u64,
    pub mismatches: u64,
    pub churn_events: u64,
    pub get_p50_ms: u64,
    pub get_p99_ms: u64,
    pub trends: Vec<Trend>,
    pub workload: WorkloadStats,
}

pub fn summarize(
    samples: &[Sample],
    counters: &Counters,
    stats: &WorkloadStats,
    duration: Duration,
) -> Summary {
    let mut order: Vec<&str> = Vec::new();
    for s in samples {
        if !order.contains(&s.process.as_str()) {
            order.push(&s.process);
        }
    }
    let trends = order.iter().filter_map(|p| trend(samples, p)).collect();
    let pct = |q: f64| stats.get_quantile_ms(q);
    let workload = stats.clone();
    Summary {
        duration_s: duration.as_secs_f64(),
        ops_ok: counters.ok.load(Ordering::Relaxed),
        ops_err: counters.errors.load(Ordering::Relaxed),
        mismatches: counters.mismatches.load(Ordering::Relaxed),
        churn_events: counters.events.load(Ordering::Relaxed),
        get_p50_ms: pct(0.5),
        get_p99_ms: pct(0.99),
        trends,
        workload,
    }
}

/// The process's longest run of samples under one pid, after the warm-up.
fn trend(samples: &[Sample], process: &str) -> Option<Trend> {
    let mut lives: HashMap<u32, Vec<&Sample>> = HashMap::new();
    for s in samples.iter().filter(|s| s.process == process) {
        lives.entry(s.pid).or_default().push(s);
    }
    let life = lives.into_values().max_by_key(Vec::len)?;
    let last = *life.last()?;
    let warm: Vec<&Sample> = life
        .iter()
        .copied()
        .filter(|s| s.up_s >= WARMUP_S)
        .collect();
    let fit = if warm.len() >= 3 { &warm } else { &life };
    let first = *fit.first()?;
    let mib = |s: &Sample| s.rss_kib as f64 / 1024.0;
    let anon_mib = |s: &Sample| s.anon_kib as f64 / 1024.0;
    let heap: Vec<&Sample> = fit
        .iter()
        .copied()
        .filter(|s| s.heap_kib.is_some())
        .collect();
    let heap_mib = |s: &Sample| s.heap_kib.unwrap_or(0) as f64 / 1024.0;
    let (rss, heap_fit) = (slope(fit, mib), slope(&heap, heap_mib));
    Some(Trend {
        process: process.to_string(),
        samples: fit.len(),
        span_s: last.t_s - first.t_s,
        rss_mib_first: mib(first),
        rss_mib_last: mib(last),
        rss_mib_max: life.iter().map(|s| mib(s)).fold(0.0, f64::max),
        rss_mib_per_hour: rss.0 * 3600.0,
        rss_mib_per_hour_2se: 2.0 * rss.1 * 3600.0,
        anon_mib_first: anon_mib(first),
        anon_mib_last: anon_mib(last),
        anon_mib_per_hour: slope(fit, anon_mib).0 * 3600.0,
        heap_mib_first: heap.first().map(|s| heap_mib(s)),
        heap_mib_last: heap.last().map(|s| heap_mib(s)),
        heap_mib_per_hour: (heap.len() >= 2).then_some(heap_fit.0 * 3600.0),
        heap_mib_per_hour_2se: (heap.len() >= 3).then_some(2.0 * heap_fit.1 * 3600.0),
        fds_first: first.fds,
        fds_last: last.fds,
        fds_per_hour: slope(fit, |s| s.fds as f64).0 * 3600.0,
        sockets_last: last.sockets,
        store_mib_last: last.store_bytes as f64 / (1 << 20) as f64,
        log_errors: last.log_errors,
    })
}

/// Least-squares slope of `y` over `t_s` (per second) and its standard error; zeros with
/// fewer than two points (and a zero error with fewer than three).
fn slope(points: &[&Sample], y: impl Fn(&Sample) -> f64) -> (f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (0.0, 0.0);
    }
    let mt = points.iter().map(|s| s.t_s).sum::<f64>() / n;
    let my = points.iter().map(|s| y(s)).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in points {
        num += (s.t_s - mt) * (y(s) - my);
        den += (s.t_s - mt) * (s.t_s - mt);
    }
    if den == 0.0 {
        return (0.0, 0.0);
    }
    let b = num / den;
    if points.len() < 3 {
        return (b, 0.0);
    }
    let residual: f64 = points
        .iter()
        .map(|s| (y(s) - my - b * (s.t_s - mt)).powi(2))
        .sum();
    (b, (residual / (n - 2.0) / den).sqrt())
}

pub fn table(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nsoak: {:.0} s, {} ops ok, {} errors, {} mismatches, {} churn events, get p50 {} ms p99 {} ms",
        s.duration_s, s.ops_ok, s.ops_err, s.mismatches, s.churn_events, s.get_p50_ms, s.get_p99_ms
    );
    let _ = writeln!(
        out,
        "{:<8} {:>7} {:>8} {:>9} {:>9} {:>14} {:>9} {:>10} {:>9} {:>14} {:>5} {:>5} {:>9} {:>8} {:>9} {:>6}",
        "process",
        "samples",
        "span s",
        "RSS MiB",
        "max MiB",
        "MiB/hour±2SE",
        "anon MiB",
        "anon MiB/h",
        "heap MiB",
        "heap MiB/h±2SE",
        "fds",
        "last",
        "fds/hour",
        "sockets",
        "store MiB",
        "errors"
    );
    for t in &s.trends {
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>8.0} {:>9.1} {:>9.1} {:>14} {:>9.1} {:>10.2} {:>9} {:>14} {:>5} {:>5} {:>9.2} {:>8} {:>9.1} {:>6}",
            t.process,
            t.samples,
            t.span_s,
            t.rss_mib_first,
            t.rss_mib_max,
            format!("{:+.2}±{:.2}", t.rss_mib_per_hour, t.rss_mib_per_hour_2se),
            t.anon_mib_last,
            t.anon_mib_per_hour,
            t.heap_mib_last.map_or("-".into(), |h| format!("{h:.1}")),
            match (t.heap_mib_per_hour, t.heap_mib_per_hour_2se) {
                (Some(h), Some(e)) => format!("{h:+.2}±{e:.2}"),
                (Some(h), None) => format!("{h:+.2}"),
                _ => "-".into(),
            },
            t.fds_first,
            t.fds_last,
            t.fds_per_hour,
            t.sockets_last,
            t.store_mib_last,
            t.log_errors
        );
    }
    out
}

#[cfg(feature = "plot")]
pub fn plot(samples: &[Sample], path: &Path) -> anyhow::Result<()> {
    draw(samples, path).map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))
}

#[cfg(not(feature = "plot"))]
pub fn plot(_samples: &[Sample], path: &Path) -> anyhow::Result<()> {
    eprintln!(
        "note: this build has no plotting (the `plot` feature is off), so {} was not written; samples.csv was",
        path.display()
    );
    Ok(())
}

/// RSS, its anonymous part, heap in use and file descriptors per process over the run, one
/// line per process (a restart starts a new segment of the same colour).
#[cfg(feature = "plot")]
fn draw(samples: &[Sample], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 1160)).into_drawing_area();
    root.fill(&WHITE)?;
    let halves = root.split_evenly((4, 1));
    let t_max = samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
    let mut order: Vec<&str> = Vec::new();
    for s in samples {
        if !order.contains(&s.process.as_str()) {
            order.push(&s.process);
        }
    }
    let colors = [
        RED,
        BLUE,
        GREEN,
        MAGENTA,
        CYAN,
        BLACK,
        RGBColor(255, 140, 0),
    ];
    type Panel<'a> = (&'a str, fn(&Sample) -> f64);
    let panels: [Panel; 4] = [
        ("resident memory (MiB)", |s| s.rss_kib as f64 / 1024.0),
        ("anonymous memory (MiB)", |s| s.anon_kib as f64 / 1024.0),
        ("heap in use (MiB)", |s| {
            s.heap_kib.unwrap_or(0) as f64 / 1024.0
        }),
        ("open file descriptors", |s| s.fds as f64),
    ];
    for (area, (title, get)) in halves.iter().zip(panels) {
        let y_max = samples.iter().map(get).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("soak: {title} per process"), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..t_max, 0f64..y_max)?;
        chart.configure_mesh().x_desc("seconds").draw()?;
        for (i, p) in order.iter().enumerate() {
            let color = colors[i % colors.len()];
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.process == *p).collect();
            let mut first = true;
            for segment in mine.chunk_by(|a, b| a.pid == b.pid) {
                let series = chart.draw_series(LineSeries::new(
                    segment.iter().map(|s| (s.t_s, get(s))),
                    ShapeStyle::from(&color).stroke_width(2),
                ))?;
                if first {
                    series
                        .label(p.to_string())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
                    first = false;
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_latency_quantiles_come_from_the_fixed_histogram() {
        let mut s = WorkloadStats::default();
        assert_eq!(s.get_quantile_ms(0.5), 0, "no gets");
        for ms in 1..=100 {
            s.record_get(ms);
        }
        s.record_get(u64::MAX); // past the last bucket: counted there
        assert_eq!(
            s.get_ms.len(),
            GET_MS_BUCKETS,
            "memory fixed whatever the run's length"
        );
        assert_eq!(s.get_quantile_ms(0.5), 51);
        assert_eq!(s.get_quantile_ms(0.99), 100);
        assert_eq!(s.get_quantile_ms(1.0), (GET_MS_BUCKETS - 1) as u64);
    }

    #[test]
    fn samples_written_are_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("samples.csv");
        let mut sampler = Sampler::create(&path).expect("sampler");
        let counters = Counters::default();
        let mut a = sample("client", std::process::id(), 1.5, 1.5, None, &counters);
        a.heap_kib = Some(77);
        sampler.write(&mut a).expect("write");
        let back = read_samples(&path).expect("read");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].process, "client");
        assert_eq!(back[0].pid, std::process::id());
        assert_eq!(back[0].heap_kib, Some(77));
        assert_eq!(back[0].map_entries, None);
        assert_eq!(back[0].rss_kib, a.rss_kib);
    }

    #[test]
    fn a_slope_comes_with_its_standard_error() {
        let counters = Counters::default();
        let at = |t: f64| {
            let mut s = sample("n0", 1, t, t, None, &counters);
            s.t_s = t;
            s
        };
        let samples: Vec<Sample> = (0..10).map(|t| at(f64::from(t))).collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        let (b, se) = slope(&refs, |s| 2.0 * s.t_s + 1.0);
        assert!(
            (b - 2.0).abs() < 1e-12 && se == 0.0,
            "a straight line: {b} ± {se}"
        );
        // Noise of ±1 around the same line: the slope is still about 2, now with an error
        // (for alternating ±1 over t = 0..9 it is sqrt((10 - 25/82.5) / 8 / 82.5) = 0.121).
        let noisy = |s: &Sample| {
            2.0 * s.t_s
                + if (s.t_s as u64).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                }
        };
        let (b, se) = slope(&refs, noisy);
        assert!((b - 2.0).abs() < 0.2, "{b}");
        assert!((se - 0.1213).abs() < 0.01, "{se}");
        assert_eq!(slope(&refs[..1], noisy), (0.0, 0.0), "one point: no slope");
    }
}
