//! What a compiled flow costs in memory, to back the figures in BENCHMARKS.md (issue "one big
//! repo of flows"): N copies of a flow file are loaded with `hookflow::flow::load_dir` under a
//! heap profiler (dhat), and the live heap is reported per flow — in all, and for the templates
//! alone (a flow's inline templates compiled into a minijinja environment).
//!
//! `cargo run --release --example flow_cost -- [FLOW_FILE] [N]`

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn live() -> usize {
    dhat::HeapStats::get().curr_bytes
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .get(1)
        .map_or("flows/woo-order-to-shipping.yaml", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let _profiler = if std::env::var_os("DHAT_OUT").is_some() {
        dhat::Profiler::builder()
            .file_name(std::env::var("DHAT_OUT").unwrap())
            .build()
    } else {
        dhat::Profiler::builder().testing().build()
    };
    let source = std::fs::read_to_string(file).expect("read the flow file");
    let dir = std::env::temp_dir().join(format!("hookflow-flow-cost-{}", std::process::id()));
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    for i in 0..n {
        std::fs::write(flows.join(format!("f{i}.yaml")), &source).unwrap();
    }
    let before = live();
    let (set, errors) = hookflow::flow::load_dir(&flows, &dir.join("templates"));
    let after = live();
    assert!(errors.is_empty(), "{errors:?}");
    let per_flow = (after - before) / n;
    // Edits of one file, reloaded: what stays live after each.
    let mut set = set;
    let mut live_after_edits = Vec::new();
    for edit in 0..6 {
        let text = source.replacen("description:", &format!("# edit {edit}\ndescription:"), 1);
        std::fs::write(flows.join("f7.yaml"), text).unwrap();
        let (next, errors) = hookflow::flow::reload_dir(&set, &flows, &dir.join("templates"));
        assert!(errors.is_empty(), "{errors:?}");
        set = next;
        live_after_edits.push((live() as i64 - after as i64) / 1024);
    }
    println!(
        "live heap after each of six one-file reloads, KiB more than after loading: {live_after_edits:?}"
    );
    let templates = {
        let empty = hookflow::template::Templates::new();
        let t0 = live();
        drop(set);
        let freed = t0 - live();
        drop(empty);
        freed / n
    };
    println!(
        "{n} copies of {file}: {per_flow} bytes live per flow after loading (freed on drop: {templates} per flow)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
