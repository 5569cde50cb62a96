//! Filling the cache from many writers at once: eight threads and three
//! processes fetch the same version together, from a folder (`file://`,
//! copied into the cache as a host's program cache is) and from a slow web
//! server (so that they overlap for real). All succeed; the cache holds
//! each file once, verified, and nothing else. A process killed mid-fill
//! leaves nothing a later fetch trusts without verifying.
//!
//! The processes are this test binary run again on the ignored `child_fetch`
//! test, which fetches what its environment says.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cvl_repo::index::sha256_hex;
use cvl_repo::publish::{self, PublishFile};
use cvl_repo::{Fetcher, Location, Settings};

/// A repository with one version: a CVL file, a VM description and a
/// qcow2 program disk of `mib` MiB of random data.
fn repository(dir: &Path, mib: usize) -> PathBuf {
    let repo = dir.join("repos/A");
    publish::create(&repo).unwrap();
    let raw = dir.join("disk.raw");
    let mut bytes = vec![0u8; mib << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&raw, bytes).unwrap();
    let disk = dir.join("system.qcow2");
    let out = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&disk)
        .output()
        .expect("qemu-img (Debian: qemu-utils)");
    assert!(out.status.success(), "{out:?}");
    publish::publish(
        &repo,
        "A.cvl",
        &[
            PublishFile::Plain {
                path: "A.cvl".into(),
                bytes: b"A extends VMAppliance { vm = \"a.vmx\"; }\n".to_vec(),
            },
            PublishFile::Plain {
                path: "a.vmx".into(),
                bytes: b"memory = 64\n[[disk]]\ndevice = \"ide0:0\"\nfile = \"system.qcow2\"\n"
                    .to_vec(),
            },
            PublishFile::Disk {
                path: "system.qcow2".into(),
                source: disk,
            },
        ],
        None,
    )
    .unwrap();
    repo
}

/// Fetches version 1 of `url` into the cache of `home`, as a host does
/// (a folder's files copied into the cache too); the version's folder.
fn fetch(url: &str, home: &Path) -> Result<PathBuf, String> {
    let settings = Settings {
        timeout: Duration::from_secs(60),
        ..Settings::plain(home.to_path_buf())
    };
    let fetcher = Fetcher::new(settings);
    let location = Location::parse(url, None)?;
    let index = fetcher.index(&location)?.ok_or("no index")?;
    fetcher.cache_version(&location, &index, 1)
}

/// Run in a child process by the tests below (see the module's comment).
#[test]
#[ignore = "a helper: the tests run it in child processes"]
fn child_fetch() {
    let url = std::env::var("CVL_FILL_URL").unwrap();
    let home = PathBuf::from(std::env::var("CVL_FILL_HOME").unwrap());
    match fetch(&url, &home) {
        Ok(dir) => println!("FETCHED {}", dir.display()),
        Err(e) => panic!("FAILED {e}"),
    }
}

fn spawn_child(url: &str, home: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_fetch",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CVL_FILL_URL", url)
        .env("CVL_FILL_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Eight threads here and three processes fetch at once; every one gets
/// the same verified folder.
fn everyone_at_once(url: &str, home: &Path) -> PathBuf {
    let barrier = Arc::new(Barrier::new(8));
    let children: Vec<Child> = (0..3).map(|_| spawn_child(url, home)).collect();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (barrier, url, home) = (barrier.clone(), url.to_string(), home.to_path_buf());
            std::thread::spawn(move || {
                barrier.wait();
                fetch(&url, &home)
            })
        })
        .collect();
    let mut dirs: Vec<PathBuf> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a process failed: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest may print "test child_fetch ... " before it on the line.
        let dir = said
            .lines()
            .find_map(|l| l.split_once("FETCHED ").map(|(_, d)| d))
            .unwrap_or_else(|| panic!("the process said: {said}"));
        dirs.push(PathBuf::from(dir));
    }
    dirs.dedup();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// The version's folder holds its files once each, matching the index,
/// and nothing else (no temporary or partial file).
fn holds_each_file_once(version_dir: &Path, repo: &Path) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("cvl-repository.json")).unwrap()).unwrap();
    let files = index["versions"][0]["files"].as_array().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(version_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = files
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    for f in files {
        let bytes = std::fs::read(version_dir.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(sha256_hex(&bytes), f["sha256"].as_str().unwrap());
    }
}

#[test]
fn many_writers_fill_the_cache_from_a_folder_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repository(tmp.path(), 48);
    let home = tmp.path().join("home");
    let url = format!("file://{}", repo.display());
    let dir = everyone_at_once(&url, &home);
    assert!(dir.starts_with(&home), "{}", dir.display());
    holds_each_file_once(&dir, &repo);
}

#[test]
fn many_writers_fill_the_cache_from_a_slow_web_server_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repository(tmp.path(), 8);
    let server = SlowServer::start(tmp.path().join("repos"), Duration::from_millis(5));
    let home = tmp.path().join("home");
    let url = format!("{}/A", server.base);
    let dir = everyone_at_once(&url, &home);
    holds_each_file_once(&dir, &repo);
    // One writer downloaded the disk; the others reused its file.
    let disk_gets = server.gets("system.qcow2");
    assert_eq!(disk_gets, 1, "the disk was downloaded {disk_gets} times");
}

#[test]
fn a_writer_killed_mid_download_leaves_nothing_trusted_unverified() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repository(tmp.path(), 8);
    let server = SlowServer::start(tmp.path().join("repos"), Duration::from_millis(20));
    let home = tmp.path().join("home");
    let url = format!("{}/A", server.base);

    // Killed once part of the disk has arrived.
    let mut child = spawn_child(&url, &home);
    let deadline = Instant::now() + Duration::from_secs(60);
    let part = loop {
        let found = find(&home, |name| name.ends_with(".qcow2.part"));
        if let Some(p) = found.filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0)) {
            break p;
        }
        assert!(Instant::now() < deadline, "no partial download appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(find(&home, |name| name == "system.qcow2").is_none());

    // What it left is damaged on purpose: the next fetch resumes it, finds
    // it does not verify, and downloads the disk whole.
    let have = std::fs::metadata(&part).unwrap().len();
    std::fs::write(&part, vec![0xAAu8; have as usize]).unwrap();
    let dir = fetch(&url, &home).unwrap();
    holds_each_file_once(&dir, &repo);
}

fn find(root: &Path, wanted: impl Fn(&str) -> bool + Copy) -> Option<PathBuf> {
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path, wanted) {
                return Some(found);
            }
        } else if wanted(&entry.file_name().to_string_lossy()) {
            return Some(path);
        }
    }
    None
}

/// A static file server on loopback that honours `Range` and sends bodies
/// in 64 KiB pieces with a pause after each; it counts the GETs per file.
struct SlowServer {
    base: String,
    gets: Arc<std::sync::Mutex<Vec<String>>>,
}

impl SlowServer {
    fn start(root: PathBuf, pause: Duration) -> SlowServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let gets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let counted = gets.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, counted) = (root.clone(), counted.clone());
                std::thread::spawn(move || answer(stream, &root, pause, &counted));
            }
        });
        SlowServer { base, gets }
    }

    /// How many times a file of this name was asked for from its start.
    fn gets(&self, name: &str) -> usize {
        self.gets
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.ends_with(&format!("/{name}")))
            .count()
    }
}

fn answer(
    mut stream: TcpStream,
    root: &Path,
    pause: Duration,
    gets: &std::sync::Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut from = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some(spec) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
            from = spec.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let Ok(bytes) = std::fs::read(root.join(path.trim_start_matches('/'))) else {
        let _ = write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    };
    if from == 0 {
        gets.lock().unwrap().push(path);
    }
    let from = from.min(bytes.len());
    let head = if from > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
            bytes.len() - from,
            bytes.len().saturating_sub(1),
            bytes.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )
    };
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for piece in bytes[from..].chunks(64 << 10) {
        if stream.write_all(piece).is_err() {
            return;
        }
        std::thread::sleep(pause);
    }
}
