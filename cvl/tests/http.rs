//! Repositories served over HTTP by a static file server on loopback, as any
//! web server would serve a repository folder; and servers that fail: 404,
//! 500, a body cut short, no answer at all. Every failure must be a clear
//! `bad-import` within the timeout, never a hang.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{cvl_in as cvl, ok_in as ok};

/// A static file server for `root` on 127.0.0.1 that honours `Range`, with
/// faults by path prefix: `/missing/...` 404, `/broken/...` 500, `/short/...`
/// a body cut short, `/hang/...` no answer for 20 s, `/cutonce/...` the file,
/// but a `.qcow2` file's first response stops half-way. Returns its base URL.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || answer(stream, &root));
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn answer(mut stream: TcpStream, root: &Path) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut range_from: Option<usize> = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(spec) = lower.strip_prefix("range: bytes=") {
            range_from = spec.trim().trim_end_matches('-').parse().ok();
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let reply = |stream: &mut TcpStream, status: &str, body: &[u8], length: usize| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        let _ = stream.write_all(body);
    };
    if path.starts_with("/missing/") {
        reply(&mut stream, "404 Not Found", b"no", 2);
    } else if path.starts_with("/broken/") {
        reply(&mut stream, "500 Internal Server Error", b"oops", 4);
    } else if path.starts_with("/short/") {
        reply(&mut stream, "200 OK", b"{\"format\": 1, \"ver", 1000);
    } else if path.starts_with("/hang/") {
        std::thread::sleep(Duration::from_secs(20));
    } else if let Some(rest) = path.strip_prefix("/cutonce/") {
        let Ok(bytes) = std::fs::read(root.join(rest)) else {
            return reply(&mut stream, "404 Not Found", b"no", 2);
        };
        let first = CUT.lock().unwrap().insert(rest.to_string());
        if let Some(from) = range_from.filter(|&f| f < bytes.len()) {
            RANGES_SERVED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                bytes.len() - from,
                bytes.len() - 1,
                bytes.len()
            );
            let _ = stream.write_all(&bytes[from..]);
        } else if first && rest.ends_with(".qcow2") {
            reply(
                &mut stream,
                "200 OK",
                &bytes[..bytes.len() / 2],
                bytes.len(),
            );
        } else {
            reply(&mut stream, "200 OK", &bytes, bytes.len());
        }
    } else {
        match std::fs::read(root.join(path.trim_start_matches('/'))) {
            Ok(bytes) => reply(&mut stream, "200 OK", &bytes, bytes.len()),
            Err(_) => reply(&mut stream, "404 Not Found", b"no", 2),
        }
    }
}

static CUT: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
static RANGES_SERVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/groupware")
}

fn publish_figure3(dir: &Path) {
    let local = format!(
        "http://virtualappliance.org/=file://{}/repos/",
        dir.display()
    );
    for (name, times) in [
        ("DNS", 3),
        ("Firewall", 5),
        ("OpenLDAP", 1),
        ("Groupware", 1),
    ] {
        let repo = format!("repos/{name}");
        common::create_signed(dir, &repo);
        let file = common::stage(dir, name, &examples().join(format!("{name}.cvl")), 4);
        let key = common::key(dir);
        for _ in 0..times {
            ok(
                dir,
                "home",
                &[
                    "publish",
                    "--mirror",
                    &local,
                    &repo,
                    file.to_str().unwrap(),
                    "--key",
                    &key,
                ],
            );
        }
    }
    std::fs::copy(
        examples().join("AcmeGroupware.cvl"),
        dir.join("AcmeGroupware.cvl"),
    )
    .unwrap();
}

#[test]
fn groupware_imports_over_http_and_then_offline_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    publish_figure3(dir);
    let base = serve(dir.join("repos"));
    let mirror = format!("http://virtualappliance.org/={base}/");
    let args = [
        "check",
        "--mirror",
        &mirror,
        "--deploy",
        "AcmeGroupware",
        "--format",
        "json",
        "AcmeGroupware.cvl",
    ];
    let out = ok(dir, "home", &args);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    let out = ok(
        dir,
        "home",
        &[
            "eval",
            "--mirror",
            &mirror,
            "AcmeGroupware.cvl",
            "-o",
            "AcmeGroupware",
            "--format",
            "json",
        ],
    );
    let values: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(values["l.domain"], serde_json::json!(["acme.org"]));

    // Offline: everything comes from the cache filled above...
    let mut offline = args.to_vec();
    offline.insert(1, "--offline");
    ok(dir, "home", &offline);
    // ...and with an empty cache, offline is a clear bad-import.
    let out = cvl(dir, "empty-home", &offline);
    assert_eq!(out.status.code(), Some(1));
    let diagnostics: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(diagnostics[0]["code"], "bad-import");
    assert!(
        diagnostics[0]["message"]
            .as_str()
            .unwrap()
            .contains("--offline"),
        "{diagnostics:#}"
    );
}

fn import_from(dir: &Path, url: &str, timeout: &str) -> (Value, Duration) {
    std::fs::write(
        dir.join("main.cvl"),
        format!("import {{ url => \"{url}\", cvl => \"X.cvl\" }} X;\nA extends X {{}}\n"),
    )
    .unwrap();
    let start = Instant::now();
    let out = cvl(
        dir,
        "home",
        &[
            "check",
            "--timeout",
            timeout,
            "--format",
            "json",
            "main.cvl",
        ],
    );
    let elapsed = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diagnostics: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = diagnostics[0].clone();
    assert_eq!(first["code"], "bad-import", "{diagnostics:#}");
    assert_eq!(first["line"], 1);
    (first, elapsed)
}

#[test]
fn failing_servers_give_clear_errors_within_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = serve(dir.to_path_buf());
    let message = |d: &Value| d["message"].as_str().unwrap().to_string();

    let (d, _) = import_from(dir, &format!("{base}/missing/X"), "5");
    assert!(
        message(&d).contains("no repository at") && message(&d).contains("HTTP 404"),
        "{d:#}"
    );

    let (d, _) = import_from(dir, &format!("{base}/broken/X"), "5");
    assert!(message(&d).contains("HTTP 500"), "{d:#}");

    let (d, _) = import_from(dir, &format!("{base}/short/X"), "5");
    let m = message(&d);
    assert!(m.contains("cut short") || m.contains("broke off"), "{d:#}");

    let (d, elapsed) = import_from(dir, &format!("{base}/hang/X"), "2");
    assert!(message(&d).contains("within 2 s"), "{d:#}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");

    // Nobody listening at all.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (d, _) = import_from(dir, &format!("http://127.0.0.1:{closed}/X"), "5");
    assert!(message(&d).contains("cannot reach"), "{d:#}");
}

#[test]
fn program_disks_download_verified_and_resume_after_a_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Two versions of DNS whose disk differs: version 2 is a delta on 1.
    let staged = common::stage(dir, "DNS", &examples().join("DNS.cvl"), 8);
    ok(dir, "home", &["repo", "create", "repos/DNS"]);
    ok(
        dir,
        "home",
        &["publish", "repos/DNS", staged.to_str().unwrap()],
    );
    let disk = staged.parent().unwrap().join("system.qcow2");
    common::qemu_img(
        dir,
        &["convert", "-O", "raw", disk.to_str().unwrap(), "v2.raw"],
    );
    let mut raw = std::fs::read(dir.join("v2.raw")).unwrap();
    raw[3 << 20..(3 << 20) + 4096].fill(0xab);
    std::fs::write(dir.join("v2.raw"), &raw).unwrap();
    common::qemu_img(
        dir,
        &["convert", "-O", "qcow2", "v2.raw", disk.to_str().unwrap()],
    );
    ok(
        dir,
        "home",
        &["publish", "repos/DNS", staged.to_str().unwrap()],
    );

    let base = serve(dir.join("repos"));
    let url = format!("{base}/cutonce/DNS");
    // The first download of each disk stops half-way: a clear error...
    let out = cvl(dir, "home", &["repo", "fetch", &url, "--version", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run the command again to resume"),
        "{stderr}"
    );
    // ...and the next runs resume from where each stopped, until all is there.
    let mut fetched = None;
    for _ in 0..3 {
        let out = cvl(dir, "home", &["repo", "fetch", &url, "--version", "2"]);
        if out.status.success() {
            fetched = Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            break;
        }
    }
    let fetched = fetched.expect("the fetch completes after resuming");
    assert!(
        RANGES_SERVED.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "no range request was made"
    );
    // The cached version 2 disk, through its cached backing chain, reads as published.
    let cached = fetched.join("system.qcow2");
    assert!(fetched.join("../1/system.qcow2").exists());
    common::qemu_img(dir, &["compare", "v2.raw", cached.to_str().unwrap()]);
    // Offline, from the cache alone.
    let out = ok(
        dir,
        "home",
        &["repo", "fetch", "--offline", &url, "--version", "2"],
    );
    assert_eq!(
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        fetched
    );
}
