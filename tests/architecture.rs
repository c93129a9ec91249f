//! The module graph is a DAG that reads as the design: every top-level module of the library
//! may import (`crate::x`) only the modules this table allows. The wire types, the balancer
//! core and the client import nothing of the node or the CLI, and nothing but `main` imports
//! the CLI. Reads the source tree; comments are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and what it may import, bottom layers first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("ids", &[]),
    ("units", &[]),
    ("identity", &[]),
    ("client_config", &[]),
    ("record", &["ids"]),
    ("placement", &["ids"]),
    ("error", &["ids", "record"]),
    ("protocol", &["ids", "record"]),
    ("store", &["ids", "record"]),
    ("net", &["ids", "record", "protocol"]),
    ("balance", &["ids", "record", "protocol"]),
    (
        "node",
        &[
            "ids",
            "units",
            "identity",
            "record",
            "placement",
            "error",
            "protocol",
            "store",
            "net",
            "balance",
        ],
    ),
    (
        "client",
        &["ids", "record", "placement", "error", "protocol", "net"],
    ),
    (
        "config",
        &[
            "ids", "units", "record", "protocol", "net", "balance", "node",
        ],
    ),
    (
        "workload",
        &[
            "ids", "record", "error", "protocol", "balance", "node", "client",
        ],
    ),
    ("gateway", &["ids", "units", "record", "error", "client"]),
    (
        "cli",
        &[
            "ids",
            "units",
            "identity",
            "record",
            "error",
            "protocol",
            "store",
            "net",
            "balance",
            "node",
            "client",
            "config",
            "client_config",
            "workload",
            "gateway",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/node/root.rs` → `node`).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::x` a file names outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // The crate root's re-exports count as the module they come from.
            let module = match name.as_str() {
                "Error" | "Result" => "error",
                "Client" => "client",
                "Node" | "NodeConfig" => "node",
                other => other,
            };
            if !module.is_empty() {
                out.insert(module.to_string());
            }
            rest = after;
        }
    }
    out
}

#[test]
fn the_module_graph_follows_the_layers() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, ok)| (*m, ok.iter().copied().collect()))
        .collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        if module == "lib" || module == "main" {
            continue; // the crate root declares every module; main runs the CLI
        }
        seen.insert(module.clone());
        let Some(ok) = allowed.get(module.as_str()) else {
            violations.push(format!("{module}: not in the layer table"));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for import in imports(&text) {
            if import != module && !ok.contains(import.as_str()) {
                violations.push(format!(
                    "{} imports crate::{import}",
                    file.strip_prefix(src()).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward or sideways imports:\n{}",
        violations.join("\n")
    );
    assert!(
        seen.contains("protocol") && seen.contains("balance") && seen.contains("client"),
        "the test must see the tree it guards: {seen:?}"
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    let found = imports("use crate::node::Ctx; // crate::cli in a comment\nlet e: crate::Error;");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["error", "node"]);
}
