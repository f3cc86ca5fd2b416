//! Prometheus metrics (`GET /metrics`): requests and refusals by flow and reason, runs by flow
//! and final state, action attempts and their latency by action kind, flow reloads, and — read
//! from the store at scrape time — queue depth and the age of the oldest due run; the build
//! (`hookflow_build_info`) and the process ([`process`]: CPU, memory, file descriptors, start
//! time). OpenMetrics text, or Prometheus's classic text format (0.0.4) to a client that asks
//! for it ([`Format::negotiate`]).

mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabel {
    pub flow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub flow: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub flow: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct AlertLabels {
    /// The flow, or `*` for the server's own alerts.
    pub flow: String,
    pub alert: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<FlowLabel, Counter>,
    refused: Family<RefusedLabels, Counter>,
    runs: Family<RunLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    attempt_seconds: Family<KindLabel, Histogram, fn() -> Histogram>,
    reloads: Family<ResultLabel, Counter>,
    queue_depth: Gauge,
    oldest_due_seconds: Gauge,
    damaged_ranges: Family<KindLabel, Gauge>,
    damaged_bytes: Family<KindLabel, Gauge>,
    destination_in_flight: Family<DestinationLabel, Gauge>,
    destination_open: Family<DestinationLabel, Gauge>,
    waiting: Family<FlowLabel, Gauge>,
    stale_flows: Gauge,
    parked: Gauge,
    clock_offset: Gauge<f64, std::sync::atomic::AtomicU64>,
    clock_steps: Counter,
    alert_active: Family<AlertLabels, Gauge>,
    /// The dashboard's per-flow time series, fed by the same calls.
    pub stats: crate::stats::Stats,
}

/// What the store and the engine say at scrape time.
#[derive(Debug, Default)]
pub struct Facts {
    pub queue_depth: u64,
    pub oldest_due_seconds: u64,
    /// Each damaged range found at open: whether it is a torn tail, and its length.
    pub damage: Vec<(bool, u64)>,
    /// Each destination: attempts in flight, and whether its circuit is open.
    pub destinations: Vec<(String, usize, bool)>,
    /// Runs waiting at a `wait` step, per flow.
    pub waiting: Vec<(String, u64)>,
    /// Of those, the ones parked on disk until shortly before they wake.
    pub parked: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    pub destination: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookflow");
        let m = Metrics {
            requests: Family::default(),
            refused: Family::default(),
            runs: Family::default(),
            attempts: Family::default(),
            attempt_seconds: Family::new_with_constructor(latency),
            reloads: Family::default(),
            queue_depth: Gauge::default(),
            oldest_due_seconds: Gauge::default(),
            damaged_ranges: Family::default(),
            damaged_bytes: Family::default(),
            destination_in_flight: Family::default(),
            destination_open: Family::default(),
            waiting: Family::default(),
            stale_flows: Gauge::default(),
            parked: Gauge::default(),
            clock_offset: Gauge::default(),
            clock_steps: Counter::default(),
            alert_active: Family::default(),
            stats: crate::stats::Stats::default(),
            registry: Registry::default(),
        };
        m.register_all(&mut registry);
        Metrics { registry, ..m }
    }

    /// Names and explains every metric, in the order `/metrics` lists them.
    fn register_all(&self, registry: &mut Registry) {
        registry.register(
            "webhook_requests",
            "Webhook requests received, by flow",
            self.requests.clone(),
        );
        registry.register(
            "webhook_refused",
            "Webhook requests refused, by flow and reason",
            self.refused.clone(),
        );
        registry.register(
            "runs_finished",
            "Runs that reached a final state, by flow and state",
            self.runs.clone(),
        );
        registry.register(
            "action_attempts",
            "Action attempts by action kind and outcome",
            self.attempts.clone(),
        );
        registry.register(
            "action_attempt_duration_seconds",
            "Duration of action attempts, by action kind",
            self.attempt_seconds.clone(),
        );
        registry.register(
            "flow_reloads",
            "Flow reloads by result (applied, refused)",
            self.reloads.clone(),
        );
        registry.register(
            "flows_stale",
            "Flows served from their last good version because their file is broken",
            self.stale_flows.clone(),
        );
        registry.register(
            "clock_offset_seconds",
            "How far the database's clock is ahead of this instance's (PostgreSQL; 0 on the embedded store); followed when over 1 s",
            self.clock_offset.clone(),
        );
        registry.register(
            "clock_steps",
            "Steps of the wall clock this process has seen (NTP after a suspend, a VM migration, a bad RTC)",
            self.clock_steps.clone(),
        );
        registry.register(
            "alert_active",
            "1 while an alert is raised, by flow (`*` for the server's own) and alert; as the last judgement of the alerts read the shared state",
            self.alert_active.clone(),
        );
        registry.register(
            "runs_parked",
            "Waiting runs kept on disk, not in memory, until shortly before they wake",
            self.parked.clone(),
        );
        registry.register(
            "queue_depth",
            "Runs due now and not yet claimed (accepted, or a retry or wake-up whose time has come)",
            self.queue_depth.clone(),
        );
        registry.register(
            "oldest_due_run_age_seconds",
            "How long the oldest due run has been waiting",
            self.oldest_due_seconds.clone(),
        );
        registry.register(
            "store_damaged_ranges",
            "Byte ranges of the store that could not be read at open and were set aside, by kind (damaged, torn_tail)",
            self.damaged_ranges.clone(),
        );
        registry.register(
            "store_damaged_bytes",
            "Bytes of the store that could not be read at open and were set aside, by kind",
            self.damaged_bytes.clone(),
        );
        registry.register(
            "destination_in_flight",
            "Attempts in flight to each destination (its bulkhead)",
            self.destination_in_flight.clone(),
        );
        registry.register(
            "destination_circuit_open",
            "1 while a destination's circuit breaker is open or half open",
            self.destination_open.clone(),
        );
        registry.register(
            "runs_waiting",
            "Runs waiting at a wait step, by flow",
            self.waiting.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                commit: env!("HOOKFLOW_COMMIT").into(),
            })
            .set(1);
        registry.register(
            "build_info",
            "The build: its version and the commit it was built from (always 1)",
            build,
        );
    }

    pub fn request(&self, flow: &str) {
        self.requests
            .get_or_create(&FlowLabel { flow: flow.into() })
            .inc();
    }

    /// The alerts' states after a judgement (several alerts of one flow and kind, e.g.
    /// circuits of several destinations, count together).
    pub fn set_alerts<'a>(&self, states: impl Iterator<Item = &'a crate::store::alerts::AlertState>) {
        let mut now: std::collections::BTreeMap<AlertLabels, i64> = std::collections::BTreeMap::new();
        for s in states {
            *now.entry(AlertLabels {
                flow: s.flow.clone().unwrap_or_else(|| "*".into()),
                alert: s.kind.as_str().into(),
            })
            .or_default() += i64::from(s.active);
        }
        for (labels, n) in now {
            self.alert_active.get_or_create(&labels).set(n);
        }
    }

    pub fn refused(&self, flow: &str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabels {
                flow: flow.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn run_finished(&self, flow: &str, status: &str) {
        self.stats.count(flow, status);
        self.runs
            .get_or_create(&RunLabels {
                flow: flow.into(),
                status: status.into(),
            })
            .inc();
    }

    pub fn attempt(&self, flow: &str, kind: &str, outcome: &str, seconds: f64) {
        self.stats
            .attempt(flow, std::time::Duration::from_secs_f64(seconds));
        self.attempts
            .get_or_create(&AttemptLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.attempt_seconds
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(seconds);
    }

    pub fn reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// How many flows serve their last good version (their file is broken).
    pub fn set_stale_flows(&self, n: usize) {
        self.stale_flows.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text exposition, with the store's gauges set from its numbers.
    pub fn render(&self, store: &Facts) -> String {
        for (flow, n) in &store.waiting {
            self.waiting
                .get_or_create(&FlowLabel { flow: flow.clone() })
                .set(*n as i64);
        }
        for (name, in_flight, open) in &store.destinations {
            let label = DestinationLabel {
                destination: name.clone(),
            };
            self.destination_in_flight
                .get_or_create(&label)
                .set(*in_flight as i64);
            self.destination_open.get_or_create(&label).set(i64::from(*open));
        }
        self.queue_depth.set(store.queue_depth as i64);
        self.parked.set(i64::try_from(store.parked).unwrap_or(i64::MAX));
        self.clock_offset
            .set(crate::time::measured_offset_ms() as f64 / 1000.0);
        let (steps, _) = crate::time::steps_seen();
        if let Some(more) = steps.checked_sub(self.clock_steps.get()) {
            self.clock_steps.inc_by(more);
        }
        self.oldest_due_seconds.set(store.oldest_due_seconds as i64);
        for kind in ["damaged", "torn_tail"] {
            let of_kind = store
                .damage
                .iter()
                .filter(|(torn, _)| *torn == (kind == "torn_tail"));
            let label = KindLabel { kind: kind.into() };
            self.damaged_ranges
                .get_or_create(&label)
                .set(of_kind.clone().count() as i64);
            self.damaged_bytes
                .get_or_create(&label)
                .set(of_kind.map(|(_, n)| *n as i64).sum());
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        // The process's figures go before OpenMetrics' closing `# EOF`.
        let body = out.strip_suffix("# EOF\n").unwrap_or(&out).to_string();
        let mut out = body;
        process::Readings::now().render(&mut out);
        out.push_str("# EOF\n");
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

/// The exposition format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// Prometheus's text format 0.0.4, for clients that do not read OpenMetrics.
    Classic,
}

impl Format {
    /// From the `Accept` header: OpenMetrics when it is accepted (or nothing is said), the
    /// classic text format when only `text/plain` is.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::OpenMetrics;
        };
        let accepted = |ty: &str| {
            accept.split(',').any(|item| {
                let mut parts = item.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                let q = parts
                    .find_map(|p| p.strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                media.eq_ignore_ascii_case(ty) && q > 0.0
            })
        };
        if accepted("application/openmetrics-text") {
            Format::OpenMetrics
        } else if accepted("text/plain") {
            Format::Classic
        } else {
            Format::OpenMetrics
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// `openmetrics` (as [`Metrics::render`] writes it) in this format. The classic format
    /// names a counter's family with its `_total` suffix, has no `# UNIT` lines and no `# EOF`.
    pub fn convert(self, openmetrics: String) -> String {
        if self == Format::OpenMetrics {
            return openmetrics;
        }
        let counters: std::collections::HashSet<&str> = openmetrics
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.strip_suffix(" counter"))
            .collect();
        let mut out = String::with_capacity(openmetrics.len());
        for line in openmetrics.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
                let rest = line.strip_prefix(p)?;
                let (name, tail) = rest.split_once(' ')?;
                counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_negotiated_and_the_classic_one_names_counters_with_total() {
        use Format::*;
        for (accept, want) in [
            (None, OpenMetrics),
            (Some("*/*"), OpenMetrics),
            (Some("text/plain; version=0.0.4"), Classic),
            (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Classic),
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            (Some("application/openmetrics-text;q=0, text/plain"), Classic),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        let m = Metrics::new();
        m.run_finished("orders", "succeeded");
        let om = m.render(&Facts::default());
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("hookflow_build_info{version=\""), "{om}");
        assert!(om.contains("# TYPE hookflow_runs_finished counter\n"), "{om}");
        let classic = Classic.convert(om.clone());
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE hookflow_runs_finished_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# HELP hookflow_runs_finished_total "),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("hookflow_runs_finished_total{flow=\"orders\",status=\"succeeded\"} 1\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{classic}"
        );
        assert_eq!(OpenMetrics.convert(om.clone()), om);
    }

    #[test]
    fn exposition_carries_labels_and_values() {
        let m = Metrics::new();
        m.request("orders");
        m.request("orders");
        m.refused("orders", "bad_signature");
        m.run_finished("orders", "succeeded");
        m.attempt("orders", "http", "succeeded", 0.02);
        let text = m.render(&Facts {
            queue_depth: 3,
            oldest_due_seconds: 7,
            damage: vec![(false, 40), (false, 2), (true, 9)],
            destinations: vec![("api.example.com:443".into(), 4, true)],
            waiting: vec![("nurture".into(), 12)],
            parked: 10,
        });
        assert!(
            text.contains(r#"hookflow_webhook_requests_total{flow="orders"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"hookflow_webhook_refused_total{flow="orders",reason="bad_signature"} 1"#));
        assert!(text.contains(r#"hookflow_runs_finished_total{flow="orders",status="succeeded"} 1"#));
        assert!(text.contains(r#"hookflow_action_attempts_total{kind="http",outcome="succeeded"} 1"#));
        assert!(text.contains(r#"hookflow_action_attempt_duration_seconds_count{kind="http"} 1"#));
        assert!(text.contains("hookflow_queue_depth 3"));
        assert!(text.contains("hookflow_runs_parked 10"));
        assert!(text.contains("hookflow_oldest_due_run_age_seconds 7"));
        assert!(
            text.contains(r#"hookflow_store_damaged_ranges{kind="damaged"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"hookflow_store_damaged_bytes{kind="damaged"} 42"#));
        assert!(text.contains(r#"hookflow_store_damaged_bytes{kind="torn_tail"} 9"#));
        assert!(text.contains(r#"hookflow_destination_in_flight{destination="api.example.com:443"} 4"#));
        assert!(text.contains(r#"hookflow_destination_circuit_open{destination="api.example.com:443"} 1"#));
        assert!(text.contains(r#"hookflow_runs_waiting{flow="nurture"} 12"#));
    }
}
