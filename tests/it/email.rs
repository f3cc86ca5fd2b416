//! The `email` action over real SMTP: lettre talks to `mailin-embedded`, a real SMTP server the
//! test starts on loopback, which records each message and answers from a script.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin_embedded::{Handler, Response, Server, SslConfig};
use serde_json::json;

use crate::helpers::{Opts, spawn_app_opts};
use hookflow::action::email::{SmtpConfig, SmtpTls};
use hookflow::run::RunStatus;

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Default)]
pub struct Shared {
    mails: Mutex<Vec<Mail>>,
    /// Replies to `RCPT` and to the end of `DATA`, in order; `OK` when empty.
    rcpt: Mutex<VecDeque<Response>>,
    /// Logins seen (user, password); only `shop` / `s3cret-pass` is accepted.
    logins: Mutex<Vec<(String, String)>>,
    data_end: Mutex<VecDeque<Response>>,
    /// Addresses this server refuses at `RCPT`, with the reply (a mailbox that does not exist).
    refuse: Mutex<std::collections::HashMap<String, (u16, String)>>,
}

impl Shared {
    /// Messages received so far.
    pub fn count(&self) -> usize {
        self.mails.lock().unwrap().len()
    }

    /// Refuse `RCPT TO:<address>` with `code text` from now on.
    pub fn refuse(&self, address: &str, code: u16, text: &str) {
        self.refuse
            .lock()
            .unwrap()
            .insert(address.to_lowercase(), (code, text.to_string()));
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Sink {
    shared: Arc<Shared>,
    current: Option<Mail>,
}

impl Handler for Sink {
    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.shared
            .logins
            .lock()
            .unwrap()
            .push((user.into(), password.into()));
        if (user, password) == ("shop", "s3cret-pass") {
            mailin_embedded::response::AUTH_OK
        } else {
            mailin_embedded::response::INVALID_CREDENTIALS
        }
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let address = to.trim_matches(|c| c == '<' || c == '>').to_lowercase();
        if let Some((code, text)) = self.shared.refuse.lock().unwrap().get(&address) {
            return Response::custom(*code, text.clone());
        }
        self.shared
            .rcpt
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(mailin_embedded::response::OK)
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(Mail {
            from: from.to_string(),
            to: to.to_vec(),
            data: String::new(),
        });
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(m) = &mut self.current {
            m.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let reply = self
            .shared
            .data_end
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(mailin_embedded::response::OK);
        if let Some(m) = self.current.take()
            && reply.code == 250
        {
            self.shared.mails.lock().unwrap().push(m);
        }
        reply
    }
}

/// Starts a real SMTP server on `port` (0: any) and returns its port and shared state.
pub fn start_smtp(port: u16) -> (u16, Arc<Shared>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let shared = Arc::new(Shared::default());
    let handler = Sink {
        shared: Arc::clone(&shared),
        current: None,
    };
    let mut server = Server::new(handler);
    server
        .with_name("mx.test")
        .with_ssl(SslConfig::None)
        .unwrap()
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (port, shared)
}

pub fn smtp(port: u16) -> Opts {
    Opts {
        smtp: Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: SmtpTls::None,
            credentials: None,
            from: Some("Shop <shop@example.com>".into()),
            ca_file: None,
        }),
        ..Opts::default()
    }
}

const THANKS: &str = r#"
vars:
  name: $.customer.name
  emails: $.people[*].email
retry:
  initial_delay: 100ms
  max_delay: 200ms
  max_attempts: 4
actions:
  - name: thanks
    email:
      to: "{{ vars.emails }}"
      cc: "boss@example.com"
      bcc: ["audit@example.com"]
      reply_to: "Help <help@example.com>"
      subject: "Thanks, {{ vars.name }}!"
      text: "Hello {{ vars.name }}, order received."
      html_template: thanks.html
      headers:
        X-Campaign: "order-{{ body.id }}"
"#;

fn flow() -> String {
    format!("on:\n  webhook: {{}}\n{THANKS}")
}

pub async fn wait_mails(shared: &Shared, n: usize) -> Vec<Mail> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mails = shared.mails.lock().unwrap().clone();
        if mails.len() >= n {
            return mails;
        }
        assert!(Instant::now() < deadline, "{} of {n} mails arrived", mails.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn order() -> serde_json::Value {
    json!({
        "id": 42,
        "customer": {"name": "<b>Tom & Jerry</b>"},
        "people": [{"email": "tom@example.com"}, {"email": "Jerry <jerry@example.com>"}]
    })
}

#[tokio::test]
async fn a_multipart_email_reaches_every_recipient_with_html_escaped() {
    let (port, shared) = start_smtp(0);
    let app = spawn_app_opts(
        &[("thanks", flow())],
        &[("thanks.html", "<p>Hello {{ vars.name }}</p>")],
        smtp(port),
    )
    .await;
    let id = app.accept("thanks", order()).await;
    let run = app.wait_status(&id, RunStatus::Succeeded).await;
    let mails = wait_mails(&shared, 1).await;
    let m = &mails[0];
    assert_eq!(m.from, "shop@example.com");
    let mut rcpt = m.to.clone();
    rcpt.sort();
    assert_eq!(
        rcpt,
        [
            "audit@example.com",
            "boss@example.com",
            "jerry@example.com",
            "tom@example.com"
        ]
    );
    let d = m.data.replace("\r\n", "\n");
    assert!(d.contains("Subject: Thanks, <b>Tom & Jerry</b>!"), "{d}");
    assert!(
        d.contains("To: tom@example.com, Jerry <jerry@example.com>"),
        "{d}"
    );
    assert!(d.contains("Cc: boss@example.com"), "{d}");
    assert!(
        !d.to_ascii_lowercase().contains("bcc:"),
        "Bcc must not be in the headers: {d}"
    );
    assert!(d.contains("Reply-To: Help <help@example.com>"), "{d}");
    assert!(d.contains("X-Campaign: order-42"), "{d}");
    assert!(d.contains("Content-Type: multipart/alternative"), "{d}");
    assert!(d.contains("Content-Type: text/plain; charset=utf-8"), "{d}");
    assert!(d.contains("Content-Type: text/html; charset=utf-8"), "{d}");
    // The text part as is, the HTML part escaped.
    assert!(d.contains("Hello <b>Tom & Jerry</b>, order received."), "{d}");
    assert!(
        d.contains("<p>Hello &lt;b&gt;Tom &amp; Jerry&lt;&#x2f;b&gt;</p>"),
        "{d}"
    );
    // The attempt keeps the SMTP reply and what was sent.
    let attempt = &run.steps[0].attempts[0];
    assert_eq!(attempt.response.as_ref().unwrap().status, 250);
    let req = attempt.request.as_ref().unwrap();
    assert_eq!(req.method, "SMTP");
    assert_eq!(req.url, format!("smtp://127.0.0.1:{port}"));
    app.stop().await;
}

#[tokio::test]
async fn a_4xx_reply_is_retried_and_a_5xx_reply_fails_with_the_reply_recorded() {
    let (port, shared) = start_smtp(0);
    // (At RCPT: mailin stays in its DATA state after an error reply to the final dot.)
    shared
        .rcpt
        .lock()
        .unwrap()
        .push_back(Response::custom(451, "Try again later".into()));
    let app = spawn_app_opts(
        &[("thanks", flow())],
        &[("thanks.html", "<p>{{ vars.name }}</p>")],
        smtp(port),
    )
    .await;
    let id = app.accept("thanks", order()).await;
    let run = app.wait_status(&id, RunStatus::Succeeded).await;
    let attempts = &run.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[0].response.as_ref().unwrap().status, 451);
    assert!(attempts[0].error.as_deref().unwrap().contains("Try again later"));
    assert_eq!(wait_mails(&shared, 1).await.len(), 1);

    shared
        .rcpt
        .lock()
        .unwrap()
        .push_back(Response::custom(550, "No such user here".into()));
    let id = app.accept("thanks", order()).await;
    let run = app.wait_status(&id, RunStatus::Failed).await;
    let attempts = &run.steps[0].attempts;
    assert_eq!(attempts.len(), 1, "a permanent reply is not retried");
    assert_eq!(attempts[0].response.as_ref().unwrap().status, 550);
    assert!(
        run.error.as_deref().unwrap().contains("No such user here"),
        "{run:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn mail_sent_while_smtp_is_down_is_delivered_once_it_is_up() {
    let port = crate::helpers::free_port();
    let app = spawn_app_opts(
        &[("thanks", flow())],
        &[("thanks.html", "<p>{{ vars.name }}</p>")],
        smtp(port),
    )
    .await;
    let id = app.accept("thanks", order()).await;
    // Wait for a failed attempt (connection refused), then start the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = app.store.get_run(&id).await.unwrap().unwrap();
        if !run.steps[0].attempts.is_empty() {
            assert_eq!(run.status, RunStatus::Retrying, "{run:#?}");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, shared) = start_smtp(port);
    let run = app.wait_status(&id, RunStatus::Succeeded).await;
    assert!(run.steps[0].attempts.len() >= 2);
    assert_eq!(wait_mails(&shared, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_rendered_address_fails_the_attempt_for_good() {
    let (port, shared) = start_smtp(0);
    let app = spawn_app_opts(
        &[("thanks", flow())],
        &[("thanks.html", "<p>{{ vars.name }}</p>")],
        smtp(port),
    )
    .await;
    let mut bad = order();
    bad["people"] = json!([{"email": "not an address"}]);
    let id = app.accept("thanks", bad).await;
    let run = app.wait_status(&id, RunStatus::Failed).await;
    assert_eq!(run.steps[0].attempts.len(), 1);
    let err = run.error.unwrap();
    assert!(
        err.contains("to: `not an address` is not a valid address"),
        "{err}"
    );
    assert!(shared.mails.lock().unwrap().is_empty());
    app.stop().await;
}

/// A private CA and a certificate for 127.0.0.1 signed by it, written as PEM files:
/// (ca, cert, key).
pub fn certificates(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn tls_opts(port: u16, tls: SmtpTls, ca: Option<std::path::PathBuf>) -> Opts {
    let mut o = smtp(port);
    if let Some(s) = &mut o.smtp {
        s.tls = tls;
        s.ca_file = ca;
    }
    o
}

#[tokio::test]
async fn starttls_checks_the_certificate_against_the_configured_ca() {
    // mailin's TLS takes rustls's process-wide provider; two are compiled in, so name one.
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let shared = Arc::new(Shared::default());
    let mut server = Server::new(Sink {
        shared: Arc::clone(&shared),
        current: None,
    });
    server
        .with_name("mx.test")
        .with_ssl(SslConfig::SelfSigned {
            cert_path: cert.to_str().unwrap().into(),
            key_path: key.to_str().unwrap().into(),
        })
        .unwrap()
        .with_auth(mailin_embedded::AuthMechanism::Plain)
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    let templates = [("thanks.html", "<p>{{ vars.name }}</p>")];

    // Trusting the private CA: logged in and delivered over STARTTLS.
    let mut opts = tls_opts(port, SmtpTls::Starttls, Some(ca));
    if let Some(s) = &mut opts.smtp {
        s.credentials = Some(("shop".into(), "s3cret-pass".into()));
    }
    let app = spawn_app_opts(&[("thanks", flow())], &templates, opts).await;
    let id = app.accept("thanks", order()).await;
    let run = app.wait_status(&id, RunStatus::Succeeded).await;
    assert_eq!(wait_mails(&shared, 1).await.len(), 1);
    assert_eq!(
        *shared.logins.lock().unwrap(),
        [("shop".to_string(), "s3cret-pass".to_string())]
    );
    assert!(!serde_json::to_string(&run).unwrap().contains("s3cret-pass"));
    app.stop().await;

    // Without it, the certificate is refused and nothing is sent in the clear.
    let app = spawn_app_opts(
        &[("thanks", flow())],
        &templates,
        tls_opts(port, SmtpTls::Starttls, None),
    )
    .await;
    let id = app.accept("thanks", order()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let run = loop {
        let run = app.store.get_run(&id).await.unwrap().unwrap();
        if !run.steps[0].attempts.is_empty() {
            break run;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let err = run.steps[0].attempts[0].error.clone().unwrap();
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("tls"),
        "{err}"
    );
    assert_eq!(shared.mails.lock().unwrap().len(), 1);
    app.stop().await;
}

/// Implicit TLS (port 465 style): a TLS terminator the test runs in front of the SMTP server.
#[tokio::test]
async fn implicit_tls_delivers_through_a_tls_listener() {
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let (plain_port, shared) = start_smtp(0);
    let certs = vec![rustls::pki_types::CertificateDer::from(pem_der(
        &std::fs::read_to_string(cert).unwrap(),
    ))];
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(pem_der(&std::fs::read_to_string(key).unwrap())).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", plain_port)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    let app = spawn_app_opts(
        &[("thanks", flow())],
        &[("thanks.html", "<p>{{ vars.name }}</p>")],
        tls_opts(tls_port, SmtpTls::Tls, Some(ca)),
    )
    .await;
    let id = app.accept("thanks", order()).await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    assert_eq!(wait_mails(&shared, 1).await.len(), 1);
    app.stop().await;
}

/// The DER bytes of the first PEM block.
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

/// A P-256 key pair as SendGrid's settings page and `hookflow send --signing-key` take them:
/// the private key as PKCS#8 PEM, the public key as base64 DER (SubjectPublicKeyInfo).
pub fn p256_key_pair() -> (String, String) {
    use base64::Engine;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let b64 = base64::engine::general_purpose::STANDARD;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    const SPKI_P256: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let public = b64.encode([&SPKI_P256[..], pair.public_key().as_ref()].concat());
    let private = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        b64.encode(pkcs8.as_ref())
    );
    (private, public)
}
