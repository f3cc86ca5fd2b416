//! The action kinds hookflow knows, and what a kind is.
//!
//! A kind is one module that owns everything about it (vector's "a component configures
//! itself"): the spec a flow file writes under its key, how that spec compiles (its problems
//! reported at their key paths), how one attempt is made, what `hookflow test` previews, what
//! its destination is and what warnings the machine it runs on deserves. That module implements
//! [`Kind`]; the list at the bottom of this file registers it — one line — and from that list
//! come the flow file's key (`http:`), the schema editors read, the compiled [`ActionKind`] and
//! the dispatch the engine calls. Nothing else changes for a new kind: the flow compiler, the
//! engine, the loader and the schema read the kind through this file.

use std::future::Future;
use std::time::Duration;

use minijinja::value::Value as JValue;
use serde::Deserialize;
use serde_json::Value;

use super::breaker::BreakerSpec;
use super::{AttemptResult, Clients, ExecContext};
use crate::compiler::Part;
use crate::matching::ConditionSpec;
use crate::retry::{RetryPolicy, RetrySpec};
use crate::template::Templates;

/// What every action kind provides.
///
/// Errors follow one convention: **compiling** reports each problem through the [`Part`] at the
/// key it is about, all at once, and gives `None` when there was any; **attempting** answers
/// with an [`AttemptResult`] whose error text goes to the run's history; **previewing** gives
/// that same text as `Err`.
pub trait Kind: Sized {
    /// What the flow file writes under the kind's key.
    type Spec;
    /// Leaves hookflow (a network peer): has a destination, a circuit breaker and a bulkhead.
    const OUTGOING: bool = false;
    /// Raises internal events, so it counts against `--max-chain-depth`.
    const RAISES_EVENTS: bool = false;
    /// Makes attempts. A `wait` does not: the engine parks the run instead, so it takes no
    /// `retry`, `rate_limit` or `for_each`.
    const ATTEMPTED: bool = true;

    /// Compiles the spec, registering its templates and reporting every problem through
    /// `part`; `None` when the kind could not be built (a kind that can still stand, like a
    /// `wait` with a bad `at`, is returned, so the flow's other checks see it).
    fn compile(spec: &Self::Spec, part: &mut Part<'_, '_>) -> Option<Self>;

    /// One attempt. `retry` is the action's policy (which answers are worth another try).
    fn attempt(
        &self,
        cx: &ExecContext<'_>,
        clients: &Clients,
        retry: &RetryPolicy,
    ) -> impl Future<Output = AttemptResult> + Send;

    /// What an attempt would do, rendered but not done (for `hookflow test`).
    fn preview(&self, cx: &ExecContext<'_>) -> Result<Value, String>;

    /// How long one attempt may take (a lease must outlast it).
    fn timeout(&self) -> Duration {
        Duration::ZERO
    }

    /// What the circuit breaker, rate limit and bulkhead count against; `None` when the kind
    /// has no destination or it cannot be known before rendering.
    fn destination(&self, _clients: &Clients, _templates: &Templates, _ctx: &JValue) -> Option<String> {
        None
    }

    /// The event type the kind raises whatever the run, for the flow graph's cycle check.
    fn emits(&self) -> Option<&str> {
        None
    }

    /// Why the kind cannot work as set up where it runs, as (key below the kind's, message);
    /// `name` is the action's.
    fn warnings(&self, _name: &str, _around: &Surroundings) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// What the flows will run against: what a kind's warnings are judged by.
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    pub egress: crate::egress::Policy,
    /// Whether an SMTP server is configured; `None` where that is not known (validate).
    pub has_mailer: Option<bool>,
    /// The base URL unsubscribe links are built on; `None` where that is not known (validate).
    pub public_url: Option<String>,
}

/// Registers the kinds: from `key => Variant(Type)` lines, the flow file's [`ActionSpec`] (its
/// keys shared by every kind, and one key per kind), the compiled [`ActionKind`] and its
/// dispatch.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $key:ident => $variant:ident($ty:ty), )*) => {
        /// One entry of a flow's `actions` as written: what every action may have, and exactly
        /// one kind.
        #[derive(Debug, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(transform = crate::flow::schema::action_kind)]
        pub struct ActionSpec {
            /// Unique within the flow, e.g. `notify_shop`; defaults to `<kind>_<index>`. Later
            /// templates see its output as `steps.<name>`.
            pub name: Option<String>,
            /// Conditions for doing this action (else it is skipped), e.g.
            /// `- { var: total, gt: 100 }`.
            #[serde(default)]
            pub when: Vec<ConditionSpec>,
            /// This action's retry policy over the flow's, e.g. `{ max_attempts: 10 }`.
            pub retry: Option<RetrySpec>,
            /// Most attempts per second/minute/hour against this action's destination, e.g.
            /// `10/s`. Runs over the limit wait in the queue; nothing fails for it.
            #[schemars(transform = crate::flow::schema::rate)]
            pub rate_limit: Option<String>,
            /// Pause a destination after a run of consecutive failures, e.g. `{ failures: 5,
            /// cooldown: 1m }` (`failures: 0` disables).
            pub circuit_breaker: Option<BreakerSpec>,
            /// Most attempts in flight at once to this action's destination (host and port, or
            /// the SMTP server), e.g. `4`; default the server's `--destination-concurrency`.
            #[schemars(range(min = 1))]
            pub destination_concurrency: Option<usize>,
            /// Do the action once per item: a JSONPath over the body (`$.line_items[*]`) or one
            /// template expression giving a list (`"{{ vars.items }}"`). Templates see `item`
            /// and `item_index`; later actions see `steps.<name>.items`.
            #[serde(default)]
            #[schemars(schema_with = "crate::flow::schema::jsonpath_or_template")]
            pub for_each: Option<String>,
            /// Most items a `for_each` takes, e.g. `500`; a run with more fails, saying so.
            /// Default 100.
            #[schemars(range(min = 1, max = 1000))]
            pub max_items: Option<usize>,
            /// Items of one run attempted at once, e.g. `8`. Default 4.
            #[schemars(range(min = 1, max = 64))]
            pub item_concurrency: Option<usize>,
            $( $(#[$doc])* pub $key: Option<<$ty as Kind>::Spec>, )*
        }

        /// A compiled action's kind.
        #[derive(Debug)]
        pub enum ActionKind {
            $( $variant($ty), )*
        }

        /// Every kind's key, in the order registered.
        pub const KINDS: &[&str] = &[$( stringify!($key), )*];

        /// What a kind is, by its key, known before it compiles: (outgoing, attempted).
        pub fn traits_of(key: &str) -> (bool, bool) {
            match key {
                $( stringify!($key) => (<$ty as Kind>::OUTGOING, <$ty as Kind>::ATTEMPTED), )*
                _ => (false, true),
            }
        }

        impl ActionSpec {
            /// The kinds this entry names (one, for a valid action).
            pub fn kinds(&self) -> Vec<&'static str> {
                [$( self.$key.as_ref().map(|_| stringify!($key)), )*]
                    .into_iter()
                    .flatten()
                    .collect()
            }

            /// Compiles the first kind this entry names, at `{at}.{kind}`.
            pub fn compile_kind(&self, part_of: &mut crate::compiler::Compiler<'_>, at: &str) -> Option<ActionKind> {
                $(
                    if let Some(spec) = &self.$key {
                        let mut part = part_of.part(format!("{at}.{}", stringify!($key)));
                        return <$ty as Kind>::compile(spec, &mut part).map(ActionKind::$variant);
                    }
                )*
                None
            }
        }

        impl ActionKind {
            /// The kind's key, as history and metrics name it.
            pub fn kind_name(&self) -> &'static str {
                match self { $( ActionKind::$variant(_) => stringify!($key), )* }
            }

            /// See [`Kind::RAISES_EVENTS`].
            pub fn raises_events(&self) -> bool {
                match self { $( ActionKind::$variant(_) => <$ty as Kind>::RAISES_EVENTS, )* }
            }

            pub fn timeout(&self) -> Duration {
                match self { $( ActionKind::$variant(k) => k.timeout(), )* }
            }

            pub async fn attempt(&self, cx: &ExecContext<'_>, clients: &Clients, retry: &RetryPolicy) -> AttemptResult {
                match self { $( ActionKind::$variant(k) => k.attempt(cx, clients, retry).await, )* }
            }

            pub fn preview(&self, cx: &ExecContext<'_>) -> Result<Value, String> {
                match self { $( ActionKind::$variant(k) => k.preview(cx), )* }
            }

            pub fn destination(&self, clients: &Clients, templates: &Templates, ctx: &JValue) -> Option<String> {
                match self { $( ActionKind::$variant(k) => k.destination(clients, templates, ctx), )* }
            }

            pub fn emits(&self) -> Option<&str> {
                match self { $( ActionKind::$variant(k) => k.emits(), )* }
            }

            /// The warnings of the action `name`, at keys below `at` (`actions[0]`).
            pub fn warnings(&self, at: &str, name: &str, around: &Surroundings) -> Vec<(String, String)> {
                let (kind, found) = match self { $( ActionKind::$variant(k) => (stringify!($key), k.warnings(name, around)), )* };
                found
                    .into_iter()
                    .map(|(key, message)| (crate::compiler::join(&format!("{at}.{kind}"), &key), message))
                    .collect()
            }
        }
    };
}

kinds! {
    /// Call an HTTP endpoint (optionally a signed outgoing webhook), e.g. `{ url:
    /// "https://crm.example.com/hooks", body: { email: "{{ vars.email }}" } }`.
    http => Http(super::http::HttpAction),
    /// Send an email over SMTP, e.g. `{ to: "{{ vars.email }}", subject: Thanks,
    /// text_template: thanks.txt }`.
    email => Email(super::email::EmailAction),
    /// Add a contact to named lists, or remove it, e.g. `{ email: "{{ vars.email }}", add:
    /// customers }`.
    segment => Segment(super::segment::SegmentAction),
    /// Raise an internal event that flows with `on: event` pick up.
    emit => Emit(super::emit::EmitAction),
    /// Pause the run: `3d`, `{ for: 7d, at: "09:00", timezone: Europe/Berlin }` or
    /// `{ until: "{{ vars.date }}" }`. A waiting run costs no memory and no worker.
    wait => Wait(crate::sequence::Wait),
}
