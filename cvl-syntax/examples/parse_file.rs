//! Parses the files named on the command line N times (default 1) and
//! prints the throughput of the best and the median round: a small driver
//! for profilers (`perf record`) and for A/B runs on a noisy machine.

/// The allocator `cvl` ships with (cvl/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: parse_file FILE [ROUNDS]");
    let rounds: usize = args.next().map_or(1, |r| r.parse().expect("a number"));
    let text = std::fs::read_to_string(&path).expect("readable UTF-8 file");
    let mut errors = 0;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let start = std::time::Instant::now();
        let parse = cvl_syntax::parse(&text);
        times.push(start.elapsed().as_secs_f64());
        errors += parse.errors().len();
        drop(parse); // not timed: freeing the tree is not parsing
    }
    times.sort_by(f64::total_cmp);
    let mb = text.len() as f64 / 1e6;
    println!(
        "{} bytes x {}: best {:.1} MB/s, median {:.1} MB/s, {errors} errors",
        text.len(),
        times.len(),
        mb / times[0],
        mb / times[times.len() / 2],
    );
}
