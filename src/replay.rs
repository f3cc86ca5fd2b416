//! Replaying a run: a new run from an old one's request, either from the start or from the
//! action that failed (the actions that had succeeded keep their recorded outcome and are not
//! sent again). The new run links to the old (`replay_of`) and runs under the flow as it is
//! loaded now — the usual case after fixing a flow.

use crate::run::{Item, Run, RunStatus, Step, StepStatus, new_run_id};
use crate::time::Ts;

/// Where a replay starts: `start`, `failed` (the first action that did not succeed), or the
/// name of an action (the ones before it keep their recorded outcome — e.g. a sequence started
/// again at its second email).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum From {
    #[default]
    Start,
    Failed,
    Step(String),
}

impl std::str::FromStr for From {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<From, Self::Err> {
        Ok(match s {
            "start" => From::Start,
            "failed" => From::Failed,
            step => From::Step(step.to_string()),
        })
    }
}

impl std::fmt::Display for From {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            From::Start => f.write_str("start"),
            From::Failed => f.write_str("failed"),
            From::Step(s) => f.write_str(s),
        }
    }
}

impl serde::Serialize for From {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for From {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReplayFrom".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Where the new run starts: `start` (the default), `failed` (the first step that did not succeed), or an action's name.",
            "examples": ["start", "failed", "notify_shop"]
        })
    }
}

impl<'de> serde::Deserialize<'de> for From {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<From, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().unwrap_or_default())
    }
}

/// Which flow version a replay runs under.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
    Default,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// The flow as loaded now (the usual case after fixing it).
    #[default]
    Current,
    /// The version the run was accepted under (kept in the store by version).
    Original,
}

/// The new run. `actions` are the flow's action names; `version` its version.
pub fn replay(old: &Run, from: From, actions: &[String], version: &str) -> Result<Run, String> {
    if !old.status.is_terminal() {
        return Err(format!(
            "run {} is {}; only finished runs can be replayed",
            old.id,
            old.status.as_str()
        ));
    }
    let fresh = |name: &String| Step {
        name: name.clone(),
        status: StepStatus::Pending,
        attempts: Vec::new(),
        output: None,
        items: Vec::new(),
    };
    let mut steps: Vec<Step> = actions.iter().map(fresh).collect();
    let mut next_step = 0;
    if let From::Step(name) = &from {
        let at = actions
            .iter()
            .position(|a| a == name)
            .ok_or_else(|| format!("the flow has no action `{name}` (it has {})", actions.join(", ")))?;
        // The steps before it keep what the old run recorded (a wait counts as done).
        for (i, step_name) in actions.iter().enumerate().take(at) {
            if let Some(s) = old.steps.iter().find(|s| &s.name == step_name) {
                steps[i] = s.clone();
                if !matches!(steps[i].status, StepStatus::Succeeded | StepStatus::Skipped) {
                    steps[i].status = StepStatus::Skipped;
                }
            }
        }
        next_step = at;
    }
    if from == From::Failed {
        // Keep each leading action that succeeded (or was skipped) in the old run, by name.
        for (i, name) in actions.iter().enumerate() {
            match old.steps.iter().find(|s| &s.name == name) {
                Some(s) if matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped) => {
                    steps[i] = s.clone();
                    next_step = i + 1;
                }
                _ => break,
            }
        }
        if next_step == actions.len() {
            return Err(format!("run {} has no failed action to start from", old.id));
        }
        // A step per item starts again with the items that did not succeed: a failure at item 7
        // of 20 sends items 7–20 only (each with a fresh attempt budget).
        if let Some(s) = old.steps.iter().find(|s| s.name == actions[next_step]) {
            steps[next_step].items = s
                .items
                .iter()
                .map(|it| match it.status {
                    StepStatus::Succeeded => it.clone(),
                    _ => Item::default(),
                })
                .collect();
        }
    }
    let now = Ts::now();
    Ok(Run {
        id: new_run_id(),
        flow_version: version.to_string(),
        status: RunStatus::Queued,
        created_at: now,
        updated_at: now,
        next_attempt_at: None,
        finished_at: None,
        next_step,
        steps,
        error: None,
        replay_of: Some(old.id.clone()),
        exit_keys: Vec::new(),
        exit_reason: None,
        ..old.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    fn finished(statuses: &[(&str, StepStatus)]) -> Run {
        let mut r = Run::new(
            "f",
            "v1",
            Request::default(),
            Default::default(),
            None,
            statuses.iter().map(|s| s.0.to_string()),
        );
        for (i, (_, st)) in statuses.iter().enumerate() {
            r.steps[i].status = *st;
            if *st == StepStatus::Succeeded {
                r.steps[i].output = Some(serde_json::json!({"id": i}));
            }
        }
        r.status = RunStatus::Failed;
        r
    }

    #[test]
    fn from_the_failed_action_keeps_what_succeeded() {
        use StepStatus::*;
        let old = finished(&[("a", Succeeded), ("b", Skipped), ("c", Failed), ("d", Pending)]);
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let new = replay(&old, From::Failed, &names, "v2").unwrap();
        assert_eq!(new.next_step, 2);
        assert_eq!(new.steps[0].output, Some(serde_json::json!({"id": 0})));
        assert_eq!((new.steps[2].status, new.steps[2].attempts.len()), (Pending, 0));
        assert_eq!(new.replay_of.as_deref(), Some(old.id.as_str()));
        assert_eq!((new.status, new.flow_version.as_str()), (RunStatus::Queued, "v2"));
        assert_ne!(new.id, old.id);
        let from_start = replay(&old, From::Start, &names, "v2").unwrap();
        assert_eq!(from_start.next_step, 0);
        assert!(from_start.steps.iter().all(|s| s.status == Pending));
    }

    #[test]
    fn from_the_failed_action_a_step_per_item_resends_only_items_that_did_not_succeed() {
        use StepStatus::*;
        let mut old = finished(&[("stock", Failed)]);
        old.steps[0].items = (0..20)
            .map(|k| Item {
                status: match k {
                    0..7 => Succeeded,
                    7 => Failed,
                    _ => Pending,
                },
                attempts: vec![],
                output: (k < 7).then(|| serde_json::json!({"n": k})),
                retry_at: None,
            })
            .collect();
        old.steps[0].items[7].retry_at = Some(Ts::now());
        let new = replay(&old, From::Failed, &["stock".into()], "v").unwrap();
        let items = &new.steps[0].items;
        assert_eq!(items.len(), 20);
        assert!(items[..7].iter().all(|it| it.status == Succeeded));
        assert_eq!(items[3].output, Some(serde_json::json!({"n": 3})));
        assert!(items[7..].iter().all(|it| *it == Item::default()));
        // From the start, every item is sent again.
        let again = replay(&old, From::Start, &["stock".into()], "v").unwrap();
        assert!(again.steps[0].items.is_empty());
    }

    #[test]
    fn unfinished_or_fully_succeeded_runs_are_refused() {
        use StepStatus::*;
        let mut running = finished(&[("a", Pending)]);
        running.status = RunStatus::Running;
        assert!(replay(&running, From::Start, &["a".into()], "v").is_err());
        let ok = finished(&[("a", Succeeded)]);
        assert!(
            replay(&ok, From::Failed, &["a".into()], "v")
                .unwrap_err()
                .contains("no failed action")
        );
        assert!(replay(&ok, From::Start, &["a".into()], "v").is_ok());
    }

    #[test]
    fn from_a_named_step_keeps_the_ones_before() {
        use StepStatus::*;
        let mut old = finished(&[
            ("thanks", Succeeded),
            ("wait_2", Succeeded),
            ("review", Succeeded),
        ]);
        old.status = RunStatus::Exited;
        old.exit_reason = Some("left segment".into());
        let names: Vec<String> = ["thanks", "wait_2", "review"].map(String::from).to_vec();
        let new = replay(&old, "review".parse().unwrap(), &names, "v").unwrap();
        assert_eq!(new.next_step, 2);
        assert_eq!(new.steps[0].status, Succeeded);
        assert_eq!(new.steps[2].status, Pending);
        assert_eq!(new.exit_reason, None);
        assert!(
            replay(&old, From::Step("nope".into()), &names, "v")
                .unwrap_err()
                .contains("no action `nope`")
        );
        assert_eq!("failed".parse::<From>().unwrap(), From::Failed);
    }
}
