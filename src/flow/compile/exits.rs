//! `exit:` — what ends a waiting run early.

use super::Compiler;
use crate::flow::spec::ExitSpec;
use crate::sequence::Exit;

impl Compiler<'_> {
    pub(super) fn exits(&mut self, specs: &[ExitSpec], var_names: &[String]) -> Vec<Exit> {
        let mut out = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("exit[{i}]");
            let given = [
                spec.segment_left.is_some(),
                spec.event.is_some(),
                spec.contact.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                self.problem(&at, "an exit is one of `segment_left`, `event` or `contact`");
                continue;
            }
            if let Some(s) = &spec.segment_left {
                if !crate::segment::valid_segment_name(&s.segment) {
                    self.problem(
                        format!("{at}.segment_left.segment"),
                        format!("`{}` is not a segment name", s.segment),
                    );
                }
                out.push(Exit::SegmentLeft {
                    segment: s.segment.clone(),
                    email: self.template(&format!("{at}.segment_left.email"), &s.email),
                });
            } else if let Some(e) = &spec.event {
                if let Err(m) = crate::event::check_trigger_type(&e.kind) {
                    self.problem(format!("{at}.event.type"), m);
                }
                if e.matches.is_empty() {
                    self.problem(
                        format!("{at}.event"),
                        "an event exit needs `match`: which fields of the event name this run (e.g. order_id)",
                    );
                }
                let matches = e
                    .matches
                    .iter()
                    .map(|(field, t)| {
                        (
                            field.clone(),
                            self.template(&format!("{at}.event.match.{field}"), t),
                        )
                    })
                    .collect();
                out.push(Exit::Event {
                    kind: e.kind.clone(),
                    matches,
                });
            } else if let Some(c) = &spec.contact {
                let when = self.conditions(&format!("{at}.contact.when"), &c.when, var_names);
                if c.when.is_empty() {
                    self.problem(format!("{at}.contact.when"), "a contact exit needs conditions");
                }
                out.push(Exit::Contact {
                    email: self.template(&format!("{at}.contact.email"), &c.email),
                    when,
                });
            }
        }
        out
    }
}
