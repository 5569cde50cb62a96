//! Signed repositories against a hostile server: an appliance deployed from
//! a signed repository over HTTP (a server of the test's own, in the test's
//! namespace), then each attack TUF names performed by that server against
//! `cvl update` (arbitrary software, rollback, freeze, mix and match,
//! endless data, an untrusted root): each refused naming it, the running
//! appliance left on its version, nothing of the attack in the caches.
//! Then the utility service meets each attack and a freeze (a timestamp that
//! expires during the test), reports them, updates nothing, and resumes once
//! the publisher refreshes; and a key rotation the subscriber follows, after
//! which what the old key alone signs is refused.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cvl_e2e::*;

const ALPHA: &str = "CVL = \"0.8\";\nAlpha extends VMAppliance {\n  vm = \"alpha.vmx\";\n}\n";
const SOLO: &str =
    "import { url => \"http://virtualappliance.org/Alpha\", cvl => \"Alpha.cvl\" } Alpha;\n\
    Solo extends Alpha {}\n";

/// What the hostile server serves.
#[derive(Clone)]
struct Serving {
    /// The folder served as the repository.
    root: PathBuf,
    /// `tuf/timestamp.json` from another folder (mix and match).
    timestamp_from: Option<PathBuf>,
    /// `tuf/timestamp.json` replaced by this many bytes of whitespace.
    endless: Option<usize>,
}

impl Serving {
    /// The folder as it is.
    fn plain(root: &Path) -> Serving {
        Serving {
            root: root.to_path_buf(),
            timestamp_from: None,
            endless: None,
        }
    }
}

struct Hostile {
    port: u16,
    serving: Arc<Mutex<Serving>>,
}

impl Hostile {
    fn serve(ns: &str, root: PathBuf) -> Hostile {
        let serving = Arc::new(Mutex::new(Serving {
            root,
            timestamp_from: None,
            endless: None,
        }));
        let listener = in_netns(ns, || TcpListener::bind("127.0.0.1:0").unwrap());
        let port = listener.local_addr().unwrap().port();
        let shared = serving.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let now = shared.lock().unwrap().clone();
                std::thread::spawn(move || answer(stream, &now));
            }
        });
        Hostile { port, serving }
    }

    fn set(&self, serving: Serving) {
        *self.serving.lock().unwrap() = serving;
    }

    fn plain(&self, root: &Path) {
        self.set(Serving {
            root: root.to_path_buf(),
            timestamp_from: None,
            endless: None,
        });
    }
}

fn answer(mut stream: std::net::TcpStream, serving: &Serving) {
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
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.trim_start_matches("/Alpha/").trim_start_matches('/');
    let reply = |stream: &mut std::net::TcpStream, status: &str, body: &[u8]| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(body);
    };
    if path.contains("..") {
        return reply(&mut stream, "404 Not Found", b"no");
    }
    if path == "tuf/timestamp.json" {
        if let Some(n) = serving.endless {
            return reply(&mut stream, "200 OK", &vec![b' '; n]);
        }
        if let Some(other) = &serving.timestamp_from {
            let bytes = std::fs::read(other.join(path)).unwrap_or_default();
            return reply(&mut stream, "200 OK", &bytes);
        }
    }
    match std::fs::read(serving.root.join(path)) {
        Ok(bytes) => reply(&mut stream, "200 OK", &bytes),
        Err(_) => reply(&mut stream, "404 Not Found", b"no"),
    }
}

/// `cvl repo VERB DIR --key KEY EXTRA...` (refresh, rotate-key), which
/// must succeed.
fn repo_signing(u: &Utility, verb: &str, dir: &Path, key: &Path, extra: &[&str]) {
    let mut args = vec![
        "repo",
        verb,
        dir.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend(extra);
    u.ok(&args);
}

/// The attacker's root, one version past the real chain: `fake` (the
/// attacker's own repository) rotated to its next root with the
/// attacker's key, and that root put into a copy of `repo` at `to`.
fn forge(u: &Utility, fake: &Path, attacker_key: &Path, repo: &Path, to: &Path) {
    let key = attacker_key.to_str().unwrap();
    repo_signing(u, "rotate-key", fake, attacker_key, &["--new-key", key]);
    let root = std::fs::read(fake.join("tuf/root.json")).unwrap();
    let version = cvl_repo::trust::pin_of(&root).unwrap().version;
    copy(repo, to);
    let name = format!("tuf/{version}.root.json");
    std::fs::copy(fake.join(&name), to.join(&name)).unwrap();
}

/// A copy of a folder (a repository as it was at a moment).
fn copy(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    run(&["cp", "-a", from.to_str().unwrap(), to.to_str().unwrap()]);
}

/// Publishes Alpha version `n` (a program that differs by its memory) into
/// the publisher's repository, signed with `key` (none: unsigned).
fn publish(u: &Utility, repo: &Path, n: u32, key: Option<&Path>) -> String {
    let file = stage(
        &u.dir,
        &guest(),
        "Alpha",
        ALPHA,
        &DESCRIPTION.replace("memory = 192", &format!("memory = {}", 160 + n)),
    );
    let mut args = vec!["publish", repo.to_str().unwrap(), file.to_str().unwrap()];
    if let Some(key) = key {
        args.extend(["--key", key.to_str().unwrap()]);
    }
    let out = u.cvl(&args);
    text(&out)
}

/// The version the state records Solo running, and its QEMU's pid.
fn running(u: &Utility) -> (Option<u64>, Option<u32>) {
    let out = u.cvl(&["status", "Solo.cvl", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let row = &rows[0];
    (
        row["version"].as_u64(),
        row["pid"].as_u64().map(|p| p as u32),
    )
}

/// `cvl update`, which must be refused naming `attack`; Solo keeps running
/// what it ran, and `cvl.lock` pins what it pinned.
fn refused(u: &Utility, attack: &str) {
    let before = running(u);
    let lock = std::fs::read(u.dir.join("cvl.lock")).unwrap();
    let out = u.cvl(&[
        "update",
        "Solo.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("refused"), "{attack}: {said}");
    assert!(said.contains(attack), "expected `{attack}`:\n{said}");
    assert_eq!(running(u), before, "{attack}: the appliance changed");
    assert_eq!(
        std::fs::read(u.dir.join("cvl.lock")).unwrap(),
        lock,
        "{attack}: cvl.lock changed"
    );
    eprintln!(
        "{attack}: refused, as `cvl update` says:\n  {}",
        said.lines().find(|l| l.contains("refused")).unwrap_or("")
    );
}

/// Whether any file of the caches holds `needle`.
fn cached(u: &Utility, needle: &str) -> bool {
    walk(&u.dir.join("home/cache"))
        .iter()
        .any(|f| std::fs::read(f).is_ok_and(|b| contains(&b, needle)))
}

#[test]
fn attacks_on_a_signed_repository_are_refused_naming_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, mut u, _ns) = bare("cvl-e2e-trust");
    let key = u.key();
    let repo = u.dir.join("publisher/Alpha");
    u.ok(&[
        "repo",
        "create",
        repo.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    publish(&u, &repo, 1, Some(&key));
    let server = Hostile::serve(&u.ns, repo.clone());
    u.env.push((
        "CVL_MIRRORS".into(),
        format!(
            "http://virtualappliance.org/=http://127.0.0.1:{}/",
            server.port
        ),
    ));
    std::fs::write(u.dir.join("Solo.cvl"), SOLO).unwrap();
    u.ok(&[
        "apply",
        "Solo.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    let lock = std::fs::read_to_string(u.dir.join("cvl.lock")).unwrap();
    assert!(
        lock.contains("\"roots\""),
        "the root is pinned on first use:\n{lock}"
    );
    assert_eq!(running(&u).0, Some(1));
    let v1 = u.dir.join("copies/v1");
    copy(&repo, &v1);

    // Arbitrary software: a version written without the key (index and sums
    // rewritten; the signed metadata left as it was).
    let evil = u.dir.join("copies/evil");
    copy(&repo, &evil);
    std::fs::remove_dir_all(evil.join("tuf")).unwrap();
    let evil_cvl = ALPHA.replace("Alpha extends", "/* EVIL-MARKER */ Alpha extends");
    let file = stage(
        &u.dir,
        &guest(),
        "Evil",
        &evil_cvl,
        &DESCRIPTION.replace("memory = 192", "memory = 170"),
    );
    let staged = file.parent().unwrap().join("Alpha.cvl");
    std::fs::rename(&file, &staged).unwrap();
    u.ok(&["publish", evil.to_str().unwrap(), staged.to_str().unwrap()]);
    copy(&repo.join("tuf"), &evil.join("tuf"));
    // The index's copies by hash too (what a signed repository's reader
    // reads): the attacker's index under the signed name.
    let evil_index = std::fs::read(evil.join("cvl-repository.json")).unwrap();
    for entry in std::fs::read_dir(&evil).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".cvl-repository.json") {
            std::fs::write(&path, &evil_index).unwrap();
        }
    }
    server.plain(&evil);
    refused(&u, "[arbitrary-software]");
    assert!(
        !cached(&u, "EVIL-MARKER"),
        "the attacker's file is in the cache"
    );

    // The publisher publishes version 2; this machine sees its metadata
    // (a check), without updating.
    publish(&u, &repo, 2, Some(&key));
    server.plain(&repo);
    u.ok(&["check", "Solo.cvl"]);
    let v2 = u.dir.join("copies/v2");
    copy(&repo, &v2);

    // Rollback: the older metadata served again.
    server.plain(&v1);
    refused(&u, "[rollback]");

    // Mix and match: a newer timestamp over an older snapshot.
    publish(&u, &repo, 3, Some(&key));
    server.set(Serving {
        root: v2.clone(),
        timestamp_from: Some(repo.clone()),
        endless: None,
    });
    refused(&u, "[mix-and-match]");

    // Endless data: a timestamp of 2 MiB.
    server.set(Serving {
        root: repo.clone(),
        timestamp_from: None,
        endless: Some(2 << 20),
    });
    refused(&u, "[endless-data]");

    // An untrusted root: a root version 2 an attacker signed with a key of
    // their own.
    let attacker_key = u.dir.join("attacker.key");
    u.ok(&["key", "generate", attacker_key.to_str().unwrap()]);
    let fake = u.dir.join("copies/fake");
    u.ok(&[
        "repo",
        "create",
        fake.to_str().unwrap(),
        "--key",
        attacker_key.to_str().unwrap(),
    ]);
    let forged = u.dir.join("copies/forged");
    forge(&u, &fake, &attacker_key, &repo, &forged);
    server.plain(&forged);
    refused(&u, "[untrusted-root]");

    // Freeze: the publisher's timestamp, expired.
    let frozen = u.dir.join("copies/frozen");
    copy(&repo, &frozen);
    repo_signing(&u, "refresh", &frozen, &key, &["--expires", "1s"]);
    std::thread::sleep(Duration::from_secs(2));
    server.plain(&frozen);
    refused(&u, "[freeze]");

    // The real repository again: the update is taken.
    repo_signing(&u, "refresh", &repo, &key, &[]);
    server.plain(&repo);
    u.ok(&[
        "update",
        "Solo.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    assert_eq!(running(&u).0, Some(3));

    // Key rotation: the subscriber follows the new root; metadata signed
    // by the old key alone afterwards is refused.
    let new_key = u.dir.join("new.key");
    u.ok(&["key", "generate", new_key.to_str().unwrap()]);
    let before_rotation = u.dir.join("copies/before-rotation");
    copy(&repo, &before_rotation);
    repo_signing(
        &u,
        "rotate-key",
        &repo,
        &key,
        &["--new-key", new_key.to_str().unwrap()],
    );
    // The old key no longer signs here.
    let out = u.cvl(&[
        "repo",
        "refresh",
        repo.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    publish(&u, &repo, 4, Some(&new_key));
    u.ok(&[
        "update",
        "Solo.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    assert_eq!(running(&u).0, Some(4));
    let lock = std::fs::read_to_string(u.dir.join("cvl.lock")).unwrap();
    assert!(
        lock.contains("\"version\": 2"),
        "the rotated root is pinned:\n{lock}"
    );
    // An attacker with the old key publishes version 5 on the old chain
    // (its metadata versions pushed past the real ones).
    publish(&u, &before_rotation, 5, Some(&key));
    for _ in 0..3 {
        repo_signing(&u, "refresh", &before_rotation, &key, &[]);
    }
    server.plain(&before_rotation);
    refused(&u, "[arbitrary-software]");
    server.plain(&repo);

    // The service: each attack is reported naming it, nothing is
    // updated, and once the real repository is served again the report
    // clears; a freeze too, and a refresh resumes updates. (What it
    // rolls back to is signed by the rotated key: the old key's metadata
    // is arbitrary software to a reader past the rotation.)
    let rolled_back = u.dir.join("copies/rolled-back");
    copy(&repo, &rolled_back);
    repo_signing(&u, "refresh", &repo, &new_key, &[]);
    let mut service = start_service(&u);
    let log = u.dir.join("service.log");
    wait(&log, "the first round", |s| {
        s.contains("\"event\":\"round\"")
    });
    let started = started_line(&log);
    let (http, metrics) = (
        started["http"].as_str().unwrap().to_string(),
        started["metrics"].as_str().unwrap().to_string(),
    );
    // Its timestamp rewritten (a later expiry, no valid signature).
    let tampered = u.dir.join("copies/tampered");
    copy(&repo, &tampered);
    let ts = tampered.join("tuf/timestamp.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&ts).unwrap()).unwrap();
    json["signed"]["expires"] = "2099-01-01T00:00:00Z".into();
    std::fs::write(&ts, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    // A root version 3 the attacker signed (the real chain is at 2).
    let forged3 = u.dir.join("copies/forged3");
    forge(&u, &fake, &attacker_key, &repo, &forged3);
    // A poll looks further only when the timestamp changed: the attacks
    // that serve the timestamp the service has seen get a fresh one once
    // they are in place (the publisher's own refresh, signed with the key).
    let refresh = |dir: &Path| {
        repo_signing(&u, "refresh", dir, &new_key, &[]);
    };
    let attacks = [
        (Serving::plain(&tampered), None, "[arbitrary-software]"),
        (Serving::plain(&rolled_back), None, "[rollback]"),
        (
            Serving {
                root: rolled_back.clone(),
                timestamp_from: Some(repo.clone()),
                endless: None,
            },
            Some(&repo),
            "[mix-and-match]",
        ),
        (
            Serving {
                root: repo.clone(),
                timestamp_from: None,
                endless: Some(2 << 20),
            },
            None,
            "[endless-data]",
        ),
        (Serving::plain(&forged3), Some(&forged3), "[untrusted-root]"),
    ];
    for (serving, refreshed, attack) in attacks {
        server.set(serving);
        if let Some(dir) = refreshed {
            refresh(dir);
        }
        let reported = Instant::now();
        wait(&log, &format!("{attack} reported"), |s| {
            s.lines()
                .any(|l| l.contains("\"event\":\"refused\"") && l.contains(attack))
        });
        eprintln!(
            "the service reported {attack} in {:.1} s",
            reported.elapsed().as_secs_f64()
        );
        assert_eq!(running(&u).0, Some(4), "{attack}: the appliance changed");
        let scrape = page(&u, &metrics, "/metrics");
        let name = attack.trim_matches(|c| c == '[' || c == ']');
        assert!(
            scrape.contains(&format!("attack=\"{name}\"")),
            "{attack}:\n{scrape}"
        );
        server.plain(&repo);
        let deadline = Instant::now() + Duration::from_secs(90);
        while page(&u, &metrics, "/metrics").contains("cvl_repository_refused{") {
            assert!(Instant::now() < deadline, "{attack}: still reported");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // The real repository again, its timestamp now expiring 15 s from here.
    server.plain(&repo);
    repo_signing(&u, "refresh", &repo, &new_key, &["--expires", "15s"]);
    // The real one: once its timestamp expires (the repository unchanged),
    // the service says it is frozen.
    server.plain(&repo);
    wait(&log, "the freeze reported", |s| s.contains("[freeze]"));
    // A version published with a timestamp that expires at once: not taken.
    publish_expiring(&u, &repo, 5, &new_key);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(running(&u).0, Some(4), "updated from a frozen repository");
    let scrape = page(&u, &metrics, "/metrics");
    assert!(
        scrape.contains("cvl_repository_refused{") && scrape.contains("attack=\"freeze\""),
        "{scrape}"
    );
    let deployment = page(&u, &http, "/api/deployments/Solo");
    assert!(deployment.contains("[freeze]"), "{deployment}");
    // The publisher refreshes: the service takes version 5 (the
    // attacker's version 5, on the old chain, was never taken).
    repo_signing(&u, "refresh", &repo, &new_key, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while running(&u).0 != Some(5) {
        assert!(
            Instant::now() < deadline,
            "not updated after the refresh:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let scrape = page(&u, &metrics, "/metrics");
    assert!(!scrape.contains("attack=\"freeze\""), "{scrape}");
    let _ = service.kill();
    let _ = service.wait();
}

/// Publishes version `n` signed, its timestamp valid for a second.
fn publish_expiring(u: &Utility, repo: &Path, n: u32, key: &Path) {
    let file = stage(
        &u.dir,
        &guest(),
        "Alpha",
        ALPHA,
        &DESCRIPTION.replace("memory = 192", &format!("memory = {}", 160 + n)),
    );
    u.ok(&[
        "publish",
        repo.to_str().unwrap(),
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--expires",
        "1s",
    ]);
}

/// The service's `started` line.
fn started_line(log: &Path) -> serde_json::Value {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "started")
        .expect("the started line")
}

/// GET `path` at `addr`, from inside the namespace: the body.
fn page(u: &Utility, addr: &str, path: &str) -> String {
    get_in(&u.ns, addr, path)
}

fn start_service(u: &Utility) -> Child {
    let log = u.dir.join("service.log");
    u.command(&[
        "utility",
        "run",
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--interval",
        "2s",
        "--ready-timeout",
        "20",
        "--stop-timeout",
        "10",
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(log).unwrap())
    .spawn()
    .unwrap()
}

fn wait(log: &Path, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        if done(&said) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 90 s:\n{said}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
