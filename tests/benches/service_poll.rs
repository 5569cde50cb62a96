//! The utility service's poll round over many deployments whose
//! repositories did not change: 1,000 deployments (`CVL_POLL_COUNT=N` for
//! another number), each importing a repository of its own on a local web
//! server that answers conditional requests (ETag, 304). Measured twice:
//! the repositories signed (a poll asks for the timestamp), then unsigned
//! (a poll asks for the index); `CVL_POLL_SIGNED=1` or `0` for one of them.
//! Starts `cvl utility run` on a generated state, lets the first round
//! (which verifies and plans every deployment) pass, then prints the wall
//! time of the following rounds, the service's CPU time per round and per
//! hundred repositories (from /proc), and its resident memory when idle.
//! Prints figures; run with `cargo bench -p cvl-e2e --bench service_poll`
//! (`CVL_E2E_CVL` names the `cvl` to measure, e.g. a release build;
//! `CVL_POLL_KEEP=1` only makes the state and serves it, for profiling by
//! hand).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cvl_e2e::*;
use cvl_planner::model::*;

fn main() {
    let count: usize = std::env::var("CVL_POLL_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let which: Vec<bool> = match std::env::var("CVL_POLL_SIGNED").as_deref() {
        Ok("1") => vec![true],
        Ok("0") => vec![false],
        _ => vec![true, false],
    };
    for signed in which {
        println!(
            "== {} repositories ==",
            if signed { "signed" } else { "unsigned" }
        );
        measure(count, signed);
    }
}

fn measure(count: usize, signed: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let cvl = cvl_binary();

    // One real repository, served under every repository's URL.
    let repo = dir.join("repo");
    cvl_repo::publish::create(&repo).unwrap();
    let key = cvl_repo::trust::keys::generate(&dir.join("bench.key"), b"bench").unwrap();
    let life = cvl_repo::trust::sign::TIMESTAMP_LIFE;
    if signed {
        cvl_repo::trust::sign::init(&repo, &[&key], 1, life).unwrap();
    }
    let sign_it = |d: &std::path::Path| cvl_repo::trust::sign::sign(d, &[&key], life).map(drop);
    cvl_repo::publish::publish(
        &repo,
        "Tiny.cvl",
        &[cvl_repo::publish::PublishFile::Plain {
            path: "Tiny.cvl".into(),
            bytes: b"Tiny extends VMAppliance {}\n".to_vec(),
        }],
        signed.then_some(&sign_it as &dyn Fn(&std::path::Path) -> Result<(), String>),
    )
    .unwrap();
    let files = files_of(&repo);
    let requests = Arc::new(AtomicU64::new(0));
    let not_modified = Arc::new(AtomicU64::new(0));
    let port = serve(files, requests.clone(), not_modified.clone());

    // The state: a VM per deployment, each applied from a file whose
    // cvl.lock names a repository of its own.
    let home = dir.join("home");
    let mut store = cvl_state::Store::open(&home.join("state.db")).unwrap();
    let mut changes = Vec::new();
    for i in 0..count {
        let name = format!("D{i}");
        let url = format!("http://127.0.0.1:{port}/r{i}");
        let folder = dir.join(&name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("cvl.lock"),
            format!(
                "{{\"format\": 1, \"imports\": [{{\"url\": \"{url}\", \"cvl\": \"Tiny.cvl\", \
                 \"requested\": null, \"version\": 1, \"sha256\": \"00\"}}]}}"
            ),
        )
        .unwrap();
        changes.push(Change::VmRecorded {
            deployment: name.clone(),
            path: ComponentPath(String::new()),
            record: Box::new(VmRecord {
                spec: DesiredVm {
                    appliance: ApplianceRef {
                        name: "Tiny".into(),
                        source: url,
                        version: Some(1),
                        digest: "d".into(),
                        import_site: None,
                    },
                    params: BTreeMap::new(),
                    provides: vec![],
                    requires: vec![],
                    memory_mib: 64,
                    data_disks: vec![],
                    agent: true,
                },
                alloc: VmAlloc {
                    host: "local".into(),
                    interfaces: BTreeMap::from([(
                        "ethernet0".to_string(),
                        InterfaceAlloc {
                            mac: format!(
                                "0a:c7:1a:{:02x}:{:02x}:{:02x}",
                                i >> 16,
                                i >> 8 & 255,
                                i & 255
                            ),
                            ip: None,
                            network: None,
                            subnet: None,
                            netmask: None,
                        },
                    )]),
                },
                status: Status::Running,
            }),
        });
        changes.push(Change::SourceSet {
            deployment: name.clone(),
            source: DeploymentSource {
                file: folder.join(format!("{name}.cvl")).display().to_string(),
                deploy: name,
                mirrors: vec![],
                timeout_secs: 10,
            },
        });
    }
    store.commit(&changes).unwrap();
    drop(store);
    if std::env::var_os("CVL_POLL_KEEP").is_some() {
        // For profiling by hand: the state and server stay until killed.
        println!(
            "CVL_HOME={} (the server on port {port}); stop with ^C",
            home.display()
        );
        let _keep = tmp.keep();
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    let mut child = Command::new(&cvl)
        .args(["utility", "run", "--interval", "4s"])
        .env("CVL_HOME", &home)
        .env_remove("CVL_MIRRORS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let lines = BufReader::new(child.stderr.take().unwrap());
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        // utime and stime, in clock ticks (100 a second here).
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    };
    let started = Instant::now();
    let mut rounds = 0;
    let mut last_cpu = 0.0;
    let mut figures = Vec::new();
    for line in lines.lines() {
        let line = line.unwrap();
        if !line.contains("\"event\":\"round\"") {
            continue;
        }
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        let now_cpu = cpu();
        rounds += 1;
        if rounds == 1 {
            println!(
                "first round (plans all {count} deployments): {:.3} s, {:.2} s of CPU",
                event["seconds"].as_f64().unwrap(),
                now_cpu
            );
        } else {
            figures.push((
                event["poll_s"].as_f64().unwrap(),
                event["seconds"].as_f64().unwrap(),
                now_cpu - last_cpu,
                event["changed"].as_u64().unwrap(),
            ));
        }
        last_cpu = now_cpu;
        if rounds == 6 {
            // Idle: the round is over, its memory handed back.
            std::thread::sleep(Duration::from_secs(1));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "too slow");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let rss = format!(
        "{} ({} anonymous, {} of files: the executable's pages)",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:")
    );
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{count} deployments, {count} repositories, unchanged; {} requests served, {} of them 304",
        requests.load(Ordering::Relaxed),
        not_modified.load(Ordering::Relaxed)
    );
    for (i, (poll, round, cpu, changed)) in figures.iter().enumerate() {
        println!(
            "round {}: poll {:.3} s, round {:.3} s, {:.3} s of CPU ({:.1} ms per hundred repositories), {changed} changed",
            i + 2,
            poll,
            round,
            cpu,
            cpu * 1000.0 / (count as f64 / 100.0)
        );
    }
    println!("resident memory, idle between rounds: {rss}");
}

/// Every file of the repository at `dir`, by its path in it.
fn files_of(dir: &std::path::Path) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// A web server for `/rN/PATH`, every `rN` the same repository, each file
/// with an ETag (its SHA-256): a request that names it gets 304 and no
/// body; a file the repository lacks, 404.
fn serve(
    files: HashMap<String, Vec<u8>>,
    requests: Arc<AtomicU64>,
    not_modified: Arc<AtomicU64>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let files: Arc<HashMap<String, (String, Vec<u8>)>> = Arc::new(
        files
            .into_iter()
            .map(|(name, bytes)| {
                let etag = format!("\"{}\"", &cvl_repo::index::sha256_hex(&bytes)[..16]);
                (name, (etag, bytes))
            })
            .collect(),
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (files, requests, not_modified) =
                (files.clone(), requests.clone(), not_modified.clone());
            std::thread::spawn(move || answer(stream, &files, &requests, &not_modified));
        }
    });
    port
}

fn answer(
    mut stream: TcpStream,
    files: &HashMap<String, (String, Vec<u8>)>,
    requests: &AtomicU64,
    not_modified: &AtomicU64,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let mut if_none_match = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("if-none-match") {
                    if_none_match = Some(value.trim().to_string());
                }
            }
        }
        requests.fetch_add(1, Ordering::Relaxed);
        // `/rN/PATH`: the repository's PATH.
        let path = request.split_whitespace().nth(1).unwrap_or("/");
        let rel = path.trim_start_matches('/').split_once('/').map(|(_, r)| r);
        let response = match rel.and_then(|r| files.get(r)) {
            Some((etag, _)) if if_none_match.as_deref() == Some(etag.as_str()) => {
                not_modified.fetch_add(1, Ordering::Relaxed);
                format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n\r\n").into_bytes()
            }
            Some((etag, body)) => {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(body);
                r
            }
            None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}
