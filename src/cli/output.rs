//! Human and JSON output helpers, and progress bars for terminals.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::client::Progress;

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A byte progress bar on stderr when it is a terminal and output is not JSON.
pub fn progress_bar(total: u64, json: bool, verb: &str) -> (Option<ProgressBar>, Option<Progress>) {
    if json || !std::io::stderr().is_terminal() {
        return (None, None);
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(verb.to_string());
    let inc = bar.clone();
    (Some(bar), Some(Arc::new(move |n| inc.inc(n))))
}
