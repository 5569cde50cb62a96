//! Parses the files named on the command line N times (default 1) and
//! prints the throughput: a small driver for profilers (`perf record`).

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: parse_file FILE [ROUNDS]");
    let rounds: usize = args.next().map_or(1, |r| r.parse().expect("a number"));
    let text = std::fs::read_to_string(&path).expect("readable UTF-8 file");
    let mut errors = 0;
    let mut secs = 0.0;
    for _ in 0..rounds {
        let start = std::time::Instant::now();
        let parse = cvl_syntax::parse(&text);
        secs += start.elapsed().as_secs_f64();
        errors += parse.errors().len();
        drop(parse); // not timed: freeing the tree is not parsing
    }
    println!(
        "{} bytes x {rounds} in {secs:.3} s: {:.1} MB/s, {errors} errors",
        text.len(),
        (text.len() * rounds) as f64 / secs / 1e6
    );
}
