//! Profiling aid: one-character edits in one object of a large file, each
//! followed by the file's diagnostics, as the language server does.
//! `cargo run --release -p cvl-analysis --example edit_loop [OBJECTS] [EDITS]`
#[path = "../benches/workspace.rs"]
#[allow(dead_code)]
mod workspace;

use std::time::Instant;

use cvl_analysis::{AnalysisHost, CheckOptions};

/// The allocator `cvl` ships with (cvl/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let objects: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let edits: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let text = workspace::large_file(objects);
    let mut host = AnalysisHost::new();
    let file = host.add_file("large.cvl".into(), text.clone());
    let start = Instant::now();
    let n = host
        .analysis()
        .diagnostics(file, &CheckOptions::default())
        .unwrap()
        .len();
    eprintln!("cold: {:?} ({n} diagnostics)", start.elapsed());
    let at = text.find(&format!("acme{}.org", objects / 2)).unwrap() + "acme".len();
    let mut times = Vec::new();
    for round in 0..edits {
        let edit = cvl_syntax::TextEdit {
            delete: cvl_syntax::TextRange::at((at as u32).into(), 1.into()),
            insert: char::from(b'0' + (round % 10) as u8).to_string(),
        };
        let start = Instant::now();
        assert!(host.apply_edit(file, &edit));
        let n = host
            .analysis()
            .diagnostics(file, &CheckOptions::default())
            .unwrap()
            .len();
        std::hint::black_box(n);
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "edit + diagnostics: p50 {:?} p99 {:?} max {:?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1]
    );
}
