//! The editor schema as users meet it: the real yaml-language-server (the server VS Code's and
//! other editors' YAML support run), driven over LSP on stdio, opens flow files that name the
//! schema with their `# yaml-language-server: $schema=…` line, as the shipped flows do.
//!
//! - Each broken flow in tests/editor/broken/ gets a diagnostic at the line marked `#!` (one
//!   mistake a file, over 40 kinds), and `hookflow validate` refuses it (or, for a key left
//!   empty, warns): the editor flags nothing the loader accepts silently.
//! - Every shipped flow gets none.
//!
//! yaml-language-server comes from npm (tests/tools/yaml-ls, installed by scripts/test.sh);
//! without it the test says so and passes, unless HOOKFLOW_VENDOR_TESTS=required.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The language server, if installed.
fn server() -> Option<PathBuf> {
    let p = root().join("tests/tools/yaml-ls/node_modules/.bin/yaml-language-server");
    if p.exists() && Command::new("node").arg("--version").output().is_ok() {
        return Some(p);
    }
    let required = std::env::var("HOOKFLOW_VENDOR_TESTS").is_ok_and(|v| v == "required");
    assert!(
        !required,
        "yaml-language-server is required (HOOKFLOW_VENDOR_TESTS=required): cd tests/tools/yaml-ls && npm ci"
    );
    eprintln!("skipped: yaml-language-server is not installed (cd tests/tools/yaml-ls && npm ci)");
    None
}

/// One language server over stdio: messages framed with `Content-Length`, read on a thread.
struct Lsp {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
}

impl Lsp {
    fn start(bin: &Path) -> Lsp {
        let mut child = Command::new(bin)
            .arg("--stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if out.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length:") {
                        len = v.trim().parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                if out.read_exact(&mut body).is_err() {
                    return;
                }
                if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                    return;
                }
            }
        });
        Lsp {
            child,
            stdin,
            messages,
            next_id: 1,
        }
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Answers what the server asks of the client: its settings (validation on, no schema
    /// store — only the schema the file names), and null to anything else.
    fn answer(&mut self, m: &Value) {
        let result = if m["method"] == "workspace/configuration" {
            let n = m["params"]["items"].as_array().map_or(1, Vec::len);
            json!(vec![
                json!({"validate": true, "schemaStore": {"enable": false}});
                n
            ])
        } else {
            Value::Null
        };
        self.send(json!({"jsonrpc": "2.0", "id": m["id"].clone(), "result": result}));
    }

    /// The next message (answering server requests on the way), or `None` after `quiet`
    /// without one.
    fn next(&mut self, quiet: Duration) -> Option<Value> {
        loop {
            match self.messages.recv_timeout(quiet) {
                Ok(m) if m.get("method").is_some() && m.get("id").is_some() => self.answer(&m),
                Ok(m) => return Some(m),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => panic!("yaml-language-server exited"),
            }
        }
    }

    fn initialize(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        self.send(
            json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
                "processId": std::process::id(),
                "rootUri": format!("file://{}", root().display()),
                "capabilities": {"workspace": {"configuration": true}}
            }}),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(m) = self.next(Duration::from_secs(1))
                && m["id"] == id
            {
                break;
            }
        }
        self.notify("initialized", json!({}));
        self.notify(
            "workspace/didChangeConfiguration",
            json!({"settings": {"yaml": {"validate": true, "schemaStore": {"enable": false}}}}),
        );
    }

    /// Opens each file as an editor does and returns the diagnostics the server publishes for
    /// it: `(line, message)`, lines counted from 1.
    fn diagnostics(&mut self, files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<(u64, String)>> {
        let uri = |p: &Path| format!("file://{}", p.display());
        let by_uri: BTreeMap<String, PathBuf> = files.iter().map(|p| (uri(p), p.clone())).collect();
        for p in files {
            self.notify(
                "textDocument/didOpen",
                json!({"textDocument": {
                    "uri": uri(p), "languageId": "yaml", "version": 1,
                    "text": std::fs::read_to_string(p).unwrap()
                }}),
            );
        }
        let mut out = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Every file published, then a quiet moment for any second publication.
        while Instant::now() < deadline {
            let quiet = if out.len() == files.len() {
                Duration::from_millis(1500)
            } else {
                Duration::from_secs(5)
            };
            let Some(m) = self.next(quiet) else {
                if out.len() == files.len() {
                    break;
                }
                continue;
            };
            if m["method"] != "textDocument/publishDiagnostics" {
                continue;
            }
            let Some(p) = m["params"]["uri"].as_str().and_then(|u| by_uri.get(u)) else {
                continue;
            };
            let found = m["params"]["diagnostics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["range"]["start"]["line"].as_u64().unwrap() + 1,
                        d["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            out.insert(p.clone(), found);
        }
        assert_eq!(
            out.len(),
            files.len(),
            "yaml-language-server published diagnostics for {} of {} files",
            out.len(),
            files.len()
        );
        out
    }
}

impl Drop for Lsp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The line marked `#!` in a broken flow.
fn marked_line(p: &Path) -> u64 {
    let text = std::fs::read_to_string(p).unwrap();
    let marked: Vec<u64> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("#!"))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    assert_eq!(marked.len(), 1, "{}: mark one line with #!", p.display());
    marked[0]
}

#[test]
fn the_editor_flags_each_kind_of_mistake_at_its_line_and_nothing_in_the_shipped_flows() {
    let Some(bin) = server() else { return };
    let broken = yaml_files(&root().join("tests/editor/broken"));
    assert!(broken.len() >= 40, "{} kinds of mistakes", broken.len());
    let shipped = yaml_files(&root().join("flows"));
    for p in &shipped {
        let first = std::fs::read_to_string(p).unwrap();
        assert!(
            first.starts_with("# yaml-language-server: $schema=../docs/flow.schema.json\n"),
            "{}: the first line names the schema for editors",
            p.display()
        );
    }
    let mut lsp = Lsp::start(&bin);
    lsp.initialize();
    let all: Vec<PathBuf> = broken.iter().chain(&shipped).cloned().collect();
    let found = lsp.diagnostics(&all);

    let mut wrong = Vec::new();
    for p in &broken {
        let line = marked_line(p);
        let got = &found[p];
        if !got.iter().any(|(l, _)| *l == line) {
            wrong.push(format!(
                "{}: expected one at line {line}, got {got:?}",
                p.display()
            ));
        }
    }
    for p in &shipped {
        if !found[p].is_empty() {
            wrong.push(format!("{}: a shipped flow, got {:?}", p.display(), found[p]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // What the editor flags, the loader refuses — or, for a key left empty, warns about.
    let out = crate::cli::hookflow(&["validate", "tests/editor/broken", "--format", "json"], root());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in report["problems"].as_array().unwrap() {
        by_file
            .entry(p["file"].as_str().unwrap().to_string())
            .or_default()
            .push(p["severity"].as_str().unwrap().to_string());
    }
    for p in &broken {
        let rel = p.strip_prefix(root()).unwrap().display().to_string();
        let severities = by_file.get(&rel).cloned().unwrap_or_default();
        let wanted = if rel.contains("left-empty") {
            "warning"
        } else {
            "error"
        };
        assert!(
            severities.iter().any(|s| s == wanted),
            "{rel}: the editor flags it, `hookflow validate` says {severities:?}"
        );
    }
}
