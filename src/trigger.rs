//! From something that happened to a run: the same steps whether a webhook arrived, an internal
//! event was raised or a schedule fired — map the vars, check the trigger's conditions, render
//! the ordering key, build the queued [`Run`]. Storing it is the caller's business.

use minijinja::value::Value as JValue;
use serde_json::Map;

use crate::context::{EventFacts, RunInfo, template_context};
use crate::flow::Flow;
use crate::mapping::map_vars;
use crate::matching::{Condition, Verdict, check_all};
use crate::request::Request;
use crate::run::{Run, new_run_id};
use crate::template::Templates;

/// Why an event was not turned into a run although the flow is the right one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TriggerError {
    #[error("{0}")]
    Condition(String),
    #[error("{0}")]
    MissingVar(String),
    #[error("concurrency.key: {0}")]
    OrderingKey(String),
}

/// The outcome for one flow.
pub enum Prepared {
    /// A run to store, and the template context it was built with (for a webhook's answer).
    Run(Box<Run>, JValue),
    /// The trigger's conditions do not hold: which one.
    Ignored(String),
}

/// What started the run, beyond its request.
#[derive(Debug, Clone, Default)]
pub struct Cause {
    /// Event-chain depth of the run (0 unless triggered by an event).
    pub depth: u32,
    /// The type of the event that triggered it.
    pub event: Option<String>,
}

/// Builds the run `flow` would start for `request`, checking `when` first.
pub fn prepare(
    flow: &Flow,
    when: &[Condition],
    templates: &Templates,
    request: Request,
    cause: Cause,
) -> Result<Prepared, TriggerError> {
    let (vars, missing) = map_vars(&flow.vars, &request);
    let run_id = new_run_id();
    let no_steps = Map::new();
    let ctx = if flow.ingress_templates {
        let info = RunInfo {
            flow: &flow.name,
            run_id: &run_id,
            attempt: 0,
            idempotency_key: "",
        };
        template_context(&info, &request, &vars, &no_steps)
    } else {
        JValue::UNDEFINED
    };
    let facts = EventFacts {
        request: &request,
        vars: &vars,
        templates,
        ctx: &ctx,
    };
    match check_all(when, &facts) {
        Ok(Verdict::Match) => {}
        Ok(Verdict::NoMatch(why)) => return Ok(Prepared::Ignored(why.to_string())),
        Err(e) => return Err(TriggerError::Condition(e)),
    }
    if let Some(e) = missing {
        return Err(TriggerError::MissingVar(e.to_string()));
    }
    let order_key = match &flow.concurrency.key {
        None => None,
        Some(t) => {
            let k = templates
                .render(t, &ctx)
                .map_err(|e| TriggerError::OrderingKey(e.to_string()))?;
            let k = k.trim().to_string();
            (!k.is_empty()).then_some(k)
        }
    };
    let mut run = Run::new(
        &flow.name,
        &flow.version,
        request,
        vars,
        order_key,
        flow.actions.iter().map(|a| a.name.clone()),
    );
    run.id = run_id;
    run.depth = cause.depth;
    run.trigger_event = cause.event;
    // Indexed as the run is stored, so an exit that happens before its first wait still ends it.
    run.exit_keys = crate::sequence::exit_keys_logged(&flow.exits, templates, &ctx);
    Ok(Prepared::Run(Box::new(run), ctx))
}
