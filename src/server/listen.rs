//! Accepting connections: plain TCP or TLS (rustls, from PEM files), each served by hyper's
//! HTTP/1 server with a header-read timeout that really fires (`axum::serve` starts hyper
//! without a timer, so a client sending headers byte by byte could hold a connection forever)
//! and a cap on header size. Graceful shutdown: stop accepting, let requests in flight finish.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Connection-level limits and TLS.
#[derive(Clone)]
pub struct ListenOptions {
    /// Time allowed for a request's headers to arrive (and for a TLS handshake).
    pub header_timeout: Duration,
    /// Largest request head (request line and headers); hyper answers 431 beyond.
    pub max_header_bytes: usize,
    /// Open connections at most; beyond, new ones get a `503` and are closed (see
    /// [`refuse`]). Idle keep-alive connections end after `header_timeout` (hyper's header
    /// timer runs while it waits for the next request), so slow or idle clients cannot hold
    /// the places for long.
    pub max_connections: usize,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 1024,
            tls: None,
        }
    }
}

/// A rustls server configuration from a PEM certificate chain and a PEM private key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", cert.display()));
    }
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no PEM private key found", key.display()))?;
    let provider = crate::net::tls_provider();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    Ok(Arc::new(config))
}

/// Serves `app` until `shutdown` is cancelled, then waits for requests in flight.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    opts: ListenOptions,
) -> std::io::Result<()> {
    let conns = TaskTracker::new();
    let acceptor = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let places = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let refusing = Arc::new(tokio::sync::Semaphore::new(REFUSING));
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            if last_warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                last_warned = Some(std::time::Instant::now());
                tracing::warn!(%peer, limit = opts.max_connections, "connection limit reached: new connections are answered 503 until some close (--max-connections)");
            }
            tokio::spawn(refuse(tcp, acceptor.is_none(), Arc::clone(&refusing)));
            continue;
        };
        let (app, opts, stop) = (app.clone(), opts.clone(), shutdown.clone());
        match &acceptor {
            None => {
                conns.spawn(async move {
                    serve_conn(tcp, peer, app, opts, stop).await;
                    drop(place);
                });
            }
            Some(acc) => {
                let acc = acc.clone();
                conns.spawn(async move {
                    let _place = place;
                    match tokio::time::timeout(opts.header_timeout, acc.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_conn(tls, peer, app, opts, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    conns.close();
    conns.wait().await;
    Ok(())
}

/// Answers a connection over the limit with a `503` and closes it, within a second whatever the
/// client does: the request head is read first (up to 8 KiB), since a client that gets its
/// answer before it has sent its request takes it for a broken connection. On a TLS listener
/// it is closed without a word: over the limit, not even a handshake is spent on it. At most
/// [`REFUSING`] are answered at once; beyond, connections are closed at once.
async fn refuse(mut tcp: tokio::net::TcpStream, plain: bool, refusing: Arc<tokio::sync::Semaphore>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let Ok(_turn) = refusing.try_acquire() else { return };
    if !plain {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tcp.write_all(ANSWER).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Connections over the limit answered at once (see [`refuse`]).
const REFUSING: usize = 64;

async fn serve_conn<I>(io: I, peer: SocketAddr, app: Router, opts: ListenOptions, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
