//! The utility service (`cvl utility run`) keeping a running VAN up to date
//! by itself, on real QEMU guests in a namespace the test creates: a
//! published version is taken with nothing typed, its data kept and the
//! other appliance untouched; a version that never becomes ready is rolled
//! back and not retried; a newer good one is taken; blacklisted versions
//! are left for allowed ones, reported when none is, and stopped only when
//! the service enforces the blacklist; a new component in a new VAN version
//! waits for a person; a person's apply meets the service's lock; a second
//! service is refused; a repository that hangs, fails or serves nonsense
//! costs only its own deployment. Then the service is SIGKILLed in the
//! middle of updates, and each time, started again, it converges.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cvl_e2e::*;

const ALPHA: &str = "CVL = \"0.8\";\nAlpha extends VMAppliance {\n  \
    datadisks = { device => \"ide0:1\", size => \"16M\" };\n  vm = \"alpha.vmx\";\n}\n";
const BETA: &str = "CVL = \"0.8\";\nBeta extends VMAppliance {\n  vm = \"beta.vmx\";\n}\n";
/// The VAN, published like any appliance, and the user's file deploying it.
const PAIR_VAN: &str =
    "import { url => \"http://virtualappliance.org/Alpha\", cvl => \"Alpha.cvl\" } Alpha;\n\
    import { url => \"http://virtualappliance.org/Beta\", cvl => \"Beta.cvl\" } Beta;\n\
    PairVan extends VANAppliance {\n  Alpha a;\n  Beta b;\n  vanIF = \"a.ethernet0\";\n}\n";
const PAIR: &str =
    "import { url => \"http://virtualappliance.org/PairVan\", cvl => \"PairVan.cvl\" } PairVan;\n\
    Pair extends PairVan {}\n";

/// Alpha 1, Beta 1, the VAN, and Pair applied.
fn deploy_pair(u: &Utility) {
    publish_alpha(u, 1, false);
    u.publish("Beta", BETA);
    u.publish("PairVan", PAIR_VAN);
    std::fs::write(u.dir.join("Pair.cvl"), PAIR).unwrap();
    u.ok(&[
        "apply",
        "Pair.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
}

/// A VM description of the tiny guest; `version` only changes its
/// program's digest (an update to take), `broken` makes a guest that never
/// becomes ready: as a new version that migrates its data on first boot and
/// then fails, it rewrites the data disk's first sector and powers off.
fn description(version: u32, broken: bool) -> String {
    let mut d = DESCRIPTION.replace("memory = 192", &format!("memory = {}", 160 + version));
    if broken {
        d = d.replace(
            "console=ttyS0 quiet",
            "console=ttyS0 quiet rdinit=/bin/sh -- -c \\\"mount -t devtmpfs d /dev; \
             modprobe -a virtio_pci virtio_blk; for i in 1 2 3 4 5 6 7 8 9 10; do \
             [ -b /dev/vdb ] && break; sleep 0.3; done; echo MIGRATING-DATA; \
             echo MIGRATED-BY-THE-BROKEN-VERSION | dd of=/dev/vdb bs=512 count=1 conv=sync,fsync; \
             poweroff -f\\\"",
        );
    }
    d
}

/// The SHA-256 of a's whole data disk, as its guest reads it.
fn data_sha256(u: &Utility) -> String {
    let (code, out) = agent(u, "a")
        .exec(
            &["/bin/sh", "-c", "sha256sum /dev/vdb"],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn publish_alpha(u: &Utility, version: u32, broken: bool) {
    let guest = guest();
    let file = stage(
        &u.dir,
        &guest,
        "Alpha",
        ALPHA,
        &description(version, broken),
    );
    u.publish_file("Alpha", &file);
}

fn vm_dir(u: &Utility, component: &str) -> PathBuf {
    u.dir.join("home/host/vms/Pair").join(component)
}

fn pid(u: &Utility, component: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(vm_dir(u, component).join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// The version the state records `component` running, and its status.
fn recorded(u: &Utility, component: &str) -> (Option<u64>, String) {
    let out = u.cvl(&["status", "Pair.cvl", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|r| r["component"] == component)
        .map(|r| {
            (
                r["version"].as_u64(),
                r["recorded"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or((None, String::new()))
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            // What every service of the test said, for the reader.
            let logs: Vec<String> = LOGS
                .lock()
                .unwrap()
                .iter()
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .collect();
            panic!(
                "{what}: not within {} s; the services said:\n{}",
                limit.as_secs(),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every service log of the running test.
static LOGS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn agent(u: &Utility, component: &str) -> Agent {
    Agent::connect(
        &vm_dir(u, component).join("qga.sock"),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn write_marker(u: &Utility, marker: &str) {
    let script =
        format!("echo {marker} | dd of=/dev/vdb bs=512 count=1 conv=sync 2>/dev/null && sync");
    let (code, out) = agent(u, "a")
        .exec(&["/bin/sh", "-c", &script], Duration::from_secs(10))
        .unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
}

fn read_marker(u: &Utility, len: usize) -> String {
    let (_, data) = agent(u, "a")
        .exec(
            &["/bin/sh", "-c", &format!("head -c {len} /dev/vdb")],
            Duration::from_secs(10),
        )
        .unwrap();
    String::from_utf8_lossy(&data).into_owned()
}

/// `cvl utility run` in the background, its log in `service-N.log`.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(u: &Utility, n: u32, extra: &[&str]) -> Service {
        let log = u.dir.join(format!("service-{n}.log"));
        LOGS.lock().unwrap().push(log.clone());
        let mut args = vec![
            "utility",
            "run",
            "--ready-timeout",
            "20",
            "--stop-timeout",
            "10",
        ];
        if !extra.contains(&"--interval") {
            args.extend(["--interval", "2s"]);
        }
        args.extend(extra);
        let child = u
            .command(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Service { child, log }
    }

    fn said(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_service_keeps_a_van_up_to_date_by_itself() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, u, _ns) = bare("cvl-e2e-service");
    deploy_pair(&u);
    // A second deployment, from a web repository that will misbehave.
    let web = Flaky::serve(&u.ns, u.dir.join("repos"));
    std::fs::create_dir_all(u.dir.join("other")).unwrap();
    std::fs::write(
        u.dir.join("other/Solo.cvl"),
        format!(
            "import {{ url => \"http://127.0.0.1:{}/Beta\", cvl => \"Beta.cvl\" }} Beta;\n\
             Solo extends Beta {{\n  var \"required\" \"sensitive\" token;\n}}\n",
            web.port
        ),
    )
    .unwrap();
    // Its sensitive value comes from the environment of this apply only:
    // the service, which lacks it, skips the deployment and says so.
    let out = u
        .command(&[
            "apply",
            "other/Solo.cvl",
            "--auto-approve",
            "--stop-timeout",
            "10",
        ])
        .env("CVL_SECRET_SOLO_TOKEN", "Canary-Solo-7Q5x")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    write_marker(&u, "CVLDATA-SERVICE");
    let b_pid = pid(&u, "b").unwrap();

    let service = Service::start(&u, 1, &["--metrics", "127.0.0.1:9464"]);
    wait_for("the service's first round", Duration::from_secs(60), || {
        service.said().contains("\"event\":\"round\"")
    });
    assert!(
        service
            .said()
            .contains("its sensitive values cannot be had (CVL_SECRET_SOLO_TOKEN)"),
        "{}",
        service.said()
    );
    // A second service on the same state is refused, naming the first.
    let out = u.cvl(&["utility", "run", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("a utility service already runs"),
        "{}",
        text(&out)
    );

    // A new version is published: taken with nothing typed, data kept,
    // the other appliance untouched.
    let a_pid = pid(&u, "a").unwrap();
    let published = Instant::now();
    publish_alpha(&u, 2, false);
    wait_for("a updated to version 2", Duration::from_secs(90), || {
        recorded(&u, "a") == (Some(2), "running".into())
    });
    eprintln!(
        "version 2 published to a running it: {:.1} s",
        published.elapsed().as_secs_f64()
    );
    assert_ne!(pid(&u, "a"), Some(a_pid));
    assert_eq!(pid(&u, "b"), Some(b_pid), "b restarted");
    assert_eq!(read_marker(&u, 15), "CVLDATA-SERVICE");
    let history = u.ok(&["history", "Pair"]);
    assert!(
        history.contains("update   Pair/a 1 -> 2: done by service"),
        "{history}"
    );
    // The data as it was before the update is kept, and `cvl status` says so.
    let status: serde_json::Value =
        serde_json::from_str(&u.ok(&["status", "Pair.cvl", "--format", "json"])).unwrap();
    let a = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["component"] == "a")
        .unwrap();
    let kept = a["snapshots"]["data-ide0-1.qcow2"].as_array().unwrap();
    assert!(
        kept.len() == 1 && kept[0].as_str().unwrap().starts_with("cvl-before-v1-"),
        "{status:#}"
    );
    assert!(
        u.ok(&["status", "Pair.cvl"])
            .contains("data-ide0-1.qcow2 kept as cvl-before-v1-"),
        "cvl status"
    );

    // A person's apply while the service updates: refused, naming it.
    let before_update = data_sha256(&u);
    publish_alpha(&u, 3, true);
    wait_for(
        "the service at work on version 3",
        Duration::from_secs(60),
        || {
            service.said().contains("\"action\":\"update\"")
                && service.said().matches("action_began").count() >= 2
        },
    );
    let out = u.cvl(&["apply", "Pair.cvl", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cvl utility run: updating Pair"),
        "{}",
        text(&out)
    );

    // Version 3 migrates the data, never becomes ready: rolled back to 2
    // with the data as it was before the update (not as 3 left it), and
    // not tried again.
    wait_for(
        "the rollback to version 2",
        Duration::from_secs(120),
        || {
            u.ok(&["history", "Pair"])
                .contains("rolled back by service")
        },
    );
    wait_for("a running version 2 again", Duration::from_secs(30), || {
        recorded(&u, "a") == (Some(2), "running".into())
    });
    assert_eq!(read_marker(&u, 15), "CVLDATA-SERVICE");
    assert_eq!(
        data_sha256(&u),
        before_update,
        "the data is not as before the update"
    );
    let history = u.ok(&["history", "Pair"]);
    assert!(
        history.contains("MIGRATING-DATA"),
        "version 3 did not get to migrate the data:\n{history}"
    );
    assert!(
        history.contains("data disks put back to cvl-before-v2-"),
        "{history}"
    );
    let status = u.ok(&["status", "Pair.cvl"]);
    assert!(
        status.contains("version 3 of http://virtualappliance.org/Alpha failed in a"),
        "{status}"
    );
    let attempts = |s: &str| s.matches("version 3 failed its health gate").count();
    let before = attempts(&u.ok(&["history", "Pair"]));
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        attempts(&u.ok(&["history", "Pair"])),
        before,
        "version 3 was tried again"
    );
    assert_eq!(recorded(&u, "a").0, Some(2));

    // A later good version is taken.
    publish_alpha(&u, 4, false);
    wait_for("a updated to version 4", Duration::from_secs(90), || {
        recorded(&u, "a") == (Some(4), "running".into())
    });

    // The metrics say what happened.
    let metrics = in_netns(&u.ns, || {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9464").unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    });
    assert!(metrics.contains("cvl_updates_applied_total 2"), "{metrics}");
    assert!(
        metrics.contains("cvl_updates_rolled_back_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cvl_deployments 2"), "{metrics}");

    // A new component in a newly published VAN version: not started,
    // reported.
    u.publish(
        "PairVan",
        &PAIR_VAN.replace("  Beta b;\n", "  Beta b;\n  Beta c;\n"),
    );
    wait_for(
        "the new component reported",
        Duration::from_secs(30),
        || u.ok(&["history", "Pair"]).contains("start c (new)"),
    );
    assert!(!vm_dir(&u, "c").exists(), "the service started c");

    // Blacklisted with a newer allowed version published: updated to it.
    publish_alpha(&u, 5, false);
    u.ok(&["blacklist", "add", "http://virtualappliance.org/Alpha", "4"]);
    wait_for("a updated to version 5", Duration::from_secs(90), || {
        recorded(&u, "a") == (Some(5), "running".into())
    });
    // With every version barred: reported, marked, not stopped.
    u.ok(&[
        "blacklist",
        "add",
        "http://virtualappliance.org/Alpha",
        "*",
        "--reason",
        "CVE-TEST",
    ]);
    wait_for("the violation reported", Duration::from_secs(30), || {
        service.said().contains("\"event\":\"violation\"")
    });
    let out = u.cvl(&["blacklist", "violations"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("Pair/a  version 5 of http://virtualappliance.org/Alpha  (CVE-TEST)"),
        "{}",
        text(&out)
    );
    assert!(u.ok(&["status", "Pair.cvl"]).contains("BLACKLISTED"));
    assert!(
        pid(&u, "a").is_some(),
        "stopped without --enforce-blacklist"
    );

    // Repositories that hang, fail and serve nonsense: the other
    // deployment's repository backs off, reported; this one is served.
    for mode in [Flaky::HANG, Flaky::ERROR, Flaky::BROKEN] {
        web.mode.store(mode, Ordering::SeqCst);
        let seen = service.said().matches("repository_failed").count();
        wait_for(
            "the failing repository reported",
            Duration::from_secs(60),
            || service.said().matches("repository_failed").count() > seen,
        );
    }
    web.mode.store(Flaky::OK, Ordering::SeqCst);
    assert!(
        service.said().contains("\"next_try_s\""),
        "{}",
        service.said()
    );

    // Enforced: the barred appliance stops.
    service.kill();
    let enforcing = Service::start(&u, 2, &["--enforce-blacklist"]);
    wait_for(
        "a stopped by the enforced blacklist",
        Duration::from_secs(60),
        || pid(&u, "a").is_none(),
    );
    assert!(enforcing.said().contains("enforce_blacklist"));
    assert!(pid(&u, "b").is_some(), "b was stopped too");
    enforcing.kill();
}

#[test]
fn a_service_killed_mid_update_converges_when_started_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, u, _ns) = bare("cvl-e2e-service-kill");
    deploy_pair(&u);
    write_marker(&u, "CVLDATA-KILLED");
    // Killed at a different point of each update (when it began, while the
    // guest stops, while the new one boots), with a random part on top.
    let random = |n: u32| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        f64::from((nanos >> n) % 1000) / 1000.0
    };
    for (version, after) in [(2u32, 0.0f64), (3, 0.3), (4, 2.0)] {
        let after = after + random(version) * 0.5;
        let service = Service::start(&u, version, &[]);
        wait_for("the service's first round", Duration::from_secs(60), || {
            service.said().contains("\"event\":\"started\"")
        });
        publish_alpha(&u, version, false);
        wait_for("the update began", Duration::from_secs(60), || {
            service.said().contains("action_began")
        });
        std::thread::sleep(Duration::from_secs_f64(after));
        // SIGKILL: no chance to tidy up.
        service.kill();
        let again = Service::start(&u, version + 100, &[]);
        wait_for(
            &format!("a running version {version} after the kill"),
            Duration::from_secs(120),
            || recorded(&u, "a") == (Some(u64::from(version)), "running".into()),
        );
        assert!(pid(&u, "a").is_some());
        assert_eq!(read_marker(&u, 14), "CVLDATA-KILLED", "data lost");
        let finished: Vec<String> = again
            .said()
            .lines()
            .filter(|l| l.contains("action_finished"))
            .map(str::to_string)
            .collect();
        eprintln!(
            "killed {after} s into the update to {version}; started again, it did: {finished:?}"
        );
        again.kill();
    }

    // By hand: back to the version before, with its data as it was before
    // the update (what version 4 wrote is gone; a person must say so);
    // then `cvl update` does not take the version left again.
    write_marker(&u, "CVLDATA-BY-V4!");
    let rollback = |data: Option<&str>| {
        let mut args = vec![
            "rollback",
            "Pair.cvl",
            "a",
            "--auto-approve",
            "--stop-timeout",
            "10",
        ];
        args.extend(data.map(|d| ["--data", d]).into_iter().flatten());
        u.cvl(&args)
    };
    let refused = rollback(None);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("--data before-update")
            && text(&refused).contains("--data current"),
        "{}",
        text(&refused)
    );
    let out = rollback(Some("before-update"));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("update a  Alpha 4 -> 3"), "{said}");
    assert!(
        said.contains("data disks put back to cvl-before-v3-"),
        "{said}"
    );
    assert_eq!(recorded(&u, "a"), (Some(3), "running".into()));
    assert_eq!(
        read_marker(&u, 14),
        "CVLDATA-KILLED",
        "not the data of before the update"
    );
    let said = u.ok(&["update", "Pair.cvl", "a", "--auto-approve"]);
    assert!(said.contains("No changes"), "{said}");
    publish_alpha(&u, 5, false);
    let said = u.ok(&[
        "update",
        "Pair.cvl",
        "a",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    assert!(said.contains("update a  Alpha 3 -> 5"), "{said}");
    let history = u.ok(&["history", "Pair"]);
    assert!(
        history.contains("Pair/a 4 -> 3: done by cvl rollback"),
        "{history}"
    );
    assert!(
        history.contains("Pair/a 3 -> 5: done by cvl update"),
        "{history}"
    );
}

/// A static file server in the test's namespace whose behaviour changes on
/// demand: serving, hanging, answering 500, or serving a broken index.
struct Flaky {
    port: u16,
    mode: Arc<AtomicU8>,
}

impl Flaky {
    const OK: u8 = 0;
    const HANG: u8 = 1;
    const ERROR: u8 = 2;
    const BROKEN: u8 = 3;

    fn serve(ns: &str, root: PathBuf) -> Flaky {
        let mode = Arc::new(AtomicU8::new(Flaky::OK));
        let listener = in_netns(ns, || TcpListener::bind("127.0.0.1:0").unwrap());
        let port = listener.local_addr().unwrap().port();
        let m = mode.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, root) = (m.clone(), root.clone());
                std::thread::spawn(move || answer(stream, &root, m.load(Ordering::SeqCst)));
            }
        });
        Flaky { port, mode }
    }
}

fn answer(mut stream: std::net::TcpStream, root: &Path, mode: u8) {
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
    let reply = |stream: &mut std::net::TcpStream, status: &str, body: &[u8]| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(body);
    };
    match mode {
        Flaky::HANG => std::thread::sleep(Duration::from_secs(120)),
        Flaky::ERROR => reply(&mut stream, "500 Internal Server Error", b"oops"),
        // Nonsense for what a poll reads: the timestamp of a signed
        // repository, and the index.
        Flaky::BROKEN
            if path.ends_with("cvl-repository.json") || path.ends_with("timestamp.json") =>
        {
            reply(&mut stream, "200 OK", b"{\"format\": 1, \"versions\": [{")
        }
        _ => match std::fs::read(root.join(path.trim_start_matches('/'))) {
            Ok(bytes) if !path.contains("..") => reply(&mut stream, "200 OK", &bytes),
            _ => reply(&mut stream, "404 Not Found", b"no"),
        },
    }
}

/// An appliance with a password, and the VAN of the decisions test: `a`
/// and `c` run Alpha, `k` keeps the deployment's password.
const KEEPER: &str = "CVL = \"0.8\";\nKeeper extends VMAppliance {\n  \
    var \"required\" \"sensitive\" secret;\n  vm = \"keeper.vmx\";\n}\n";
const LAB_VAN: &str =
    "import { url => \"http://virtualappliance.org/Alpha\", cvl => \"Alpha.cvl\" } Alpha;\n\
    import { url => \"http://virtualappliance.org/Keeper\", cvl => \"Keeper.cvl\" } Keeper;\n\
    LabVan extends VANAppliance {\n  var \"required\" \"sensitive\" secret;\n  Alpha a;\n  \
    Keeper k;\n  Alpha c;\n  k.secret = secret;\n  vanIF = \"a.ethernet0\";\n}\n";
const LAB: &str =
    "import { url => \"http://virtualappliance.org/LabVan\", cvl => \"LabVan.cvl\" } LabVan;\n\
    Lab extends LabVan {}\n";

fn lab_dir(u: &Utility, component: &str) -> PathBuf {
    u.dir.join("home/host/vms/Lab").join(component)
}

fn lab_pid(u: &Utility, component: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(lab_dir(u, component).join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// The password `k` runs with, read back from its parameters.
fn lab_secret(u: &Utility) -> String {
    let mut agent =
        Agent::connect(&lab_dir(u, "k").join("qga.sock"), Duration::from_secs(10)).unwrap();
    let params = String::from_utf8(agent.read_file("/run/cvl/params").unwrap()).unwrap();
    params
        .lines()
        .find_map(|l| l.strip_prefix("secret="))
        .unwrap_or_default()
        .to_string()
}

/// The version and status the state records for a component of Lab.
fn lab_recorded(u: &Utility, component: &str) -> (Option<u64>, String) {
    let out = u.cvl(&["status", "Lab.cvl", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|r| r["component"] == component)
        .map(|r| {
            (
                r["version"].as_u64(),
                r["recorded"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or((None, String::new()))
}

/// GET `path` of the service's status page, from inside the namespace.
fn page_get(u: &Utility, addr: &str, path: &str) -> String {
    get_in(&u.ns, addr, path)
}

/// What a person decides stands: a rotated password is not put back, a
/// stopped appliance is not started, a held update runs once the policy
/// lets it (turned on again; a window that opens), and a password rotated
/// in the vault is resent by the service once.
#[test]
fn a_persons_decisions_stand_and_held_updates_are_released() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, mut u, _ns) = bare("cvl-e2e-decisions");
    u.env
        .push(("CVL_SECRET_LAB_SECRET".into(), "OldSecret1".into()));
    publish_alpha(&u, 1, false);
    u.publish("Keeper", KEEPER);
    u.publish("LabVan", LAB_VAN);
    std::fs::write(u.dir.join("Lab.cvl"), LAB).unwrap();
    u.ok(&["apply", "Lab.cvl", "--auto-approve", "--stop-timeout", "10"]);
    assert_eq!(lab_secret(&u), "OldSecret1");

    // The service runs with the old password in its environment.
    let service = Service::start(&u, 1, &["--http", "127.0.0.1:0"]);
    wait_for("the service's first round", Duration::from_secs(60), || {
        service.said().contains("\"event\":\"round\"")
    });
    let addr = service
        .said()
        .lines()
        .find(|l| l.contains("\"event\":\"started\""))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["http"].as_str().map(str::to_string))
        .expect("the service says where its page is");

    // A person rotates the password, and stops a.
    let out = u
        .command(&["apply", "Lab.cvl", "--auto-approve", "--stop-timeout", "10"])
        .env("CVL_SECRET_LAB_SECRET", "NewSecret2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resend"), "{}", text(&out));
    assert_eq!(lab_secret(&u), "NewSecret2");
    u.ok(&[
        "stop",
        "Lab.cvl",
        "a",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    assert_eq!(lab_recorded(&u, "a").1, "stopped");

    // A new Alpha: c (running) is updated by the service; a (stopped) is
    // not started, k keeps the person's password.
    publish_alpha(&u, 2, false);
    wait_for("c updated to version 2", Duration::from_secs(90), || {
        lab_recorded(&u, "c") == (Some(2), "running".into())
    });
    wait_for("the waits reported", Duration::from_secs(30), || {
        let history = u.ok(&["history", "Lab"]);
        history.contains("the service's value differs from the one applied by cvl apply")
            && history.contains("a person stopped it")
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(lab_secret(&u), "NewSecret2", "the old password came back");
    assert!(lab_pid(&u, "a").is_none(), "the service started a");
    assert_eq!(lab_recorded(&u, "a"), (Some(1), "stopped".into()));
    let history = u.ok(&["history", "Lab"]);
    assert!(
        !history
            .lines()
            .any(|l| l.contains("resend   Lab/k") && l.contains("by service")),
        "{history}"
    );
    assert!(
        !history
            .lines()
            .any(|l| l.contains("Lab/a") && l.contains("done by service")),
        "{history}"
    );
    // The page lists both as waiting for a person.
    wait_for(
        "the page shows both waiting",
        Duration::from_secs(20),
        || {
            let json: serde_json::Value =
                serde_json::from_str(&page_get(&u, &addr, "/api/deployments/Lab"))
                    .unwrap_or_default();
            let note = |c: &str| -> String {
                json["appliances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["component"] == c)
                    .map(|a| format!("{} {}", a["state"], a["note"]))
                    .unwrap_or_default()
            };
            note("a").contains("waits for a person") && note("k").contains("waits for a person")
        },
    );

    // Auto off: a new version is held; on again: it runs within two
    // intervals (2 s each), not at the next publish.
    u.ok(&["policy", "set", "Lab", "--auto", "off"]);
    publish_alpha(&u, 3, false);
    wait_for("the update held", Duration::from_secs(30), || {
        service.said().contains("auto off")
    });
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(lab_recorded(&u, "c").0, Some(2), "taken while auto is off");
    let shown = u.ok(&["policy", "show", "Lab"]);
    assert!(
        shown.contains("updates wait for a person: auto is off"),
        "{shown}"
    );
    let on = Instant::now();
    u.ok(&["policy", "set", "Lab", "--auto", "on"]);
    let began = service.said().matches("\"action\":\"update\"").count();
    wait_for("the held update begun", Duration::from_secs(30), || {
        service.said().matches("\"action\":\"update\"").count() > began
    });
    let released = on.elapsed();
    eprintln!(
        "auto on to the held update begun: {:.1} s",
        released.as_secs_f64()
    );
    assert!(released < Duration::from_secs(8), "{released:?}");
    wait_for("c updated to version 3", Duration::from_secs(90), || {
        lab_recorded(&u, "c") == (Some(3), "running".into())
    });

    // A window that opens two minutes from now: held until it opens, taken
    // within two intervals of its opening.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let opens_at = (now / 60 + 2) * 60;
    let start = (opens_at / 60) % 1440;
    let window = format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        ((start + 30) % 1440) / 60,
        (start + 30) % 60
    );
    u.ok(&["policy", "set", "Lab", "--window", &window]);
    publish_alpha(&u, 4, false);
    wait_for(
        "the update held by the window",
        Duration::from_secs(30),
        || service.said().contains("outside its maintenance window"),
    );
    let began = service.said().matches("\"action\":\"update\"").count();
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    while wall() < opens_at as f64 - 1.0 {
        assert_eq!(
            service.said().matches("\"action\":\"update\"").count(),
            began,
            "taken before its window opened"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_for("the update in the window", Duration::from_secs(30), || {
        service.said().matches("\"action\":\"update\"").count() > began
    });
    let late = wall() - opens_at as f64;
    eprintln!("window opened to the held update begun: {late:.1} s");
    assert!(late < 8.0, "{late} s after the window opened");
    wait_for("c updated to version 4", Duration::from_secs(90), || {
        lab_recorded(&u, "c") == (Some(4), "running".into())
    });
    u.ok(&["policy", "set", "Lab", "--window", "none"]);
    service.kill();

    // One source of truth: the user agent. The service, with no password in
    // its environment, reads it from the agent; rotated there, it is resent
    // by the service once, and a person's next plan has nothing to do.
    u.env.retain(|(k, _)| k != "CVL_SECRET_LAB_SECRET");
    u.ok(&["agent"]);
    let mut unlock = u
        .command(&["secrets", "unlock", "--passphrase-stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    unlock
        .stdin
        .take()
        .unwrap()
        .write_all(b"vault passphrase\n")
        .unwrap();
    assert!(unlock.wait().unwrap().success());
    let set = |value: &str| {
        let mut c = u
            .command(&["secrets", "set", "Lab/secret", "--stdin"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{value}\n").as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
    };
    set("NewSecret2");
    // A person starts a again (at the version the service left for a
    // person), the password from the agent.
    let said = u.ok(&["apply", "Lab.cvl", "--auto-approve", "--stop-timeout", "10"]);
    assert!(said.contains("Alpha 1 -> 4"), "{said}");
    assert!(lab_pid(&u, "a").is_some(), "{said}");
    let service = Service::start(&u, 2, &[]);
    wait_for(
        "the second service's first round",
        Duration::from_secs(60),
        || service.said().contains("\"event\":\"round\""),
    );
    set("VaultSecret3");
    wait_for("the vault's value resent", Duration::from_secs(60), || {
        lab_secret(&u) == "VaultSecret3"
    });
    std::thread::sleep(Duration::from_secs(6));
    let history = u.ok(&["history", "Lab"]);
    let resends: Vec<&str> = history
        .lines()
        .filter(|l| l.contains("resend   Lab/k") && l.contains("done by service"))
        .collect();
    assert_eq!(resends.len(), 1, "{history}");
    assert!(
        service.said().contains("\"event\":\"sensitive_changed\""),
        "{}",
        service.said()
    );
    let plan = u.ok(&["plan", "Lab.cvl"]);
    assert!(
        plan.contains("No changes"),
        "a person's plan after the service's resend:\n{plan}"
    );
    service.kill();
    let _ = u.cvl(&["agent", "--stop"]);
}

/// The crash test's VAN: `a` (with a data disk) provides what `b` requires.
const CRASH_VAN: &str =
    "import { url => \"http://virtualappliance.org/Alpha\", cvl => \"Alpha.cvl\" } Alpha;\n\
    import { url => \"http://virtualappliance.org/Beta\", cvl => \"Beta.cvl\" } Beta;\n\
    CrashVan extends VANAppliance {\n  Alpha a;\n  Beta b;\n  a.provides = \"Store\";\n  \
    b.requires = \"Store\";\n  vanIF = \"a.ethernet0\";\n}\n";
const CRASH: &str =
    "import { url => \"http://virtualappliance.org/CrashVan\", cvl => \"CrashVan.cvl\" } CrashVan;\n\
    Crash extends CrashVan {}\n";

fn crash_dir(u: &Utility, component: &str) -> PathBuf {
    u.dir.join("home/host/vms/Crash").join(component)
}

fn crash_pid(u: &Utility, component: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(crash_dir(u, component).join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// SIGKILL, as the kernel's OOM killer or a QEMU crash would.
fn kill_qemu(pid: u32) {
    // SAFETY: signalling a QEMU of the test's own.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn crash_marker(u: &Utility) -> String {
    let mut agent =
        Agent::connect(&crash_dir(u, "a").join("qga.sock"), Duration::from_secs(10)).unwrap();
    let (_, data) = agent
        .exec(
            &["/bin/sh", "-c", "head -c 13 /dev/vdb"],
            Duration::from_secs(10),
        )
        .unwrap();
    String::from_utf8_lossy(&data).into_owned()
}

/// Crashed appliances restart (with their data); one that crashes five
/// times within the restart window is recorded failed and left to a
/// person; after a reboot all come back in dependency order, never one a
/// person stopped; with restarts off, nothing is restarted.
#[test]
fn crashed_appliances_restart_and_a_crash_loop_is_left_to_a_person() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, u, _ns) = bare("cvl-e2e-crash");
    publish_alpha(&u, 1, false);
    u.publish("Beta", BETA);
    u.publish("CrashVan", CRASH_VAN);
    std::fs::write(u.dir.join("Crash.cvl"), CRASH).unwrap();
    u.ok(&[
        "apply",
        "Crash.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    let mut agent = Agent::connect(
        &crash_dir(&u, "a").join("qga.sock"),
        Duration::from_secs(10),
    )
    .unwrap();
    let (code, _) = agent
        .exec(
            &[
                "/bin/sh",
                "-c",
                "echo CVLDATA-CRASH | dd of=/dev/vdb bs=512 count=1 conv=sync,fsync 2>/dev/null",
            ],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(code, 0);
    drop(agent);
    let service = Service::start(
        &u,
        1,
        &[
            "--interval",
            "1h",
            "--survey-interval",
            "2s",
            "--restart-window",
            "10m",
        ],
    );
    wait_for("the service's first round", Duration::from_secs(60), || {
        service.said().contains("\"event\":\"round\"")
    });

    // Killed: running again (a new QEMU) with its data, within a survey
    // interval plus its boot; the history has the crash's console.
    let before = crash_pid(&u, "a").unwrap();
    let killed = Instant::now();
    kill_qemu(before);
    wait_for("a restarted", Duration::from_secs(45), || {
        crash_pid(&u, "a").is_some_and(|p| p != before)
            && u.ok(&["history", "Crash"]).contains("restarted by service")
    });
    let took = killed.elapsed().as_secs_f64();
    let said = service.said();
    let ready: f64 = said
        .lines()
        .rev()
        .filter(|l| l.contains("\"action_finished\"") && l.contains("\"component\":\"a\""))
        .filter_map(|l| l.split("ready after ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .next()
        .expect("the restart's boot time");
    eprintln!("killed to running again: {took:.1} s, of which the boot {ready:.1} s");
    assert!(took < 15.0 + ready, "{took} s");
    assert_eq!(crash_marker(&u), "CVLDATA-CRASH");
    let history = u.ok(&["history", "Crash"]);
    assert!(
        history.contains("The end of its console before the restart"),
        "{history}"
    );
    assert!(pid_of_b_unchanged(&u), "b was restarted");

    // A crash loop: crashed four more times (five in all), a is restarted
    // three more times, then recorded failed, reported, and not restarted
    // again. (The service runs with a ten-minute --restart-window: a loop
    // under a slow machine's boots still falls in it.) Each kill waits for
    // the restart before it to be done.
    for n in 2..=5 {
        let pid = crash_pid(&u, "a").unwrap();
        kill_qemu(pid);
        if n < 5 {
            wait_for(
                &format!("a restarted after crash {n}"),
                Duration::from_secs(60),
                || restarts(&u) >= n && crash_pid(&u, "a").is_some_and(|p| p != pid),
            );
        }
    }
    wait_for("the crash loop given up", Duration::from_secs(30), || {
        u.ok(&["history", "Crash"]).contains("gave up by service")
    });
    std::thread::sleep(Duration::from_secs(6));
    assert!(crash_pid(&u, "a").is_none(), "restarted a fifth time");
    assert_eq!(restarts(&u), 4);
    let out = u.cvl(&["status", "Crash.cvl", "--format", "json"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"recorded\": \"failed\""),
        "{}",
        text(&out)
    );
    assert!(
        service.said().contains("\"restart_gave_up\""),
        "{}",
        service.said()
    );

    // A person brings it back.
    u.ok(&[
        "apply",
        "Crash.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
        "--lock-timeout",
        "60s",
    ]);
    assert!(crash_pid(&u, "a").is_some());
    assert_eq!(crash_marker(&u), "CVLDATA-CRASH");

    // A host that restarted: the service and every QEMU gone at once, the
    // host agent's folders kept. The service, started again, brings them
    // back, providers first.
    service.kill();
    for c in ["a", "b"] {
        kill_qemu(crash_pid(&u, c).unwrap());
    }
    let service = Service::start(&u, 2, &["--interval", "1h", "--survey-interval", "2s"]);
    wait_for(
        "both back after the 'reboot'",
        Duration::from_secs(90),
        || crash_pid(&u, "a").is_some() && crash_pid(&u, "b").is_some(),
    );
    let said = service.said();
    let began: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("\"action_began\""))
        .filter_map(|l| l.split("\"component\":\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(began, ["a", "b"], "{said}");

    // A person stops b: it stays stopped.
    u.ok(&[
        "stop",
        "Crash.cvl",
        "b",
        "--auto-approve",
        "--stop-timeout",
        "10",
        "--lock-timeout",
        "60s",
    ]);
    std::thread::sleep(Duration::from_secs(8));
    assert!(crash_pid(&u, "b").is_none(), "the service started b");

    // Restarts off: a crash is reported and waits for a person.
    u.ok(&["policy", "set", "Crash", "--restart", "off"]);
    let pid = crash_pid(&u, "a").unwrap();
    kill_qemu(pid);
    wait_for(
        "the crash reported, not restarted",
        Duration::from_secs(30),
        || u.ok(&["history", "Crash"]).contains("restarts are off"),
    );
    std::thread::sleep(Duration::from_secs(6));
    assert!(crash_pid(&u, "a").is_none(), "restarted with restarts off");
    assert!(
        service.said().contains("\"event\":\"crashed\""),
        "{}",
        service.said()
    );
    service.kill();
}

/// How many restarts of a the history records as done.
fn restarts(u: &Utility) -> usize {
    u.ok(&["history", "Crash"])
        .lines()
        .filter(|l| l.contains("restarted by service"))
        .count()
}

/// b was never restarted by a's crash (a restart of a provider leaves what
/// requires it running, as an update of it does).
fn pid_of_b_unchanged(u: &Utility) -> bool {
    let history = u.ok(&["history", "Crash"]);
    !history
        .lines()
        .any(|l| l.contains("Crash/b") && l.contains("by service"))
}
