//! Flows: the YAML files users write (`spec`), what they compile into (`Flow`), and loading a
//! whole directory of them (`load`) with every error reported at once as `file:line: message`.

pub mod compile;
pub mod graph;
pub mod load;
pub mod locate;
pub mod parse;
pub mod schema;
pub mod spec;
pub mod warnings;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::action::Action;
use crate::mapping::Var;
use crate::matching::Condition;
use crate::template::Templates;

pub use crate::verify::Verifier;
pub use load::{LoadError, flow_name, load_dir, load_dir_or_last_good, load_source, reload_dir};
pub use spec::BodyMode;

pub use schema::schema;

/// A flow ready to run: every path, regex and template compiled.
#[derive(Debug)]
pub struct Flow {
    pub name: String,
    pub description: String,
    pub file: PathBuf,
    /// Short hash of the file's bytes, recorded on each run.
    pub version: String,
    /// The file's text, kept in the store by version so a run can be replayed under it.
    pub source: String,
    pub trigger: Trigger,
    pub vars: Vec<Var>,
    pub concurrency: Concurrency,
    pub actions: Vec<Action>,
    /// What ends a waiting run early.
    pub exits: Vec<crate::sequence::Exit>,
    /// Whether accepting an event renders templates (an `expr` condition, a `respond` block
    /// or an ordering key); when not, the webhook edge skips building a template context.
    pub ingress_templates: bool,
    /// What to watch and raise alerts about (`alerts:`, with defaults).
    pub alerts: crate::alert::Rules,
}

/// What starts a flow's runs.
#[derive(Debug)]
pub enum Trigger {
    Webhook(Webhook),
    /// An internal event of this type whose envelope meets `when`.
    Event {
        event_type: String,
        when: Vec<Condition>,
    },
    Schedule(crate::schedule::Schedule),
}

impl Flow {
    /// Where a signature check reads its secret from, when no secret is there (no variable
    /// or credential set, no readable file): every request to this flow would be refused
    /// (401). For validate's and serve's warnings.
    pub fn unset_secret(&self) -> Option<String> {
        let v = self.webhook()?.verify.as_ref()?;
        v.secrets().is_empty().then(|| v.sources())
    }

    pub fn webhook(&self) -> Option<&Webhook> {
        match &self.trigger {
            Trigger::Webhook(w) => Some(w),
            _ => None,
        }
    }

    pub fn schedule(&self) -> Option<&crate::schedule::Schedule> {
        match &self.trigger {
            Trigger::Schedule(s) => Some(s),
            _ => None,
        }
    }

    /// The trigger's conditions.
    pub fn when(&self) -> &[Condition] {
        match &self.trigger {
            Trigger::Webhook(w) => &w.when,
            Trigger::Event { when, .. } => when,
            Trigger::Schedule(_) => &[],
        }
    }

    /// Whether an event of this type starts this flow (before its conditions).
    pub fn listens_to(&self, event_type: &str) -> bool {
        matches!(&self.trigger, Trigger::Event { event_type: t, .. } if crate::event::type_matches(t, event_type))
    }
}

#[derive(Debug)]
pub struct Webhook {
    /// Upper-case method names.
    pub methods: Vec<String>,
    pub body: BodyMode,
    pub when: Vec<Condition>,
    pub respond: Respond,
    pub verify: Option<Verifier>,
    pub dedupe: Option<Dedupe>,
    /// Headers that must arrive at most once (each with its alternative names): those the
    /// signature scheme reads or identifies deliveries by, and those the dedupe key reads.
    pub trusted_headers: Vec<Vec<String>>,
    /// Empty: anyone.
    pub allow_ips: Vec<ipnet::IpNet>,
    /// Body fields blanked before storage.
    pub redact: Vec<crate::mapping::JsonPath>,
    /// Requests being handled at once (`max_in_flight`).
    pub in_flight: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

#[derive(Debug)]
pub struct Dedupe {
    /// Template name of the key.
    pub key: String,
    pub window: std::time::Duration,
}

/// What the sender gets once its run is stored. Templates are names in [`Templates`].
#[derive(Debug)]
pub struct Respond {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// `None`: the default JSON `{"status":"accepted","run_id":…}`.
    pub body: Option<String>,
    /// Tell the sender why an event was ignored or refused by the flow's own rules
    /// (conditions, vars, templates); otherwise only the request log and the logs say.
    pub explain: bool,
}

#[derive(Debug, Default)]
pub struct Concurrency {
    pub max_in_flight: Option<u32>,
    /// Template name of the ordering key.
    pub key: Option<String>,
}

/// A consistent set of flows and the templates they use, swapped as a whole.
#[derive(Default)]
pub struct FlowSet {
    pub flows: BTreeMap<String, Arc<Flow>>,
    pub templates: Templates,
    /// Flows served from their last good version because their file is broken (at a start;
    /// a refused reload keeps the whole previous set instead): name → the file's problems.
    pub stale: BTreeMap<String, Vec<String>>,
    /// Flow files the load that made this set compiled; the others it reused unchanged from
    /// the set before (a one-file edit compiles one).
    pub compiled: usize,
}

impl FlowSet {
    pub fn get(&self, name: &str) -> Option<&Arc<Flow>> {
        self.flows.get(name)
    }

    /// Per-flow caps on runs in flight, for the queue.
    pub fn caps(&self) -> BTreeMap<String, u32> {
        self.flows
            .values()
            .filter_map(|f| f.concurrency.max_in_flight.map(|n| (f.name.clone(), n)))
            .collect()
    }
}
