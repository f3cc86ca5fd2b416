//! Why the intake refused a request. Every stage's error is one of these, and each maps to
//! exactly one HTTP answer (status, code, `Retry-After`) in one table, [`Refusal::status`].

use std::net::IpAddr;
use std::time::Duration;

use axum::http::StatusCode;

use crate::request::BodyError;
use crate::trigger::TriggerError;
use crate::verify::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Unknown flow, wrong token, or a flow without a webhook: the same answer for all three,
    /// so URLs cannot be probed.
    #[error("no webhook at this URL")]
    NotFound,
    #[error("this webhook accepts {0}")]
    MethodNotAllowed(String),
    #[error("{0} may not call this webhook")]
    IpNotAllowed(IpAddr),
    /// The server's or this webhook's cap on requests in flight.
    #[error("{0} is handling as many requests as it may; retry shortly")]
    TooBusy(&'static str),
    #[error("body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("the body did not arrive within {}", humantime::format_duration(*.0))]
    BodyTimeout(Duration),
    #[error("could not read the body: {0}")]
    BodyUnreadable(String),
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A header the flow trusts (signature, timestamp, delivery id, event type, dedupe key
    /// input) arrived more than once: which value would the verifier and the templates see?
    #[error(
        "header {0} appears more than once; each of this webhook's signed and identifying headers must appear once"
    )]
    RepeatedHeader(String),
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// The flow's conditions, vars or ordering key could not be evaluated.
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error("respond: {0}")]
    Respond(String),
    #[error("the event could not be stored: {0}")]
    StoreUnavailable(String),
}

impl Refusal {
    /// The HTTP answer: status and machine-readable code.
    pub fn status(&self) -> (StatusCode, &'static str) {
        use Refusal::*;
        match self {
            NotFound => (StatusCode::NOT_FOUND, "not_found"),
            MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            IpNotAllowed(_) => (StatusCode::FORBIDDEN, "ip_not_allowed"),
            TooBusy(_) => (StatusCode::TOO_MANY_REQUESTS, "too_busy"),
            BodyTooLarge(_) | Body(BodyError::TooLarge(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            BodyUnreadable(_) => (StatusCode::BAD_REQUEST, "body_unreadable"),
            Body(BodyError::UnsupportedEncoding(_)) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
            }
            Body(BodyError::UnsupportedType(..)) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Body(_) => (StatusCode::BAD_REQUEST, "malformed_body"),
            RepeatedHeader(_) => (StatusCode::BAD_REQUEST, "repeated_header"),
            Signature(e) => (StatusCode::UNAUTHORIZED, e.reason()),
            Trigger(TriggerError::Condition(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "condition_error"),
            Trigger(TriggerError::MissingVar(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "missing_var"),
            Trigger(TriggerError::OrderingKey(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "ordering_key_error"),
            Respond(_) => (StatusCode::INTERNAL_SERVER_ERROR, "respond_error"),
            StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        }
    }

    /// Seconds a sender should wait before trying again, for refusals that pass.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Refusal::TooBusy(_) => Some(1),
            Refusal::StoreUnavailable(_) => Some(5),
            _ => None,
        }
    }

    /// The flow's counter this refusal adds to (`GET /api/flows`): `rejected:<reason>` for
    /// every refusal of a request that reached a flow's URL — not for a wrong URL or token
    /// (or a method refused before the token is checked), whose "flow" is only a name in a
    /// path anyone can make up.
    pub fn counter(&self) -> Option<String> {
        match self {
            Refusal::NotFound | Refusal::MethodNotAllowed(_) => None,
            other => Some(format!("rejected:{}", other.status().1)),
        }
    }

    /// Whether an operator must act (an ERROR log line), not just a sender.
    pub fn is_operator_problem(&self) -> bool {
        matches!(
            self,
            Refusal::Signature(VerifyError::NoSecret(_)) | Refusal::Respond(_) | Refusal::StoreUnavailable(_)
        )
    }

    /// What the sender is told. Refusals by the flow's own rules (conditions, vars,
    /// templates) describe the flow, so they are shown only when it opts in (`respond:
    /// explain: true`); the request log and the logs always have the whole message.
    pub fn public_detail(&self, explain: bool) -> String {
        match self {
            Refusal::Trigger(_) | Refusal::Respond(_) if !explain => {
                "the event does not fit this flow; its request log says why".into()
            }
            Refusal::StoreUnavailable(_) => "the event could not be stored; try again".into(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_one_answer_and_internals_stay_private() {
        let r = Refusal::Trigger(TriggerError::Condition("path $.email matches \"@corp\"".into()));
        assert_eq!(r.status(), (StatusCode::UNPROCESSABLE_ENTITY, "condition_error"));
        assert!(!r.public_detail(false).contains("$.email"));
        assert!(r.public_detail(true).contains("$.email"));
        let s = Refusal::StoreUnavailable("No space left on device".into());
        assert_eq!(s.status().0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(s.retry_after(), Some(5));
        assert!(!s.public_detail(true).contains("space"));
        assert!(s.is_operator_problem());
        let sig = Refusal::Signature(VerifyError::Mismatch);
        assert_eq!(sig.status().0, StatusCode::UNAUTHORIZED);
        assert_eq!(sig.status().1, "bad_signature");
        assert_eq!(sig.counter().as_deref(), Some("rejected:bad_signature"));
        assert_eq!(
            Refusal::Body(BodyError::TooLarge(10)).status(),
            Refusal::BodyTooLarge(10).status()
        );
        assert_eq!(Refusal::TooBusy("the server").retry_after(), Some(1));
        assert_eq!(
            Refusal::RepeatedHeader("webhook-id".into()).status().0,
            StatusCode::BAD_REQUEST
        );
    }
}
