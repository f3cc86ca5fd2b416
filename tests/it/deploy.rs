//! The files in `deploy/`, as an operator uses them: the systemd unit passes
//! `systemd-analyze verify`, and the nginx site, served by a real nginx with TLS in front of
//! the real binary, passes webhooks with the real client's address, lets no client name its
//! own address, and keeps the API off the internet; the Prometheus rules pass their
//! `promtool test rules`, and name only metrics the binary exports. Without `systemd-analyze`,
//! `nginx` or `promtool` these
//! tests say so and pass, unless HOOKFLOW_DEPLOY_TESTS=required (set by `scripts/test.sh`,
//! which installs nginx from Debian's packages).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::helpers::{Binary, free_port};

fn required() -> bool {
    std::env::var("HOOKFLOW_DEPLOY_TESTS").is_ok_and(|v| v == "required")
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The alerting rules Prometheus users get (issue 30) fire on the series they are meant for and
/// not on others (`promtool test rules`), and every metric they read is one hookflow exports.
#[test]
fn the_prometheus_rules_pass_their_tests_and_read_real_metrics() {
    let Some(promtool) = tool("promtool") else {
        assert!(
            !required(),
            "promtool is required (HOOKFLOW_DEPLOY_TESTS=required)"
        );
        eprintln!("SKIPPED: no promtool");
        return;
    };
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let out = std::process::Command::new(&promtool)
        .args(["test", "rules", "prometheus-rules.test.yml"])
        .current_dir(&deploy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every hookflow_* name the rules read is one src/metrics.rs registers (a family shows in
    // /metrics only once it has a sample, so the registrations are what to hold them to).
    let registered = repo("src/metrics.rs");
    let rules = repo("deploy/prometheus-rules.yml");
    let names: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("hookflow_"))
        .collect();
    assert!(names.len() >= 7, "{names:?}");
    for name in names {
        let base = name.trim_start_matches("hookflow_").trim_end_matches("_total");
        assert!(
            registered.contains(&format!("\"{base}\",")),
            "the rules read {name}, which hookflow does not export"
        );
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else {
        assert!(
            !required(),
            "systemd-analyze is required (HOOKFLOW_DEPLOY_TESTS=required)"
        );
        eprintln!("SKIPPED: no systemd-analyze");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The unit names the installed binary; verify checks it exists and is executable.
    let unit =
        repo("deploy/hookflow.service").replace("/usr/local/bin/hookflow", env!("CARGO_BIN_EXE_hookflow"));
    let path = dir.path().join("hookflow.service");
    std::fs::write(&path, &unit).unwrap();
    let out = std::process::Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // Unknown or misspelt directives are only warnings to systemd: none allowed here.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("hookflow.service"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    for must in [
        "User=hookflow",
        "StateDirectory=hookflow",
        "EnvironmentFile=/etc/hookflow/env",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == must), "the unit lacks {must}");
    }
}

/// nginx with `deploy/nginx.conf`, pointed at `upstream` and listening on `port` with a
/// self-signed certificate for `localhost`; killed when dropped.
struct Nginx {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    ca_pem: String,
}

impl Nginx {
    async fn start(nginx: &Path, upstream: &str, port: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(d.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(d.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        let site = repo("deploy/nginx.conf")
            .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
            .replace(
                "listen 443 ssl http2;",
                &format!("listen 127.0.0.1:{port} ssl http2;"),
            )
            .replace("listen [::]:443 ssl http2;", "")
            .replace(
                "/etc/letsencrypt/live/hooks.example.com/fullchain.pem",
                &d.join("cert.pem").display().to_string(),
            )
            .replace(
                "/etc/letsencrypt/live/hooks.example.com/privkey.pem",
                &d.join("key.pem").display().to_string(),
            );
        assert!(
            site.contains(&format!("127.0.0.1:{port}")),
            "the site's listen line moved"
        );
        std::fs::write(d.join("site.conf"), site).unwrap();
        let t = d.display();
        std::fs::write(
            d.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\npid {t}/nginx.pid;\nerror_log {t}/error.log;\n\
                 events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  \
                 proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  \
                 scgi_temp_path {t}/scgi;\n  include {t}/site.conf;\n}}\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new(nginx)
            .args(["-p", &t.to_string(), "-c"])
            .arg(d.join("nginx.conf"))
            .stderr(std::fs::File::create(d.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}{}",
                std::fs::read_to_string(d.join("stderr")).unwrap_or_default(),
                std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Nginx {
            child,
            _dir: dir,
            ca_pem: cert.cert.pem(),
        }
    }

    /// An HTTPS client trusting the certificate, connecting from `from` (a loopback address).
    fn client(&self, from: &str, port: u16) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
            .local_address(from.parse::<IpAddr>().unwrap())
            .build()
            .unwrap()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn behind_nginx_webhooks_see_the_real_client_and_the_api_stays_private() {
    let Some(nginx) = tool("nginx") else {
        assert!(!required(), "nginx is required (HOOKFLOW_DEPLOY_TESTS=required)");
        eprintln!("SKIPPED: no nginx (apt-get install nginx)");
        return;
    };
    let flow = |allowed: &str| {
        format!("on:\n  webhook:\n    allow_ips: [{allowed}]\nactions:\n  - emit: {{ type: x.y }}\n")
    };
    let admin = free_port();
    let port = free_port();
    let public = format!("https://localhost:{port}");
    let app = Binary::start(
        &[
            ("from-two", &flow("127.0.0.2/32")),
            ("from-nine", &flow("127.0.0.9/32")),
        ],
        &[
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--trusted-proxy",
            "127.0.0.1",
            "--public-url",
            &public,
        ],
        &[],
    )
    .await;
    let upstream = app.base.trim_start_matches("http://").to_string();
    let proxy = Nginx::start(&nginx, &upstream, port).await;
    let path = |flow: &str| app.hook_url(flow).trim_start_matches(&app.base).to_string();
    let two = proxy.client("127.0.0.2", port);
    let three = proxy.client("127.0.0.3", port);

    // A webhook through nginx, over TLS, from 127.0.0.2: the flow's allowlist sees 127.0.0.2.
    let r = two
        .post(format!("{public}{}", path("from-two")))
        .json(&serde_json::json!({"order": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = two
        .post(format!("{public}{}", path("from-nine")))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A client naming another address in every header it can: nginx replaces or drops them.
    let r = three
        .post(format!("{public}{}", path("from-two")))
        .header("x-forwarded-for", "127.0.0.2")
        .header("forwarded", "for=127.0.0.2")
        .header("x-real-ip", "127.0.0.2")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a client chose its own address");

    // Health checks pass; the API, the metrics and the dashboard do not exist out there.
    let health = two.get(format!("{public}/readyz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // The links in emails reach hookflow: a one-click unsubscribe page (tracked links, `/c/`,
    // share its location).
    let token = app.tokens.link_keys().seal(&hookflow::links::Link::Unsubscribe {
        list: "newsletter".into(),
        email: "ada@example.com".into(),
    });
    let page = two.get(format!("{public}/u/{token}")).send().await.unwrap();
    assert_eq!(page.status(), 200, "/u/ through nginx");
    assert!(page.text().await.unwrap().contains("Unsubscribe"));
    for p in [
        "/api/runs",
        "/metrics",
        "/",
        "/api/instances",
        "/hooks/../api/runs",
    ] {
        let r = two.get(format!("{public}{p}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{p} through nginx");
    }
    // …and on this machine they are on the admin listener.
    let runs: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{admin}/api/runs?flow=from-two"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
}
