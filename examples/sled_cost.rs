//! What one stored run costs sled 0.34, to back the figures in BENCHMARKS.md: a run is written
//! as three keys (the run, its queue entry, its due-index entry) and groups of `GROUP` runs are
//! flushed once. Compared: one `apply_batch` per run (what a naive group commit does) against
//! one `apply_batch` per group (what hookflow's writer does), and the latter with the queue
//! entry folded away (two keys).
//!
//! `cargo run --release --example sled_cost`

use std::time::Instant;

const RUNS: usize = 30_000;
const GROUP: usize = 32;

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn run(merged: bool, keys: usize) -> (f64, f64) {
    let dir = tempfile_dir();
    let db = sled::Config::new().path(&dir).open().expect("open sled");
    let value = vec![b'x'; 1800];
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut batch = sled::Batch::default();
    for i in 0..RUNS {
        batch.insert(format!("run:{i:020}").as_bytes(), value.clone());
        if keys == 3 {
            batch.insert(
                format!("q:{i:020}").as_bytes(),
                &b"{\"flow\":\"bench\",\"due\":1}"[..],
            );
        }
        batch.insert(format!("due:{i:020}").as_bytes(), &b"bench"[..]);
        if !merged {
            db.apply_batch(std::mem::take(&mut batch)).expect("apply");
        }
        if i % GROUP == GROUP - 1 {
            if merged {
                db.apply_batch(std::mem::take(&mut batch)).expect("apply");
            }
            db.flush().expect("flush");
        }
    }
    let wall = start.elapsed().as_secs_f64() * 1e6 / RUNS as f64;
    let cpu = (cpu_seconds() - cpu0) * 1e6 / RUNS as f64;
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    (wall, cpu)
}

fn tempfile_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "hookflow-sled-cost-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ))
}

fn main() {
    println!("sled 0.34: {RUNS} runs (1.8 KB run record), flushed every {GROUP} runs");
    for (merged, keys, how) in [
        (false, 3, "one batch per run,   3 keys"),
        (true, 3, "one batch per group, 3 keys"),
        (true, 2, "one batch per group, 2 keys"),
    ] {
        let (wall, cpu) = run(merged, keys);
        println!("{how}: {wall:6.1} µs wall, {cpu:6.1} µs CPU per run (all threads)");
    }
}
