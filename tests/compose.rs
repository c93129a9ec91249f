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
