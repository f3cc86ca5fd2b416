//! The process's own figures in Prometheus's standard names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, …), read from `/proc/self` at each
//! scrape, as the official client libraries expose them: what a dashboard or an alert on
//! memory or file descriptors expects to find without hookflow-specific names.

/// One scrape's readings; `None` where `/proc` could not say (not Linux, or not readable).
#[derive(Debug, Default, PartialEq)]
pub struct Readings {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

impl Readings {
    /// This process, now.
    pub fn now() -> Readings {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        Readings {
            cpu_seconds: fields.map(|f| (f.utime + f.stime) as f64 / ticks),
            resident_bytes: fields.map(|f| f.rss_pages * rustix::param::page_size() as u64),
            virtual_bytes: fields.map(|f| f.vsize),
            open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_open_files(&s)),
            start_time_seconds: fields
                .zip(boot)
                .map(|(f, boot)| boot as f64 + f.starttime as f64 / ticks),
        }
    }

    /// The readings as exposition lines (the same in OpenMetrics and the classic format).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let mut one = |name: &str, kind: &str, help: &str, v: Option<String>| {
            if let Some(v) = v {
                let family = if kind == "counter" {
                    name.trim_end_matches("_total")
                } else {
                    name
                };
                let _ = write!(
                    out,
                    "# HELP {family} {help}\n# TYPE {family} {kind}\n{name} {v}\n"
                );
            }
        };
        one(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds.map(|v| format!("{v}")),
        );
        one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes.map(|v| v.to_string()),
        );
        one(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes.map(|v| v.to_string()),
        );
        one(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds.map(|v| v.to_string()),
        );
        one(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            self.max_fds.map(|v| v.to_string()),
        );
        one(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds.map(|v| format!("{v}")),
        );
    }
}

#[derive(Debug, Clone, Copy)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

/// The fields of `/proc/self/stat` used here. The command name (field 2) is in parentheses and
/// may hold spaces and parentheses itself: the fields are counted after its last `)`.
fn stat_fields(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |n: usize| f.get(n - 3).and_then(|s| s.parse::<u64>().ok());
    Some(StatFields {
        utime: at(14)?,
        stime: at(15)?,
        starttime: at(22)?,
        vsize: at(23)?,
        rss_pages: at(24)?,
    })
}

/// `btime` of `/proc/stat`: when the machine booted, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (hook flow (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!(
            (f.utime, f.stime, f.starttime, f.vsize, f.rss_pages),
            (250, 50, 123456, 104857600, 2560)
        );
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764979200\nprocesses 9\n"),
            Some(1764979200)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert!(stat_fields("garbage").is_none());
    }

    #[test]
    fn this_process_is_read() {
        let r = Readings::now();
        assert!(r.resident_bytes.unwrap() > 0 && r.open_fds.unwrap() > 0, "{r:?}");
        assert!(r.start_time_seconds.unwrap() > 1.5e9, "{r:?}");
        let mut out = String::new();
        r.render(&mut out);
        assert!(
            out.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total "),
            "{out}"
        );
    }
}
