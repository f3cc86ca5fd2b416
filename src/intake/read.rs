//! Stage 2, read: the body, within the size limit and the time limit, then undone of its
//! `Content-Encoding` within the same size limit (a small gzip body cannot expand without
//! bound).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use super::Refusal;
use crate::request::decode_encoding;

/// Limits on what one request may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body in bytes, before and after decompression.
    pub max_body: usize,
    /// Time the whole body has to arrive in.
    pub body_timeout: Duration,
}

/// A body as sent (what a sender signed) and as decoded (what may also have been signed, before
/// compression, and what is parsed).
pub struct ReadBody {
    pub raw: Bytes,
    pub decoded: Vec<u8>,
}

pub async fn read(body: Body, headers: &HeaderMap, limits: Limits) -> Result<ReadBody, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body) {
        return Err(Refusal::BodyTooLarge(limits.max_body));
    }
    let raw = tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limits.max_body))
        .await
        .map_err(|_| Refusal::BodyTimeout(limits.body_timeout))?
        .map_err(|e| {
            if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
                Refusal::BodyTooLarge(limits.max_body)
            } else {
                Refusal::BodyUnreadable(e.to_string())
            }
        })?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let decoded = decode_encoding(encoding, &raw, limits.max_body)?;
    Ok(ReadBody { raw, decoded })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_body: usize) -> Limits {
        Limits {
            max_body,
            body_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn limits_hold_before_and_after_decompression() {
        let mut h = HeaderMap::new();
        let got = read(Body::from("hello"), &h, limits(5)).await.ok().unwrap();
        assert_eq!(&got.raw[..], b"hello");
        assert!(matches!(
            read(Body::from("hello!"), &h, limits(5)).await,
            Err(Refusal::BodyTooLarge(5))
        ));
        h.insert(header::CONTENT_LENGTH, "999".parse().unwrap());
        assert!(matches!(
            read(Body::from("x"), &h, limits(5)).await,
            Err(Refusal::BodyTooLarge(5))
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &[b'a'; 4096]).unwrap();
        let small = gz.finish().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(matches!(
            read(Body::from(small.clone()), &h, limits(1000)).await,
            Err(Refusal::Body(crate::request::BodyError::TooLarge(1000)))
        ));
        let got = read(Body::from(small), &h, limits(5000)).await.ok().unwrap();
        assert_eq!(got.decoded.len(), 4096);
    }
}
