//! The dashboard's files, embedded in the binary: one page, its script and style, and uPlot
//! (vendored, see `assets/vendor/uplot/README.md`). They hold no data — everything shown comes
//! from the JSON API under its access rule — so they are served to anyone, with a content
//! security policy that lets the page run only these scripts and talk only to this server.
//!
//! The files are gzipped at build time (`build.rs`) and embedded that way, a third of their
//! size in the binary; a client that does not accept gzip gets them decompressed.

use std::io::Read;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The page's policy: scripts only from this server (no inline script), data only from it,
/// never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Name, content type, gzipped bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/dashboard.js.gz")),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/dashboard.css.gz")),
    ),
    (
        "uplot.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/uplot.min.js.gz")),
    ),
    (
        "uplot.min.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/uplot.min.css.gz")),
    ),
];

/// `GET /`: the dashboard page.
pub async fn page() -> Response {
    let mut resp = axum::response::Html(include_str!("../../assets/dashboard.html")).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// `GET /favicon.ico` (browsers ask for it whatever the page says) and `/favicon.svg`: the
/// dashboard's icon, an SVG.
pub async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../assets/favicon.svg"),
    )
        .into_response()
}

/// `GET /assets/{file}`: one of the embedded files, gzipped when the client accepts it;
/// `no-cache` so a new binary's files are picked up at once.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, ty, gz)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let common = [
        (header::CONTENT_TYPE, *ty),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::VARY, "accept-encoding"),
    ];
    if accepts_gzip(&headers) {
        return (common, [(header::CONTENT_ENCODING, "gzip")], *gz).into_response();
    }
    let mut plain = Vec::new();
    match flate2::read::GzDecoder::new(*gz).read_to_end(&mut plain) {
        Ok(_) => (common, plain).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("embedded {name}: {e}")).into_response(),
    }
}

/// Whether `Accept-Encoding` lists gzip with a weight above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn gzip_is_sent_only_where_it_is_accepted() {
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn every_embedded_file_unpacks() {
        for (name, _, gz) in FILES {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(*gz).read_to_end(&mut plain).unwrap();
            assert!(plain.len() > gz.len(), "{name}");
        }
    }
}
