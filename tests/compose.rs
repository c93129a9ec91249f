//! The compose testnet: `deploy/compose.yml` passes `docker compose config` where Docker
//! Compose is installed (skipped with a message where it is not), its settings and key are
//! valid, and README's operator steps are exactly the commands the compose file lists.

use std::path::{Path, PathBuf};
use std::process::Command;

use swarmstore::config::NodeSettings;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The commands in the compose file's "Operator steps" comment.
fn compose_steps(compose: &str) -> Vec<String> {
    compose
        .lines()
        .skip_while(|l| !l.contains("Operator steps"))
        .skip_while(|l| !l.starts_with("#   "))
        .take_while(|l| l.starts_with("#   "))
        .map(|l| l.trim_start_matches("#   ").trim().to_string())
        .collect()
}

/// The commands in README's "Operating a testnet" code block.
fn readme_steps(readme: &str) -> Vec<String> {
    readme
        .lines()
        .skip_while(|l| l.trim() != "## Operating a testnet")
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn readme_operator_steps_are_the_compose_commands() {
    let from_compose = compose_steps(&read("deploy/compose.yml"));
    let from_readme = readme_steps(&read("README.md"));
    assert!(
        from_compose.len() >= 6,
        "steps in compose.yml: {from_compose:?}"
    );
    assert_eq!(from_readme, from_compose);
    // The steps cover the whole life of a testnet.
    for needle in [" build", " up -d", " put ", " get ", "/metrics", " down"] {
        assert!(
            from_compose.iter().any(|c| c.contains(needle)),
            "no step with {needle:?}"
        );
    }
}

#[test]
fn testnet_files_are_consistent() {
    let compose = read("deploy/compose.yml");
    for i in 1..=5 {
        assert!(
            compose.contains(&format!("\n  node{i}:\n")),
            "service node{i}"
        );
        assert!(
            compose.contains(&format!("node{i}-data:/data")),
            "volume of node{i}"
        );
        assert!(
            compose.contains(&format!("\n  node{i}-data:")),
            "named volume node{i}-data"
        );
        assert!(
            compose.contains(&format!("127.0.0.1:909{i}:9090")),
            "metrics port of node{i}"
        );
    }
    assert_eq!(
        compose
            .matches("SWARMSTORE_BOOTSTRAP: /dns4/node1/tcp/4001")
            .count(),
        4
    );
    assert_eq!(
        compose
            .matches("./swarm.key:/etc/swarmstore/swarm.key:ro")
            .count(),
        5
    );
    assert!(compose.contains("dockerfile: Dockerfile"));

    let key = read("deploy/swarm.key");
    assert!(
        key.parse::<libp2p::pnet::PreSharedKey>().is_ok(),
        "deploy/swarm.key"
    );
    let settings = NodeSettings::from_toml(&read("deploy/node.toml"), Path::new("/etc/swarmstore"))
        .expect("deploy/node.toml parses");
    assert_eq!(
        settings.metrics,
        Some("0.0.0.0:9090".parse().expect("addr"))
    );
    assert_eq!(settings.no_mdns, Some(true));

    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("HEALTHCHECK"), "image health check");
    assert!(
        dockerfile.contains("\"status\""),
        "health check asks the node"
    );
}

/// `docker compose config` (or the older `docker-compose config`) validates the file without
/// a Docker engine. Skipped, with a message, when neither is installed.
#[test]
fn compose_file_passes_docker_compose_config() {
    let file = root().join("deploy/compose.yml");
    let candidates: [&[&str]; 2] = [&["docker", "compose"], &["docker-compose"]];
    for cmd in candidates {
        let works = Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !works {
            continue;
        }
        let out = Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("-f")
            .arg(&file)
            .args(["config", "-q"])
            .output()
            .expect("run compose config");
        assert!(
            out.status.success(),
            "{} config rejected deploy/compose.yml: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    println!(
        "skipped: neither `docker compose` nor `docker-compose` is installed, so \
         deploy/compose.yml was not validated by Docker Compose"
    );
}

/// The testnet without Docker: five `swarmstore node` processes with the compose file's
/// settings (deploy/node.toml and deploy/swarm.key, per-node values through SWARMSTORE_*),
/// node1 as the bootstrap node named through /dns4, then the operator steps' client commands,
/// the image's health check command and a metrics scrape.
#[test]
fn testnet_settings_run_as_processes() {
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    const BIN: &str = env!("CARGO_BIN_EXE_swarmstore");
    struct Proc(Child);
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = root().join("deploy/swarm.key");
    let node = |i: usize, bootstrap: Option<&str>| -> (Proc, serde_json::Value) {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("SWARMSTORE_CONFIG", root().join("deploy/node.toml"))
            .env("SWARMSTORE_SWARM_KEY", &key)
            .env("SWARMSTORE_DATA_DIR", tmp.path().join(format!("node{i}")))
            // Loopback and OS-chosen ports instead of the containers' 0.0.0.0:4001/9090.
            .env("SWARMSTORE_LISTEN", "/ip4/127.0.0.1/tcp/0")
            .env("SWARMSTORE_METRICS", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .args(["node", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(b) = bootstrap {
            cmd.env("SWARMSTORE_BOOTSTRAP", b);
        }
        let mut child = cmd.spawn().expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let info: serde_json::Value = serde_json::Deserializer::from_reader(stdout)
            .into_iter()
            .next()
            .expect("node prints its addresses")
            .expect("JSON start line");
        (Proc(child), info)
    };
    let (n1, info1) = node(1, None);
    let addr1 = info1["addrs"][0].as_str().expect("addr").to_string();
    let port = addr1.split('/').nth(4).expect("tcp port").to_string();
    let boot = format!("/dns4/localhost/tcp/{port}");
    let mut others = Vec::new();
    for i in 2..=5 {
        others.push(node(i, Some(&boot)));
    }

    let client = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--swarm-key", key.to_str().expect("utf-8 path")])
            .arg("--identity")
            .arg(tmp.path().join("client.key"))
            .env_remove("SWARMSTORE_NODE")
            .output()
            .expect("run client")
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = client(&["status", "--json", "--node", &addr1]);
        let live = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v["peers"]
                    .as_array()
                    .map(|p| p.iter().filter(|p| p["live"] == true).count())
            })
            .unwrap_or(0);
        if live == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "node1 sees {live} of 4 peers");
        std::thread::sleep(Duration::from_millis(300));
    }

    // The operator's put and get from the host.
    let src = tmp.path().join("file.bin");
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&src, &data).expect("write");
    let out = client(&[
        "put",
        src.to_str().expect("path"),
        "--name",
        "testnet/file",
        "--node",
        &addr1,
    ]);
    assert!(
        out.status.success(),
        "put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = tmp.path().join("back.bin");
    let out = client(&[
        "get",
        "testnet/file",
        "-o",
        back.to_str().expect("path"),
        "--node",
        &addr1,
    ]);
    assert!(
        out.status.success(),
        "get: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&back).expect("read") == data);
    // Without the key the testnet is closed.
    let out = Command::new(BIN)
        .args(["status", "--node", &addr1, "--identity"])
        .arg(tmp.path().join("client.key"))
        .env_remove("SWARMSTORE_SWARM_KEY")
        .output()
        .expect("run client");
    assert!(!out.status.success(), "a client without the key got in");

    // The image's health check, as Docker runs it inside node3's container.
    let out = Command::new(BIN)
        .args(["status", "--data-dir"])
        .arg(tmp.path().join("node3"))
        .arg("--identity")
        .arg(tmp.path().join("node3/health-client.key"))
        .env("SWARMSTORE_SWARM_KEY", &key)
        .env_remove("SWARMSTORE_NODE")
        .output()
        .expect("health check");
    assert!(
        out.status.success(),
        "health check: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Metrics: node1 served the put.
    let metrics = info1["metrics"].as_str().expect("metrics url").to_string();
    let hostport = metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let mut s = std::net::TcpStream::connect(&hostport).expect("connect metrics");
    use std::io::{Read, Write};
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    // (The blocks themselves go from the client to their holders directly when it can reach
    // them, so only the publish is sure to pass through node1.)
    let publishes = text
        .lines()
        .find(|l| {
            l.starts_with("swarmstore_requests_served_total{protocol=\"client\",kind=\"publish\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert_eq!(publishes, 1.0, "{text}");
    drop(others);
    drop(n1);
}
