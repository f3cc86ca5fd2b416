//! The request log: the last requests each flow received — accepted, ignored, duplicate or
//! refused with the reason and status — so a user can see why a sender's calls do not start
//! runs. In memory and bounded (entries per flow, body bytes per entry); bodies are kept only
//! for requests that passed verification, so unauthenticated traffic cannot fill it with
//! payloads of its choosing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::time::Ts;

/// Entries kept per flow.
pub const PER_FLOW: usize = 100;
/// Where requests to no known flow (or with a wrong token) are listed.
pub const UNKNOWN: &str = "(unknown)";

/// Body bytes kept per entry.
pub const BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct Entry {
    pub at: Ts,
    pub client: String,
    pub method: String,
    pub status: u16,
    /// `accepted`, `ignored`, `duplicate`, `ping` or `refused`.
    pub outcome: String,
    /// Why it was refused (`bad_signature`, …) or ignored (`condition not met: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The refusal in words, whatever the sender was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Secret-bearing headers already redacted.
    pub headers: BTreeMap<String, String>,
    /// Only when the request passed verification (or its flow verifies nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl Entry {
    pub fn keep_body(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_BYTES)]).into_owned();
        self.body = Some(if bytes.len() > BODY_BYTES {
            format!("{text}… [{} bytes cut]", bytes.len() - BODY_BYTES)
        } else {
            text
        });
    }
}

#[derive(Default)]
pub struct RequestLog {
    flows: Mutex<HashMap<String, VecDeque<Entry>>>,
}

impl RequestLog {
    /// Records an entry under `flow`: a known flow's name, or [`UNKNOWN`] for every request
    /// that named no flow or a wrong token (one bounded list: names a sender makes up are not
    /// kept apart).
    pub fn push(&self, flow: &str, entry: Entry) {
        if let Ok(mut m) = self.flows.lock() {
            let q = m.entry(flow.to_string()).or_default();
            if q.len() >= PER_FLOW {
                q.pop_front();
            }
            q.push_back(entry);
        }
    }

    /// The newest `limit` entries of one flow or all, of one outcome or any, newest first,
    /// each with its flow's name.
    pub fn newest(&self, flow: Option<&str>, outcome: Option<&str>, limit: usize) -> Vec<(String, Entry)> {
        let Ok(m) = self.flows.lock() else {
            return Vec::new();
        };
        let mut found: Vec<(&String, &Entry)> = m
            .iter()
            .filter(|(name, _)| flow.is_none_or(|f| f == name.as_str()))
            .flat_map(|(name, q)| q.iter().rev().map(move |e| (name, e)))
            .filter(|(_, e)| outcome.is_none_or(|o| o == e.outcome))
            .collect();
        // Each flow newest first, and a stable sort: entries of one flow that share a
        // millisecond stay newest first.
        found.sort_by_key(|e| std::cmp::Reverse(e.1.at));
        found
            .into_iter()
            .take(limit)
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect()
    }

    /// Newest first.
    pub fn recent(&self, flow: &str, limit: usize) -> Vec<Entry> {
        self.flows
            .lock()
            .map(|m| {
                m.get(flow)
                    .map(|q| q.iter().rev().take(limit).cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_flow_and_newest_first() {
        let log = RequestLog::default();
        for i in 0..(PER_FLOW + 5) {
            log.push(
                "f",
                Entry {
                    status: i as u16,
                    ..Entry::default()
                },
            );
        }
        let recent = log.recent("f", 1000);
        assert_eq!(recent.len(), PER_FLOW);
        assert_eq!(recent[0].status as usize, PER_FLOW + 4);
        log.push(
            "g",
            Entry {
                at: Ts(u64::MAX),
                outcome: "refused".into(),
                ..Entry::default()
            },
        );
        let all = log.newest(None, None, 3);
        assert_eq!((all[0].0.as_str(), all[0].1.outcome.as_str()), ("g", "refused"));
        assert_eq!(all[1].1.status as usize, PER_FLOW + 4);
        assert_eq!(log.newest(None, Some("refused"), 10).len(), 1);
        assert_eq!(log.newest(Some("f"), None, 1000).len(), PER_FLOW);
        assert!(log.newest(Some("nope"), None, 10).is_empty());
        let mut e = Entry::default();
        e.keep_body(&vec![b'x'; BODY_BYTES + 10]);
        assert!(e.body.unwrap().ends_with("[10 bytes cut]"));
    }
}
