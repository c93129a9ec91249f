//! `swarmstore node` as a child process: start, address, SIGKILL, SIGTERM, restart.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_swarmstore");

/// Runs a client command of the built binary with `identity`, ignoring `$SWARMSTORE_NODE`.
pub fn cli(args: &[&str], identity: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--identity")
        .arg(identity)
        .env_remove("SWARMSTORE_NODE")
        .output()
        .expect("run cli")
}

/// The JSON a successful command printed; panics with its stderr otherwise.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON on stdout")
}

/// Waits until the node at `addr` sees `want` live storage peers (30 s at most).
pub fn wait_live(addr: &str, want: usize, identity: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = json(&cli(&["status", "--json", "--node", addr], identity));
        let live = status["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .filter(|p| p["live"] == true)
            .count();
        if live >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} sees {live} peers");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for a CLI `child` (doing `what`) at most `deadline` from `started`, killing it if
/// it runs over: a command that hangs after losing a node is a failure, not a slow pass.
pub fn finish(mut child: Child, started: Instant, deadline: Duration, what: &str) -> Output {
    loop {
        if child.try_wait().expect("poll child").is_some() {
            return child.wait_with_output().expect("child output");
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("child output");
            panic!(
                "{what} still running after {deadline:?}: stdout {} stderr {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SHA-256 of a file, read 1 MiB at a time.
pub fn sha256_of(path: &Path) -> [u8; 32] {
    let mut f = std::fs::File::open(path).expect("open for hashing");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read for hashing");
        if n == 0 {
            return h.finalize().into();
        }
        h.update(&buf[..n]);
    }
}

pub struct NodeProc {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub args: Vec<String>,
    /// Command prefix, e.g. `ip netns exec NS` to run inside a network namespace.
    pub wrapper: Vec<String>,
    pub listen: String,
    /// The binary to run: this build's unless a test names another.
    pub bin: String,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl NodeProc {
    /// Starts a node on 127.0.0.1 (any port) with `args` added, waiting for its address file.
    pub fn start(dir: &Path, bootstrap: &[String], args: &[&str]) -> NodeProc {
        Self::start_in(&[], "/ip4/127.0.0.1/tcp/0", dir, bootstrap, args)
    }

    /// Starts a node from another binary `bin` (e.g. an older build, to compare).
    pub fn start_bin(bin: &str, dir: &Path, bootstrap: &[String], args: &[&str]) -> NodeProc {
        let mut node = NodeProc {
            child: None,
            dir: dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            wrapper: Vec::new(),
            listen: "/ip4/127.0.0.1/tcp/0".to_string(),
            bin: bin.to_string(),
        };
        node.spawn(bootstrap);
        node
    }

    /// Starts a node under a command `wrapper` (e.g. `["ip", "netns", "exec", "ns1"]`).
    pub fn start_in(
        wrapper: &[&str],
        listen: &str,
        dir: &Path,
        bootstrap: &[String],
        args: &[&str],
    ) -> NodeProc {
        let mut node = NodeProc {
            child: None,
            dir: dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            listen: listen.to_string(),
            bin: BIN.to_string(),
        };
        node.spawn(bootstrap);
        node
    }

    fn spawn(&mut self, bootstrap: &[String]) {
        let _ = std::fs::remove_file(self.dir.join("node.addr"));
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["node", "--no-mdns", "--listen", &self.listen, "--data-dir"])
            .arg(&self.dir)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(if std::env::var("NODE_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        self.child = Some(cmd.spawn().expect("spawn node"));
        self.addr();
    }

    pub fn addr(&self) -> String {
        let file = self.dir.join("node.addr");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = std::fs::read_to_string(&file) {
                if !s.trim().is_empty() {
                    return s.trim().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "node never wrote {}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self, bootstrap: &[String]) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn(bootstrap);
    }

    /// [`Self::check`], which must find no problem and no corrupt block.
    pub fn assert_clean(&self, when: &str) {
        let report = self.check();
        assert!(
            report["problems"].as_array().unwrap().is_empty(),
            "{when}: {report}"
        );
        assert!(
            report["corrupt_blocks"].as_array().unwrap().is_empty(),
            "{when}: {report}"
        );
    }

    /// `swarmstore node --check --json` on this node's data dir (node must be stopped).
    pub fn check(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["node", "--check", "--json", "--data-dir"])
            .arg(&self.dir)
            .output()
            .expect("run check");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("check output: {}", String::from_utf8_lossy(&out.stderr)));
        assert!(
            out.status.success(),
            "store check failed: {v} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        v
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request; the status code and body.
pub fn http(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, raw[split + 4..].to_vec())
}

/// Puts each `(name, bytes)` through `node` with the CLI (files written under `dir` first);
/// every put must succeed.
pub fn put_files(files: &[(String, Vec<u8>)], dir: &Path, node: &str, identity: &Path) {
    for (name, data) in files {
        let src = dir.join(name.replace('/', "_"));
        std::fs::write(&src, data).unwrap();
        let out = cli(
            &["put", src.to_str().unwrap(), "--name", name, "--node", node],
            identity,
        );
        assert!(
            out.status.success(),
            "put {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
