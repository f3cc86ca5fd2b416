//! What sled 0.34 holds in memory for the keys it stores and has stored, to back "Waiting
//! runs" in BENCHMARKS.md: N runs written as hookflow writes them (a 2.4 KB record, written
//! three times, and a due-index key), the RSS afterwards, and the RSS of a fresh process that
//! reopens the store — then the same with every key deleted again before the reopen.
//!
//! `cargo run --release --example sled_memory -- 300000`   (N; add `--cache BYTES`)

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn open(dir: &std::path::Path, cache: u64) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache)
        .open()
        .expect("open sled")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let cache: u64 = match args.iter().position(|a| a == "--cache") {
        Some(i) => args[i + 1].parse().expect("--cache BYTES"),
        None => 16 << 20,
    };
    // The reopen, in a process of its own: `sled_memory --reopen DIR`.
    if let Some(i) = args.iter().position(|a| a == "--reopen") {
        let db = open(std::path::Path::new(&args[i + 1]), cache);
        let due = db.scan_prefix("due:").keys().take(100).count();
        println!(
            "    reopened in a fresh process (read {due} due keys): {} MiB",
            rss_mib()
        );
        return;
    }
    let me = std::env::current_exe().expect("own path");
    for delete in [false, true] {
        let dir = std::env::temp_dir().join(format!("hookflow-sled-memory-{}-{delete}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let db = open(&dir, cache);
            println!(
                "{n} runs{}: start {} MiB",
                if delete { ", then deleted" } else { "" },
                rss_mib()
            );
            let record = vec![7u8; 2400];
            for i in 0..n {
                let id = format!("01K{i:020}");
                for _ in 0..3 {
                    db.insert(format!("run:{id}"), record.clone()).expect("insert");
                }
                db.insert(format!("due:{:016x}:{id}", 1_000_000_000 + i), b"f".to_vec())
                    .expect("insert");
                if i % 256 == 0 {
                    db.flush().expect("flush");
                }
            }
            db.flush().expect("flush");
            println!("    written: {} MiB", rss_mib());
            if delete {
                for i in 0..n {
                    let id = format!("01K{i:020}");
                    db.remove(format!("run:{id}")).expect("remove");
                    db.remove(format!("due:{:016x}:{id}", 1_000_000_000 + i))
                        .expect("remove");
                    if i % 256 == 0 {
                        db.flush().expect("flush");
                    }
                }
                db.flush().expect("flush");
                println!("    all deleted again: {} MiB", rss_mib());
            }
        }
        let status = std::process::Command::new(&me)
            .args([
                "--reopen",
                dir.to_str().expect("utf-8 path"),
                "--cache",
                &cache.to_string(),
            ])
            .status()
            .expect("reopen");
        assert!(status.success());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
