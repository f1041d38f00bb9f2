//! The process as the kernel sees it, read from `/proc/self` at scrape time (Linux; on
//! other systems, or if `/proc` is not mounted, these metrics are left out).

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub(super) struct Process {
    /// Resident set size (`VmRSS`).
    rss_bytes: u64,
    /// Entries of `/proc/self/fd`, less the one the listing itself held.
    open_fds: u64,
    /// The soft limit on open files, if the kernel says.
    max_fds: Option<u64>,
}

impl Process {
    /// Reads `/proc/self`; `None` where there is none.
    pub(super) fn read() -> Option<Process> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())?;
        let listed = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
            limits
                .lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|soft| soft.parse().ok())
        });
        Some(Process { rss_bytes: rss_kib * 1024, open_fds: listed.saturating_sub(1), max_fds })
    }

    pub(super) fn register(self, registry: &mut Registry) {
        let gauge = |n: u64| {
            let g = Gauge::<i64>::default();
            g.set(super::gauge_value(n));
            g
        };
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process (VmRSS)",
            gauge(self.rss_bytes),
        );
        registry.register("process_open_fds", "Open file descriptors of the process", gauge(self.open_fds));
        if let Some(max) = self.max_fds {
            registry.register("process_max_fds", "The process's limit on open file descriptors (soft)", gauge(max));
        }
    }
}
