//! Stage 1, admit: is there a webhook at this URL, may this method and this client call it,
//! and is there room for one more request? Nothing of the body is read before this passes.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Refusal;
use crate::flow::{Flow, FlowSet};

/// A request the flow will look at, holding its places under the in-flight caps until it is
/// answered.
pub struct Admitted {
    pub flow: Arc<Flow>,
    _permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
}

/// Admits a request for `flow_name` whose URL token was (or was not) right, from `client`.
pub fn admit(
    set: &FlowSet,
    flow_name: &str,
    token_ok: bool,
    method: &Method,
    client: IpAddr,
    server_cap: &Arc<Semaphore>,
) -> Result<Admitted, Refusal> {
    // Unknown flow, wrong token and a flow without a webhook get the same answer.
    let flow = match set.get(flow_name) {
        Some(f) if token_ok && f.webhook().is_some() => Arc::clone(f),
        _ => return Err(Refusal::NotFound),
    };
    let webhook = flow.webhook().expect("checked above");
    if !webhook.methods.iter().any(|m| m == method.as_str()) {
        return Err(Refusal::MethodNotAllowed(webhook.methods.join(", ")));
    }
    if !webhook.allow_ips.is_empty() && !webhook.allow_ips.iter().any(|n| n.contains(&client)) {
        return Err(Refusal::IpNotAllowed(client));
    }
    // Caps on requests in flight, so overload answers 429 instead of queueing without bound.
    let global = Arc::clone(server_cap)
        .try_acquire_owned()
        .map_err(|_| Refusal::TooBusy("the server"))?;
    let own = match &webhook.in_flight {
        None => None,
        Some(s) => Some(
            Arc::clone(s)
                .try_acquire_owned()
                .map_err(|_| Refusal::TooBusy("this webhook"))?,
        ),
    };
    Ok(Admitted {
        flow,
        _permits: (global, own),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::test_flows;

    #[test]
    fn url_method_client_and_caps_in_that_order() {
        let set = test_flows(&[(
            "shop",
            "on: { webhook: { allow_ips: [203.0.113.0/24], max_in_flight: 1 } }\nactions: [{ emit: { type: t.x } }]\n",
        )]);
        let ok_ip: IpAddr = "203.0.113.9".parse().unwrap();
        let cap = Arc::new(Semaphore::new(10));
        let admit = |name, token, method, ip| admit(&set, name, token, &method, ip, &cap);
        assert!(matches!(
            admit("shop", false, Method::POST, ok_ip),
            Err(Refusal::NotFound)
        ));
        assert!(matches!(
            admit("nope", true, Method::POST, ok_ip),
            Err(Refusal::NotFound)
        ));
        assert!(matches!(
            admit("shop", true, Method::GET, "192.0.2.1".parse().unwrap()),
            Err(Refusal::MethodNotAllowed(m)) if m == "POST"
        ));
        assert!(matches!(
            admit("shop", true, Method::POST, "192.0.2.1".parse().unwrap()),
            Err(Refusal::IpNotAllowed(_))
        ));
        let held = admit("shop", true, Method::POST, ok_ip).ok().unwrap();
        assert!(matches!(
            admit("shop", true, Method::POST, ok_ip),
            Err(Refusal::TooBusy("this webhook"))
        ));
        drop(held);
        assert!(admit("shop", true, Method::POST, ok_ip).is_ok());
        let full = Arc::new(Semaphore::new(0));
        assert!(matches!(
            super::admit(&set, "shop", true, &Method::POST, ok_ip, &full),
            Err(Refusal::TooBusy("the server"))
        ));
    }
}
