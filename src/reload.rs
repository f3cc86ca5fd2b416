//! Hot reload of `flows/` and `templates/`: on a file change (watcher, debounced) or SIGHUP the
//! whole directory is loaded again and swapped in **all or nothing** — if any file has a
//! problem, nothing changes, the previous flows keep serving, and the refusal (file, line,
//! error) is logged, shown by `GET /api/flows` and counted in the metrics.
//!
//! A reload compiles only the flow files that changed (all of them when a template file
//! changed) and reuses the rest. Nothing of a previous set is kept once no attempt holds it:
//! a run accepted under an earlier version of its flow gets that version compiled again from
//! the source the store keeps, and a few such versions are remembered ([`Flows::find`]) — so
//! memory follows the flows in use, not the number of edits.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::flow::warnings::{Surroundings, Warning, flow_warnings};
use crate::flow::{Flow, FlowSet, reload_dir};
use crate::metrics::Metrics;
use crate::time::Ts;

/// Earlier flow versions (each a set holding one flow) remembered for runs accepted under
/// them; the least recently used is dropped beyond this.
const REMEMBERED: usize = 32;

/// The outcome of the last reload, for the API.
#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct ReloadStatus {
    pub generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<Ts>,
    /// Set when the last attempt was refused: its time and every problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refused: Option<Ts>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The flows in use, swappable as a whole.
pub struct Flows {
    current: ArcSwap<FlowSet>,
    /// Earlier versions compiled on demand, least recently used first.
    history: Mutex<Vec<Arc<FlowSet>>>,
    /// `(flow, version)` whose source is known to be in the store.
    persisted: Mutex<std::collections::HashSet<(String, String)>>,
    status: Mutex<ReloadStatus>,
    /// What the current flows cannot do where they run ([`crate::flow::warnings`]).
    warnings: Mutex<Vec<Warning>>,
    generation: watch::Sender<u64>,
}

impl Flows {
    pub fn new(set: FlowSet) -> Arc<Flows> {
        Arc::new(Flows {
            current: ArcSwap::from_pointee(set),
            history: Mutex::new(Vec::new()),
            persisted: Mutex::new(Default::default()),
            status: Mutex::new(ReloadStatus::default()),
            warnings: Mutex::new(Vec::new()),
            generation: watch::channel(0).0,
        })
    }

    /// The current set (cheap; hold it for the length of one request or attempt so a flow and
    /// its templates come from the same set).
    pub fn load(&self) -> Arc<FlowSet> {
        self.current.load_full()
    }

    /// The flow `name` at `version`: the current one if it matches, else a previous set that
    /// had it; `None` if neither (the caller then uses the current flow).
    pub fn find(&self, name: &str, version: &str) -> Option<(Arc<FlowSet>, Arc<Flow>)> {
        let now = self.load();
        if let Some(f) = now.get(name)
            && f.version == version
        {
            return Some((Arc::clone(&now), Arc::clone(f)));
        }
        let mut history = self.history.lock().ok()?;
        let i = history
            .iter()
            .position(|set| set.get(name).is_some_and(|f| f.version == version))?;
        // Most recently used last.
        let set = history.remove(i);
        history.push(Arc::clone(&set));
        let flow = Arc::clone(set.get(name)?);
        Some((set, flow))
    }

    /// Makes a flow set (an earlier version compiled from the store) findable by
    /// [`Flows::find`] without making it current.
    pub fn remember(&self, set: Arc<FlowSet>) {
        if let Ok(mut h) = self.history.lock() {
            h.push(set);
            if h.len() > REMEMBERED {
                h.remove(0);
            }
        }
    }

    /// Keeps every current flow's text in the store under its version (those not kept yet),
    /// and records each flow that loaded from its own file as its last good version (what a
    /// later start serves if the file is broken then).
    pub async fn persist_sources(&self, store: &dyn crate::store::Store) {
        let set = self.load();
        for f in set.flows.values() {
            let key = (f.name.clone(), f.version.clone());
            if self.persisted.lock().is_ok_and(|p| p.contains(&key)) {
                continue;
            }
            let kept = match store.put_flow_source(&f.name, &f.version, &f.source).await {
                Ok(()) if set.stale.contains_key(&f.name) => Ok(()),
                Ok(()) => store.put_last_good(&f.name, &f.version).await,
                Err(e) => Err(e),
            };
            match kept {
                Ok(()) => {
                    if let Ok(mut p) = self.persisted.lock() {
                        p.insert(key);
                    }
                }
                Err(e) => {
                    tracing::warn!(flow = %f.name, error = %e, "could not keep the flow's source for replays")
                }
            }
        }
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Changes with every applied reload.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Swaps in `set`. The previous one lives on only in the attempts that hold it.
    pub fn replace(&self, set: FlowSet) {
        self.current.swap(Arc::new(set));
        let generation = if let Ok(mut s) = self.status.lock() {
            s.generation += 1;
            s.last_applied = Some(Ts::now());
            s.last_refused = None;
            s.errors.clear();
            s.generation
        } else {
            0
        };
        self.generation.send_replace(generation);
    }

    /// The current flows' warnings.
    pub fn warnings(&self) -> Vec<Warning> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Problems in the flow files found at start: shown as a refused reload's are, since what
    /// serves is not all of the directory (see [`FlowSet::stale`]).
    pub fn note_start_problems(&self, errors: Vec<String>) {
        if !errors.is_empty() {
            self.refuse(errors);
        }
    }

    fn refuse(&self, errors: Vec<String>) {
        if let Ok(mut s) = self.status.lock() {
            s.last_refused = Some(Ts::now());
            s.errors = errors;
        }
    }
}

/// Loads the directories again and applies them if every file is valid.
pub struct Reloader {
    pub flows: Arc<Flows>,
    pub store: Arc<dyn crate::store::Store>,
    pub flows_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub metrics: Arc<Metrics>,
    /// What warnings are judged against.
    pub surroundings: Surroundings,
    /// The flow versions whose warnings are known (name → version).
    pub checked: Mutex<std::collections::HashMap<String, String>>,
}

impl Reloader {
    /// Works out, logs and keeps the current flows' warnings, and counts the flows served from
    /// their last good version: at start and after each applied reload.
    pub fn check(&self) {
        let set = self.flows.load();
        let mut seen = self.checked.lock().map(|s| s.clone()).unwrap_or_default();
        let previous = self.flows.warnings();
        let mut found = Vec::new();
        let mut now = std::collections::HashMap::new();
        for f in set.flows.values() {
            // A flow the reload did not change keeps its warnings, logged once already.
            if seen.remove(&f.name).as_deref() == Some(f.version.as_str()) {
                found.extend(previous.iter().filter(|w| w.flow == f.name).cloned());
            } else {
                for w in flow_warnings(f, &self.surroundings) {
                    tracing::warn!(flow = %w.flow, file = %w.file.display(), line = w.line.map(|l| l as u64), key = %w.path, "{}", w.message);
                    found.push(w);
                }
            }
            now.insert(f.name.clone(), f.version.clone());
        }
        if let Ok(mut c) = self.checked.lock() {
            *c = now;
        }
        for (flow, problems) in &set.stale {
            tracing::error!(flow = %flow, problems = problems.len(), "the flow's file is broken: its last good version serves until the file is fixed");
        }
        self.metrics.set_stale_flows(set.stale.len());
        if let Ok(mut w) = self.flows.warnings.lock() {
            *w = found;
        }
    }

    /// One reload; `true` if applied.
    pub fn reload_now(&self) -> bool {
        let started = std::time::Instant::now();
        let (set, errors) = reload_dir(&self.flows.load(), &self.flows_dir, &self.templates_dir);
        if !errors.is_empty() {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            for e in &errors {
                tracing::error!(problem = %e, "reload refused; the previous flows keep serving");
            }
            self.flows.refuse(errors);
            self.metrics.reload(false);
            return false;
        }
        let names: Vec<String> = set.flows.keys().cloned().collect();
        let compiled = set.compiled;
        self.flows.replace(set);
        self.metrics.reload(true);
        tracing::info!(
            flows = names.len(),
            compiled,
            ms = started.elapsed().as_millis() as u64,
            "flows reloaded"
        );
        self.check();
        true
    }

    /// Reloads on SIGHUP and on changes under the directories (debounced) until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watcher = {
            use notify::Watcher;
            let tx = tx.clone();
            let mut w = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "no file watcher; reload with SIGHUP");
                    None
                }
            };
            if let Some(w) = w.as_mut() {
                for dir in [&self.flows_dir, &self.templates_dir] {
                    if dir.exists()
                        && let Err(e) = w.watch(dir, notify::RecursiveMode::Recursive)
                    {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch");
                    }
                }
            }
            w
        };
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = hangup => tracing::info!("SIGHUP: reloading flows"),
                Some(()) = rx.recv() => {
                    // Editors write in several steps: wait for the burst to settle.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    while rx.try_recv().is_ok() {}
                }
            }
            let me = Arc::clone(&self);
            if let Ok(true) = tokio::task::spawn_blocking(move || me.reload_now()).await {
                self.flows.persist_sources(self.store.as_ref()).await;
            }
        }
        drop(watcher);
    }
}
