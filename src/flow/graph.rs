//! The event graph across all flows: flow A leads to flow B when A has an action that emits a
//! type B is triggered by ([`crate::action::Kind::emits`]: `emit`). A cycle in it (two flows
//! emitting to each other, or a flow triggered by what it emits) would run until
//! `--max-chain-depth` cut it, failing a run each time an event arrives; it is a load error that
//! names every flow in the cycle.
//!
//! Only `emit` counts: segment events (`segment.added`/`removed`) carry the segment, and flows
//! listening to them usually filter by it, which cannot be judged without running the
//! conditions — so they are left to the chain-depth limit rather than risk a false alarm.

use std::collections::BTreeMap;

use super::Flow;

/// The event types each flow emits (action index → type), by flow name.
fn emits(flow: &Flow) -> Vec<(usize, &str)> {
    flow.actions
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.kind.emits().map(|kind| (i, kind)))
        .collect()
}

/// Every cycle, as the flows in it (sorted, each cycle once), with for each flow the index of
/// an `emit` action that continues the cycle.
pub fn cycles<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> Vec<Vec<(String, usize)>> {
    let flows: Vec<&Flow> = flows.into_iter().collect();
    let index: BTreeMap<&str, usize> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    // Edges: i → (j, the emit action of i leading there).
    let edges: Vec<Vec<(usize, usize)>> = flows
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            for (action, kind) in emits(f) {
                for g in &flows {
                    if g.listens_to(kind) {
                        out.push((index[g.name.as_str()], action));
                    }
                }
            }
            out
        })
        .collect();
    let comps = Tarjan::run(&edges);
    let mut out = Vec::new();
    for comp in comps {
        let cyclic = comp.len() > 1 || edges[comp[0]].iter().any(|(w, _)| *w == comp[0]);
        if !cyclic {
            continue;
        }
        let mut members: Vec<(String, usize)> = comp
            .iter()
            .map(|&v| {
                let action = edges[v]
                    .iter()
                    .find(|(w, _)| comp.contains(w))
                    .map(|(_, a)| *a)
                    .unwrap_or(0);
                (flows[v].name.clone(), action)
            })
            .collect();
        members.sort();
        out.push(members);
    }
    out.sort();
    out
}

/// Strongly connected components (Tarjan's algorithm; flows number in the thousands at most).
struct Tarjan<'a> {
    edges: &'a [Vec<(usize, usize)>],
    order: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    comps: Vec<Vec<usize>>,
}

impl<'a> Tarjan<'a> {
    fn run(edges: &'a [Vec<(usize, usize)>]) -> Vec<Vec<usize>> {
        let n = edges.len();
        let mut t = Tarjan {
            edges,
            order: vec![usize::MAX; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            comps: Vec::new(),
        };
        for v in 0..n {
            if t.order[v] == usize::MAX {
                t.visit(v);
            }
        }
        t.comps
    }

    fn visit(&mut self, v: usize) {
        self.order[v] = self.next;
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &(w, _) in &self.edges[v] {
            if self.order[w] == usize::MAX {
                self.visit(w);
                self.low[v] = self.low[v].min(self.low[w]);
            } else if self.on_stack[w] {
                self.low[v] = self.low[v].min(self.order[w]);
            }
        }
        if self.low[v] == self.order[v] {
            let mut comp = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            self.comps.push(comp);
        }
    }
}
