//! hookflow: a webhook workflow engine.
//!
//! Map of the crate, in the order an event travels:
//! - [`server`] listens, hands webhooks (`/hooks/{flow}/{token}`) to the [`intake`] — admit,
//!   read, authenticate ([`verify`]), decode, evaluate, persist — and serves the runs API;
//! - [`token`] derives each flow's unguessable URL token from the server secret, [`links`]
//!   the sealed tokens of the links emails carry (one-click unsubscribe, tracked links);
//!   [`clicks`] rewrites an email's links to tracked ones and judges the clicks on them;
//! - [`request`] decodes the body (JSON, form, XML, text);
//! - [`flow`] is the flow file format, compiled once at load;
//! - [`matching`] checks `when` conditions, [`mapping`] evaluates `vars` (JSONPath);
//! - [`run`] is the durable record of one event, stored through [`store`] (sled by default);
//! - [`engine`] leases due runs from the store and executes their [`action`]s, rendering
//!   [`template`]s and applying the [`retry`] policy;
//! - [`segment`] keeps contact lists; [`event`] is the envelope of internal events that chain
//!   flows; [`trigger`] turns a webhook, an event or a cron firing into a run;
//! - [`app`] wires the parts; [`settings`] and [`cli`] are the edges users touch.
//!
//! The layers, top down — a module imports only from layers below it, and no two modules, at
//! any depth, import each other:
//!
//! ```text
//! main.rs
//! cli/ ─────────── settings.rs                       the edges: flags, environment, commands
//! app.rs                                             wiring: each part gets its own config
//! server/                                            HTTP: routers, listeners, API access, API
//! intake/   engine/                                  a webhook in; a run executed
//! reload.rs   trigger.rs                             flow sets swapped; a happening → a run
//! flow/                                              the flow file: spec → compiled Flow
//! action/                                            a module per kind (kinds.rs lists them); guards
//! store/                                             a trait per role; sled and PostgreSQL
//! segment.rs  suppression.rs  context.rs  replay.rs  event.rs  alert.rs  clicks/  verify/
//!                                                    domain records
//! compiler.rs                                        a flow's compilation: templates, problems
//! matching.rs  run.rs  mapping.rs  schedule.rs  request.rs  token.rs  links.rs
//! egress.rs  template/  retry.rs  xml.rs  net/  metrics.rs  stats.rs              the pure core
//! time.rs  secret.rs  yaml.rs  private.rs  suggest.rs                   small shared shapes
//! ```

/// `0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-02)`: what `--version` prints and what each
/// instance reports about itself (see `build.rs`).
pub const BUILD_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HOOKFLOW_COMMIT"),
    ", built ",
    env!("HOOKFLOW_BUILD_DATE"),
    ")"
);

pub mod action;
pub mod alert;
pub mod app;
pub mod cli;
pub mod clicks;
pub mod cluster;
pub mod compiler;
pub mod context;
pub mod egress;
pub mod engine;
pub mod event;
pub mod flow;
pub mod intake;
pub mod links;
pub mod mapping;
pub mod matching;
pub mod metrics;
pub mod net;
pub mod private;
pub mod reload;
pub mod replay;
pub mod request;
pub mod requestbin;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod segment;
pub mod sequence;
pub mod server;
pub mod settings;
pub mod stats;
pub mod store;
pub mod suggest;
pub mod suppression;
pub mod template;
pub mod time;
pub mod token;
pub mod trigger;
pub mod verify;
pub mod xml;
pub mod yaml;
