//! The status page with 1,000 deployments of 10 appliances (a generated
//! state; `CVL_STATUS_COUNT=N` for another number of deployments): time to
//! first byte of the overview (p50/p90/p99 over 300 requests) and of a
//! deployment's page with its picture, the pages' weight, how long the
//! first snapshot took, and the service's resident memory with a page open
//! (an event stream connected). Prints figures; run with `cargo bench -p
//! cvl-e2e --bench status_page` (`CVL_E2E_CVL` names the `cvl` to measure,
//! e.g. a release build).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cvl_e2e::browser::http;
use cvl_e2e::*;

fn main() {
    let count: usize = std::env::var("CVL_STATUS_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut store = cvl_state::Store::open(&home.join("state.db")).unwrap();
    store
        .commit(&status_state(count, 10, |d, i| {
            format!("Appliance {d}.{i}")
        }))
        .unwrap();
    drop(store);
    let started = Instant::now();
    // The survey every 10 minutes: the figures are the page's, not the
    // agent's (which a status request of 10,000 VMs keeps busy).
    let (mut child, addr) = status_service(&cvl_binary(), &home, &["--survey-interval", "10m"]);
    let pid = child.id();
    let api = loop {
        let answer = http("GET", &addr, "/api/overview?page=1", &[], None);
        if answer.body.contains(&format!("\"deployments\":{count},")) {
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no snapshot");
        std::thread::sleep(Duration::from_millis(20));
    };
    let first = started.elapsed();
    println!(
        "{count} deployments x 10 appliances: first snapshot served {:.0} ms after start",
        first.as_secs_f64() * 1000.0
    );
    for (what, path) in [
        ("overview (page 1 of 100 deployments)", "/"),
        ("deployment page with its picture", "/deployments/D0000"),
        ("hosts", "/hosts"),
    ] {
        let mut times: Vec<f64> = (0..300).map(|_| ttfb(&addr, path)).collect();
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        let weight = http("GET", &addr, path, &[], None).body.len();
        println!(
            "{what}: time to first byte p50 {:.2} ms, p90 {:.2}, p99 {:.2}; {:.1} KB",
            at(0.5),
            at(0.9),
            at(0.99),
            weight as f64 / 1000.0
        );
    }
    println!(
        "/api/overview?page=1: {:.1} KB; /api/overview (all): {:.1} KB",
        api.body.len() as f64 / 1000.0,
        http("GET", &addr, "/api/overview", &[], None).body.len() as f64 / 1000.0
    );
    println!("resident memory, idle: {:.1} MiB", rss_mib(pid));
    // A page open: its event stream connected (and its first event read).
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /events?page=%2F&since=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 65536];
    let _ = stream.read(&mut buf).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    println!("resident memory, a page open: {:.1} MiB", rss_mib(pid));
    let _ = child.kill();
    let _ = child.wait();
}

/// Milliseconds from sending `GET path` to the answer's first byte.
fn ttfb(addr: &str, path: &str) -> f64 {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let started = Instant::now();
    stream.write_all(request.as_bytes()).unwrap();
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).unwrap();
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    elapsed
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
