//! The embedded default at rest: how long `openguild serve` takes to be ready on an empty
//! data directory, and its resident memory once idle. Five fresh starts of the release
//! binary; each waits for the "ready" line, then idles `IDLE` before RSS is read from
//! `/proc/<pid>/status`.
//!
//! `cargo bench -p openguild --bench footprint`. Targets (docs/PERFORMANCE.md): ready in under
//! 1 s, idle RSS under 50 MB.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const IDLE: Duration = Duration::from_secs(10);

/// A field of `/proc/<pid>/status` in kB, as MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

fn main() {
    for run in 1..=RUNS {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_openguild"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("OPENGUILD_DATA_DIR", dir.path())
            .env("OPENGUILD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut lines = lines.map_while(Result::ok);
        lines.by_ref().find(|l| l.contains("openguild ready on")).expect("the server got ready");
        let ready = started.elapsed();
        std::thread::spawn(move || lines.for_each(drop));
        std::thread::sleep(IDLE);
        let (rss, peak) = (status_mib(child.id(), "VmRSS:"), status_mib(child.id(), "VmHWM:"));
        let threads = std::fs::read_dir(format!("/proc/{}/task", child.id())).unwrap().count();
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "run {run}: ready in {:.0} ms; idle RSS {rss:.1} MiB ({:.1} MB), peak {peak:.1} MiB; {threads} threads",
            ready.as_secs_f64() * 1000.0,
            rss * 1.048_576
        );
    }
}
