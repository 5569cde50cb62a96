//! A hostile repository. A repository is someone else's server: it may name
//! paths that leave the cache, link out of its folder, ship a qcow2 whose
//! backing file is a host file, send endless or oversized bodies, and lie in
//! `Content-Length`. `cvl check`, `cvl repo fetch` and the language server
//! must each give a clear error, write nothing outside the cache, leave no
//! partial file, and stay within a bounded resident memory.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::lsp::Client;
use common::qemu_img;

/// Peak resident memory allowed to any `cvl` process here. The endless
/// bodies would take gigabytes without the limits; the largest document
/// held is 16 MiB.
const MEMORY_BOUND_KIB: u64 = 120 * 1024;

struct Fixture {
    _tmp: tempfile::TempDir,
    /// The test's folder; `outside/` in it must stay empty.
    root: PathBuf,
    /// The base URL of the HTTP server for `root/repos`.
    http: String,
}

impl Fixture {
    fn repo_url(&self, name: &str) -> String {
        format!("{}/{name}", self.http)
    }

    fn file_url(&self, name: &str) -> String {
        format!("file://{}/repos/{name}", self.root.display())
    }

    fn outside(&self) -> PathBuf {
        self.root.join("outside")
    }

    /// A path with enough `..` to reach `outside/NAME` from anywhere in
    /// the cache, as a hostile index would name it.
    fn escape(&self, name: &str) -> String {
        format!("{}{}/{name}", "../".repeat(30), self.outside().display())
    }

    /// Runs `cvl` with a home of its own, measuring its peak resident memory.
    fn cvl(&self, home: &str, args: &[&str]) -> (Output, u64) {
        let child = Command::new(env!("CARGO_BIN_EXE_cvl"))
            .args(args)
            .current_dir(&self.root)
            .env_remove("CVL_MIRRORS")
            .env("CVL_HOME", self.root.join(home))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_measured(child)
    }

    /// Asserts that nothing was written outside the cache and no partial
    /// or refused file (every refused file here is a disk or an escape)
    /// stays in it; verified files of the same version may.
    fn assert_clean(&self, home: &str) {
        let outside: Vec<_> = walk(&self.outside());
        assert!(outside.is_empty(), "written outside the cache: {outside:?}");
        let leftovers: Vec<_> = walk(&self.root.join(home))
            .into_iter()
            .filter(|p| {
                let name = p.to_string_lossy();
                name.ends_with(".part") || name.ends_with(".qcow2") || name.contains("PWNED")
            })
            .collect();
        assert!(leftovers.is_empty(), "left in the cache: {leftovers:?}");
    }
}

/// Waits for `child`, sampling its peak resident memory (VmHWM) as it runs.
fn wait_measured(mut child: Child) -> (Output, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut b).unwrap();
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut b).unwrap();
        b
    });
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        peak = peak.max(peak_rss_kib(&status_file));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cvl did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, peak)
}

fn peak_rss_kib(status_file: &str) -> u64 {
    std::fs::read_to_string(status_file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    cvl_repo::index::sha256_hex(bytes)
}

/// Writes a repository by hand, as a hostile server would: `files` are
/// (path in the index, content, size declared, backing declared), each
/// written under `versions/1/` where its path is a plain one.
fn hostile_repo(root: &Path, name: &str, cvl: &str, files: &[(&str, &[u8], u64, Option<&str>)]) {
    let dir = root.join("repos").join(name);
    std::fs::create_dir_all(dir.join("versions/1")).unwrap();
    let entries: Vec<Value> = files
        .iter()
        .map(|(path, bytes, size, backing)| {
            if cvl_repo::paths::check_relative(path).is_ok() {
                let target = dir.join("versions/1").join(path);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(target, bytes).unwrap();
            }
            let mut entry = json!({ "path": path, "sha256": sha256(bytes), "size": size });
            if let Some(b) = backing {
                entry["backing"] = json!(b);
            }
            entry
        })
        .collect();
    let index = json!({ "format": 1, "versions": [
        { "version": 1, "published": "2026-11-25T00:00:00Z", "cvl": cvl, "files": entries }
    ]});
    std::fs::write(
        dir.join("cvl-repository.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
}

const APPLIANCE: &[u8] = b"A extends Appliance { }\n";

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    let fx = Fixture {
        http: serve(root.join("repos")),
        _tmp: tmp,
        root,
    };
    let r = &fx.root;
    let n = APPLIANCE.len() as u64;
    // Paths that leave the cache, or are not plain names.
    let escape = fx.escape("PWNED");
    for (name, path) in [
        ("traversal", escape.as_str()),
        ("absolute", &*format!("{}/PWNED", fx.outside().display())),
        ("backslash", "a\\..\\..\\PWNED"),
        ("dot", "./A.cvl"),
        ("unnormalized", "e\u{301}.cvl"),
        ("nul", "A\0.cvl"),
    ] {
        hostile_repo(
            r,
            name,
            "A.cvl",
            &[("A.cvl", APPLIANCE, n, None), (path, APPLIANCE, n, None)],
        );
    }
    hostile_repo(r, "cvl-escape", &escape, &[(&*escape, APPLIANCE, n, None)]);
    // A symbolic link out of the repository's folder (for file://).
    std::fs::create_dir_all(r.join("private")).unwrap();
    std::fs::write(r.join("private/secret.cvl"), APPLIANCE).unwrap();
    hostile_repo(r, "symlink", "A.cvl", &[("A.cvl", APPLIANCE, n, None)]);
    let link = r.join("repos/symlink/versions/1/A.cvl");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(r.join("private/secret.cvl"), &link).unwrap();
    // A qcow2 whose backing file is /etc/passwd, listed with no backing, and
    // the same listed with it; a good disk for the lying servers.
    let work = r.join("work");
    std::fs::create_dir_all(&work).unwrap();
    qemu_img(
        &work,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "/etc/passwd",
            "-F",
            "raw",
            "evil.qcow2",
            "1M",
        ],
    );
    qemu_img(&work, &["create", "-q", "-f", "qcow2", "good.qcow2", "1M"]);
    let evil = std::fs::read(work.join("evil.qcow2")).unwrap();
    let good = std::fs::read(work.join("good.qcow2")).unwrap();
    let (e, g) = (evil.len() as u64, good.len() as u64);
    let a = ("A.cvl", APPLIANCE, n, None);
    hostile_repo(
        r,
        "backing",
        "A.cvl",
        &[a, ("system.qcow2", &evil, e, None)],
    );
    hostile_repo(
        r,
        "backing-listed",
        "A.cvl",
        &[a, ("system.qcow2", &evil, e, Some("/etc/passwd"))],
    );
    for name in ["lie-long", "lie-short", "overlong", "good"] {
        hostile_repo(r, name, "A.cvl", &[a, ("system.qcow2", &good, g, None)]);
    }
    // A CVL file whose declared size is past the document limit.
    hostile_repo(
        r,
        "huge-cvl",
        "A.cvl",
        &[("A.cvl", APPLIANCE, 1 << 30, None)],
    );
    fx
}

/// A static server for `root` with hostile answers by the repository's
/// name: `endless` streams an index forever, `oversized` announces 1 GiB,
/// `lie-long`/`lie-short` announce a disk's length wrong by 4 KiB each way,
/// `overlong` sends a disk with no length and 1 MiB too many bytes.
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
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let path = path.trim_start_matches('/');
    let head = |stream: &mut TcpStream, length: Option<u64>| {
        let length = length
            .map(|n| format!("Content-Length: {n}\r\n"))
            .unwrap_or_default();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n"
        );
    };
    if path.starts_with("endless/") {
        head(&mut stream, None);
        let chunk = [b' '; 65536];
        let _ = stream.write_all(b"{\"format\": 1, \"versions\": [");
        // Until the client hangs up (bounded, so the thread always ends).
        for _ in 0..(64 << 10) {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
        return;
    }
    if path.starts_with("oversized/") {
        head(&mut stream, Some(1 << 30));
        let _ = stream.write_all(&[b' '; 65536]);
        return;
    }
    let Ok(bytes) = std::fs::read(root.join(path)) else {
        let _ = write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    };
    let disk = path.ends_with(".qcow2");
    let n = bytes.len() as u64;
    match path.split('/').next() {
        Some("lie-long") if disk => head(&mut stream, Some(n + 4096)),
        Some("lie-short") if disk => head(&mut stream, Some(n - 4096)),
        Some("overlong") if disk => {
            head(&mut stream, None);
            let _ = stream.write_all(&bytes);
            let _ = stream.write_all(&vec![0u8; 1 << 20]);
            return;
        }
        _ => head(&mut stream, Some(n)),
    }
    let _ = stream.write_all(&bytes);
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cvl check` of a file importing `url`'s `A.cvl`: exits 1 with a
/// `bad-import` whose message contains `expect`.
fn check_refuses(fx: &Fixture, home: &str, url: &str, cvl: &str, expect: &str) {
    let main = fx.root.join(format!("{home}.cvl"));
    std::fs::write(
        &main,
        format!("import {{ url => \"{url}\", cvl => \"{cvl}\" }} A;\nMine extends A {{ }}\n"),
    )
    .unwrap();
    let (out, peak) = fx.cvl(
        home,
        &["check", "--format", "json", &main.to_string_lossy()],
    );
    assert_eq!(out.status.code(), Some(1), "{url}: {}", text(&out));
    let diagnostics: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad: Vec<&Value> = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "bad-import")
        .collect();
    assert_eq!(bad.len(), 1, "{url}: {diagnostics:#}");
    let message = bad[0]["message"].as_str().unwrap();
    assert!(message.contains(expect), "{url}: {message}");
    eprintln!("{url}: peak resident {peak} KiB");
    assert!(peak < MEMORY_BOUND_KIB, "{url}: {peak} KiB resident");
    fx.assert_clean(home);
}

/// `cvl repo fetch URL --version 1`: exits non-zero saying `expect`.
fn fetch_refuses(fx: &Fixture, home: &str, url: &str, expect: &str) {
    let (out, peak) = fx.cvl(home, &["repo", "fetch", url, "--version", "1"]);
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{url}: {said}");
    assert!(said.contains(expect), "{url}: {said}");
    assert!(!said.contains("panicked"), "{url}: {said}");
    eprintln!("{url}: peak resident {peak} KiB");
    assert!(peak < MEMORY_BOUND_KIB, "{url}: {peak} KiB resident");
    fx.assert_clean(home);
}

#[test]
fn bad_paths_are_refused_over_http_and_file() {
    let fx = fixture();
    let cases = [
        (
            "traversal",
            "is not a plain file name (`.` and `..` are not names)",
        ),
        ("absolute", "is absolute; it must be relative"),
        ("backslash", "(a backslash)"),
        ("dot", "(`.` and `..` are not names)"),
        ("unnormalized", "Unicode normalization (NFC) changes"),
        ("nul", "(a NUL byte)"),
        ("cvl-escape", "names its CVL file"),
    ];
    for (i, (name, expect)) in cases.iter().enumerate() {
        for (j, url) in [fx.repo_url(name), fx.file_url(name)].iter().enumerate() {
            let home = format!("h{i}-{j}");
            check_refuses(&fx, &home, url, "A.cvl", expect);
            fetch_refuses(&fx, &home, url, expect);
        }
    }
    // The import's own `cvl` key.
    let url = fx.repo_url("good");
    check_refuses(
        &fx,
        "key",
        &url,
        &fx.escape("PWNED"),
        "the import's `cvl` key must name a file inside",
    );
    check_refuses(&fx, "key-abs", &url, "/etc/passwd", "is absolute");
}

#[test]
fn a_symbolic_link_out_of_a_file_repository_is_not_followed() {
    let fx = fixture();
    let url = fx.file_url("symlink");
    check_refuses(&fx, "h", &url, "A.cvl", "outside the repository: refused");
    fetch_refuses(&fx, "h", &url, "outside the repository: refused");
}

#[test]
fn a_disk_backed_by_a_host_file_is_refused() {
    let fx = fixture();
    for (i, url) in [fx.repo_url("backing"), fx.file_url("backing")]
        .iter()
        .enumerate()
    {
        fetch_refuses(
            &fx,
            &format!("h{i}"),
            url,
            "has the backing file \"/etc/passwd\", which the repository index does not list: refused",
        );
    }
    for (i, url) in [fx.repo_url("backing-listed"), fx.file_url("backing-listed")]
        .iter()
        .enumerate()
    {
        fetch_refuses(
            &fx,
            &format!("l{i}"),
            url,
            "backing file \"/etc/passwd\" is not `../N/NAME`",
        );
    }
    // The same checks pass an honest disk, and it lands in the cache.
    let (out, _) = fx.cvl(
        "g",
        &["repo", "fetch", &fx.repo_url("good"), "--version", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        dir.starts_with(fx.root.join("g/cache")),
        "{}",
        dir.display()
    );
    assert!(dir.join("system.qcow2").is_file());
}

#[test]
fn endless_oversized_and_lying_bodies_are_cut_off() {
    let fx = fixture();
    check_refuses(
        &fx,
        "e",
        &fx.repo_url("endless"),
        "A.cvl",
        "is larger than 16 MiB: refused",
    );
    fetch_refuses(
        &fx,
        "e",
        &fx.repo_url("endless"),
        "is larger than 16 MiB: refused",
    );
    check_refuses(
        &fx,
        "o",
        &fx.repo_url("oversized"),
        "A.cvl",
        "is larger than 16 MiB: refused",
    );
    check_refuses(
        &fx,
        "c",
        &fx.repo_url("huge-cvl"),
        "A.cvl",
        "is larger than 16 MiB: refused",
    );
    check_refuses(
        &fx,
        "cf",
        &fx.file_url("huge-cvl"),
        "A.cvl",
        "is larger than 16 MiB: refused",
    );
    fetch_refuses(&fx, "ll", &fx.repo_url("lie-long"), "announces");
    fetch_refuses(&fx, "ls", &fx.repo_url("lie-short"), "announces");
    fetch_refuses(&fx, "ol", &fx.repo_url("overlong"), "sent more than");
}

#[test]
fn the_language_server_refuses_the_same_repositories() {
    let fx = fixture();
    let ws = fx.root.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let main = format!(
        "import {{ url => \"{}\", cvl => \"A.cvl\" }} A;\n\
         import {{ url => \"{}\", cvl => \"A.cvl\" }} B;\n\
         import {{ url => \"{}\", cvl => \"A.cvl\" }} C;\n",
        fx.repo_url("endless"),
        fx.repo_url("traversal"),
        fx.file_url("symlink"),
    );
    std::fs::write(ws.join("main.cvl"), &main).unwrap();
    let uri = format!("file://{}/main.cvl", ws.display());
    let mut client = Client::start(Path::new(env!("CARGO_BIN_EXE_cvl")), &ws);
    let status_file = format!("/proc/{}/status", client.child.id());
    client.initialize(&ws);
    client.open(&uri, &main);
    let diagnostics = client.diagnostics(&uri, Some(1));
    let peak = peak_rss_kib(&status_file);
    let messages: Vec<&str> = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "bad-import")
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 3, "{diagnostics:#}");
    assert!(
        messages[0].contains("is larger than 16 MiB"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("is not a plain file name"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("outside the repository"),
        "{messages:?}"
    );
    assert!(peak < MEMORY_BOUND_KIB, "{peak} KiB resident");
    client.stop();
    fx.assert_clean("ws/.home");
}
