//! `hookflow suppressions` (issue 29) as an operator uses it: the real binary against a real
//! server, then against the store of a stopped one — add, refuse a bad address, import another
//! tool's CSV with a bad row, search, lift with a reason, see the history, export past one page
//! of the store and read the export back.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::cli::show;
use crate::helpers::Binary;

const PLAIN: &str = "on: { webhook: {} }\nactions:\n  - emit: { type: t.done }\n";

fn hookflow(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .current_dir(cwd)
        .env("HOOKFLOW_LOG", "warn")
        .env_remove("HOOKFLOW_SECRET")
        .env_remove("HOOKFLOW_DATA")
        .output()
        .expect("run hookflow")
}

/// Runs `hookflow suppressions ARGS… TARGET…`; asserts the exit status.
fn supp(args: &[&str], target: &[&str], cwd: &Path, ok: bool) -> Output {
    let mut all = vec!["suppressions"];
    all.extend_from_slice(args);
    all.extend_from_slice(target);
    let out = hookflow(&all, cwd);
    assert_eq!(out.status.success(), ok, "{}", show(&all, &out));
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `(email, list or *, reason, lifted reason)` of `list --json`.
fn listed(o: &Output) -> Vec<(String, String, String, String)> {
    let v: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    v.iter()
        .map(|s| {
            (
                s["email"].as_str().unwrap().to_string(),
                s["list"].as_str().unwrap_or("*").to_string(),
                s["reason"].as_str().unwrap().to_string(),
                s["lifted"]["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn row(e: &str, l: &str, r: &str, lifted: &str) -> (String, String, String, String) {
    (e.into(), l.into(), r.into(), lifted.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_the_list_through_the_server_and_in_a_stopped_store() {
    let app = Binary::start(&[("plain", PLAIN)], &[], &[]).await;
    let listen = app.base.trim_start_matches("http://").to_string();
    let server = ["--listen", listen.as_str()];
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();

    // Add, once; again is not an error but says so; a bad address is refused by name.
    let out = supp(
        &[
            "add",
            "Ada@Example.com",
            "--list",
            "newsletter",
            "--note",
            "ticket 12",
        ],
        &server,
        cwd,
        true,
    );
    assert!(stdout(&out).contains("ada@example.com"), "{}", stdout(&out));
    let out = supp(
        &["add", "ada@example.com", "--list", "newsletter"],
        &server,
        cwd,
        true,
    );
    assert!(stdout(&out).contains("already suppressed"), "{}", stdout(&out));
    let out = supp(&["add", "not-an-address"], &server, cwd, false);
    assert!(stderr(&out).contains("not-an-address"), "{}", stderr(&out));
    let out = supp(&["add", "x@example.com", "--reason", "whim"], &server, cwd, false);
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));

    // Another tool's export: its own header names, a bad row named by its line, the good
    // ones imported all the same; exit 1 so a script notices.
    let csv = cwd.join("optouts.csv");
    std::fs::write(
        &csv,
        "\u{feff}Email Address,Reason,Note\nbob@example.com,,from the old tool\nnope,,\ncarol@example.com,complained,\n",
    )
    .unwrap();
    let out = supp(&["import", csv.to_str().unwrap()], &server, cwd, false);
    assert!(
        stdout(&out).contains("2 added") && stdout(&out).contains("1 rejected"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("line 3:"), "{}", stderr(&out));

    let out = supp(&["list", "--json"], &server, cwd, true);
    assert_eq!(
        listed(&out),
        [
            row("ada@example.com", "newsletter", "manual", ""),
            row("bob@example.com", "*", "imported", ""),
            row("carol@example.com", "*", "complained", ""),
        ]
    );
    let out = supp(&["list", "--search", "BOB"], &server, cwd, true);
    let text = stdout(&out);
    assert!(
        text.contains("bob@example.com") && !text.contains("ada@"),
        "{text}"
    );

    // Lift: the reason is required; the entry stays as history with it.
    supp(
        &["lift", "ada@example.com", "--list", "newsletter"],
        &server,
        cwd,
        false,
    );
    let out = supp(
        &[
            "lift",
            "ada@example.com",
            "--list",
            "newsletter",
            "--reason",
            "asked to rejoin",
        ],
        &server,
        cwd,
        true,
    );
    assert!(stdout(&out).contains("lifted"), "{}", stdout(&out));
    let out = supp(
        &[
            "lift",
            "ada@example.com",
            "--list",
            "newsletter",
            "--reason",
            "again",
        ],
        &server,
        cwd,
        false,
    );
    assert!(stderr(&out).contains("not suppressed"), "{}", stderr(&out));
    let out = supp(&["list", "--json"], &server, cwd, true);
    assert_eq!(listed(&out).len(), 2);
    let out = supp(&["list", "--lifted", "--json"], &server, cwd, true);
    assert_eq!(
        listed(&out)[0],
        row("ada@example.com", "newsletter", "manual", "asked to rejoin")
    );

    // 1,200 more from standard input, then an export past the store's pages of 500.
    let many: String = std::iter::once("email\n".to_string())
        .chain((0..1200).map(|i| format!("user{i:04}@example.org\n")))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "suppressions",
            "import",
            "-",
            "--list",
            "offers",
            "--listen",
            &listen,
        ])
        .current_dir(cwd)
        .env_remove("HOOKFLOW_DATA")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), many.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("1200 added"), "{}", stdout(&out));
    let export = cwd.join("export.csv");
    supp(
        &["export", "--lifted", "--out", export.to_str().unwrap()],
        &server,
        cwd,
        true,
    );
    let text = std::fs::read_to_string(&export).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        hookflow::suppression::CSV_COLUMNS
    );
    assert_eq!(rows.len(), 3 + 1200, "every entry once, lifted included");
    let emails: std::collections::BTreeSet<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(emails.len(), rows.len());
    assert_eq!(rows.iter().filter(|r| &r[1] == "offers").count(), 1200);
    assert!(rows[0][6].contains("asked to rejoin"), "{:?}", rows[0]);

    // The server stopped: the same commands read and write its store directly, and the
    // export is the one the server gave.
    let dir = app.kill9();
    let data = dir.path().join("data");
    let store = ["--data", data.to_str().unwrap()];
    let again = cwd.join("again.csv");
    supp(
        &["export", "--lifted", "--out", again.to_str().unwrap()],
        &store,
        cwd,
        true,
    );
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);
    let out = supp(&["import", export.to_str().unwrap()], &store, cwd, true);
    assert!(
        stdout(&out).contains("0 added, 1202 already suppressed, 0 rejected"),
        "lifted rows of an export are not imported again: {}",
        stdout(&out)
    );
    supp(
        &["add", "dave@example.com", "--reason", "bounced"],
        &store,
        cwd,
        true,
    );
    let out = supp(&["list", "--search", "dave", "--json"], &store, cwd, true);
    assert_eq!(listed(&out), [row("dave@example.com", "*", "bounced", "")]);
}
