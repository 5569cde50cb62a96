//! `cvl apply` across three hosts over SSH, on real parts: three network
//! namespaces, each with its own `sshd` (own config and host key), joined by
//! a bridge in a fourth that plays the physical switch (198.18.0.0/24);
//! `cvl` runs in a fifth. The suite spreads over the hosts, its VAN spans
//! them over VXLAN, a new DNS version restarts only DNS, parameters made of
//! shell metacharacters arrive verbatim and run nothing; a host whose key
//! changed is refused before anything runs there; a host whose sshd dies
//! mid-apply fails its actions clearly and the next apply converges; a host
//! that stops answering the service is reported unreachable, and nothing
//! moves; a dead host is fenced and its appliances recovered from their
//! backups (one appliance, and the real suite serving its page again).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cvl_e2e::*;

/// The service as the failure tests run it: no round of updates in the
/// test's time, hosts surveyed every second and declared dead after 3 s.
const WATCHFUL: [&str; 6] = [
    "--interval",
    "1h",
    "--survey-interval",
    "1s",
    "--host-dead-after",
    "3s",
];

fn hosts_of(u: &Utility) -> BTreeMap<String, String> {
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    plan["allocations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(c, a)| (c.clone(), a["host"].as_str().unwrap().to_string()))
        .collect()
}

fn ips_of(u: &Utility) -> BTreeMap<String, String> {
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    plan["allocations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(c, a)| {
            let ip = a["interfaces"]["ethernet0"]["ip"].as_str().unwrap();
            (c.clone(), ip.to_string())
        })
        .collect()
}

/// A static file server for `root` listening on 127.0.0.1 inside the
/// network namespace `ns` (from a thread that joins it): there, `cvl`
/// reaches it, and the hosts, whose 127.0.0.1 is their own, cannot. Stops
/// when dropped.
struct WebRepos {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebRepos {
    fn serve(ns: &str, root: PathBuf) -> WebRepos {
        use std::io::{BufRead, Read, Write};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: moves only this thread into the namespace.
            let joined = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let file = root.join(path.trim_start_matches('/'));
                let mut body = Vec::new();
                let status =
                    match std::fs::File::open(&file).and_then(|mut f| f.read_to_end(&mut body)) {
                        Ok(_) if !path.contains("..") => "200 OK",
                        _ => {
                            body.clear();
                            "404 Not Found"
                        }
                    };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        WebRepos {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for WebRepos {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How many program files an apply says it sent.
fn sent_files(said: &str) -> u64 {
    said.lines()
        .find_map(|l| l.strip_prefix("Sent "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_suite_spans_three_hosts_over_ssh() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let lab = Lab::new(&dir);
    // DNS comes from a web server only `cvl`'s namespace reaches: each
    // host, unable to fetch it, is sent its files over SSH.
    let web = WebRepos::serve(&ns("ctl"), dir.join("repos"));
    let u = Utility {
        env: vec![(
            "CVL_MIRRORS".into(),
            format!(
                "http://virtualappliance.org/DNS=http://127.0.0.1:{}/DNS;\
                 http://virtualappliance.org/=file://{}/repos/",
                web.port,
                dir.display()
            ),
        )],
        ..lab.utility(&HOSTS.map(|(h, _)| h))
    };
    u.publish_suite();

    // Registering a host: first the fingerprint to check, then with it.
    for (host, _) in HOSTS {
        let add = |extra: &[&str]| {
            let mut args = lab.host_add_args(host, 1024, 3);
            args.extend(extra.iter().map(|a| a.to_string()));
            u.cvl(&args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let out = add(&[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains(&lab.fingerprint(host)), "{said}");
        assert!(said.contains("Nothing was recorded"), "{said}");
        let out = add(&["--fingerprint", &lab.fingerprint(host)]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    // Public addresses on the hosts' network (the switch's subnet).
    u.ok(&["pool", "set", "public", "198.18.0.100-198.18.0.150"]);

    // The suite across the hosts: placement spreads it.
    let started = Instant::now();
    let said = u.ok(&[
        "apply",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    eprintln!(
        "apply of the suite on three hosts: {:.1} s\n{said}",
        started.elapsed().as_secs_f64()
    );
    assert!(said.contains("Applied 6 action(s) to AcmeSuite"), "{said}");
    assert!(
        said.contains("cannot reach the repository: its files were sent over SSH"),
        "{said}"
    );
    // The repositories are on this machine (file://): each host was sent
    // what its VMs need, once.
    let first_sent = sent_files(&said);
    assert!(first_sent >= 12, "{said}");
    let placed = hosts_of(&u);
    let used: BTreeSet<&String> = placed.values().collect();
    assert_eq!(used.len(), 3, "placement did not spread: {placed:?}");

    // Every guest got its parameters, and reaches a VAN peer on another
    // host over VXLAN.
    let ips = ips_of(&u);
    for (c, host) in &placed {
        let params = u.params(c);
        assert!(
            params.contains(&format!("ethernet0.ip={}\n", escape(&ips[c]))),
            "{c}: {params}"
        );
        assert!(params.contains(&format!("rootpw={}\n", escape(SECRETS[0].1))));
        let (peer, _) = placed.iter().find(|(_, h)| *h != host).unwrap();
        if let Err(said) = u.ping(c, &ips[peer]) {
            panic!(
                "{c} on {host} cannot reach {peer} on {}: {said}",
                placed[peer]
            );
        }
    }

    // A public interface answers from the hosts' network, through its
    // host's uplink, which kept its own address.
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    let public = plan["allocations"]["f"]["interfaces"]["ethernet1"]["ip"]
        .as_str()
        .expect("f has a public interface")
        .to_string();
    assert!(public.starts_with("198.18.0.1"), "{public}");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns("ctl"),
            "/bin/busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "3",
            &public,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "f's public address {public} does not answer: {}",
        text(&out)
    );

    // Status and a no-op apply ask every host at once.
    let t = Instant::now();
    let status = u.ok(&["status", "--format", "json"]);
    let status_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    u.ok(&["status"]);
    let status_again_s = t.elapsed().as_secs_f64();
    let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 6, "{rows:#}");
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["agent"] == true && r["drift"] == ""),
        "{rows:#}"
    );
    let t = Instant::now();
    let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    let noop_s = t.elapsed().as_secs_f64();
    assert!(said.contains("No changes"), "{said}");
    eprintln!(
        "status of 6 VMs on 3 hosts: {status_s:.2} s (again: {status_again_s:.2} s); \
         apply without changes: {noop_s:.2} s"
    );

    // A new DNS version: only DNS restarts, its data disk intact.
    let said = u.new_dns_version("CVLDATA-3");
    assert!(said.contains("Applied 1 action(s)"), "{said}");
    // Only what the new version adds travels: its index and its own files.
    let update_sent = sent_files(&said);
    assert!((1..first_sent / 3).contains(&update_sent), "{said}");

    // Shell metacharacters in a value: verbatim in the guest, run nowhere.
    let canary = dir.join("pwned");
    let hostile = format!(
        "x$(touch {})`touch {}`'q\\\"z;w",
        canary.display(),
        canary.display()
    );
    let meant = hostile.replace("\\\"", "\"");
    let file = dir.join("AcmeSuite.cvl");
    let original = std::fs::read_to_string(&file).unwrap();
    assert!(original.contains("\"acme.org\""));
    std::fs::write(
        &file,
        original.replace("\"acme.org\"", &format!("\"{hostile}\"")),
    )
    .unwrap();
    let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert!(said.contains("Applied 5 action(s)"), "{said}");
    for c in ["d", "h", "l", "m", "p"] {
        let params = u.params(c);
        assert!(
            params.contains(&format!("domain={}\n", escape(&meant))),
            "{c} did not get the value verbatim: {params}"
        );
    }
    assert!(
        !canary.exists(),
        "a parameter value ran as a command on a host"
    );
    for c in ["d", "h", "l", "m", "p"] {
        let (code, _) = u
            .agent(c)
            .exec(
                &["/bin/sh", "-c", &format!("test -e {}", canary.display())],
                Duration::from_secs(10),
            )
            .unwrap();
        assert_ne!(code, 0, "a parameter value ran as a command in {c}");
    }

    // A host whose key changed: refused before anything runs there.
    let (victim, on) = placed.iter().find(|(_, h)| *h == "h3").unwrap();
    let pid = u.pid(victim).unwrap();
    lab.kill_sshd("h3");
    lab.new_host_key("h3");
    lab.start_sshd("h3");
    let out = u.cvl(&[
        "stop",
        "AcmeSuite.cvl",
        victim,
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "host {on} presented the ssh-ed25519 key {}",
            lab.fingerprint("h3")
        )),
        "{said}"
    );
    assert!(said.contains("cvl host trust h3 --fingerprint"), "{said}");
    assert!(
        alive(pid),
        "{victim} was stopped through a host with a changed key"
    );
    u.ok(&[
        "host",
        "trust",
        "h3",
        "--fingerprint",
        &lab.fingerprint("h3"),
    ]);
    u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert_eq!(u.pid(victim), Some(pid));

    // A host that stops answering mid-apply: its actions fail clearly, the
    // other hosts' finish, the next apply converges once it is back.
    u.stop_all();
    let apply = u.spawn(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    std::thread::sleep(Duration::from_millis(1500));
    lab.kill_sshd("h2");
    let out = apply.wait_with_output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("h2"),
        "the failure does not name the host: {said}"
    );
    let status = u.cvl(&["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(
        text(&status).contains("host h2 is unreachable at 198.18.0.12:22"),
        "{}",
        text(&status)
    );
    lab.start_sshd("h2");
    let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert!(said.contains("Applied"), "{said}");
    let status = u.cvl(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    assert_eq!(
        plan["actions"].as_array().unwrap().len(),
        0,
        "did not converge"
    );
    assert!(u.pids().values().all(Option::is_some));

    // A drained host: its VMs move to the others, data disks and all; its
    // folders go to its attic.
    let before = hosts_of(&u);
    let leaving: Vec<&String> = before
        .iter()
        .filter(|(_, h)| *h == "h3")
        .map(|(c, _)| c)
        .collect();
    assert!(leaving.contains(&&"d".to_string()), "{before:?}");
    let marks: Vec<(String, String)> = leaving
        .iter()
        .filter(|c| ["d", "l", "m", "p"].contains(&c.as_str()))
        .map(|c| (c.to_string(), format!("MOVED-{c}")))
        .collect();
    for (c, mark) in &marks {
        u.write_data(c, mark);
    }
    u.ok(&["host", "drain", "h3"]);
    let said = u.ok(&["plan", "AcmeSuite.cvl"]);
    assert!(said.contains("host h3 is drained"), "{said}");
    let said = u.ok(&[
        "apply",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    assert!(
        said.contains(&format!("Applied {} action(s)", leaving.len())),
        "{said}"
    );
    let after = hosts_of(&u);
    assert!(after.values().all(|h| h != "h3"), "{after:?}");
    for (c, mark) in &marks {
        assert_eq!(
            u.read_data(c, mark.len()),
            *mark,
            "{c} lost its data moving"
        );
    }
    let ips = ips_of(&u);
    for c in &leaving {
        let peer = after.iter().find(|(_, h)| **h != after[*c]).unwrap().0;
        if let Err(said) = u.ping(c, &ips[peer]) {
            panic!("{c} moved cannot reach {peer}: {said}");
        }
    }
    let attic = walk(&lab.root("h3").join("attic/AcmeSuite"));
    for c in &leaving {
        assert!(
            attic
                .iter()
                .any(|f| f.to_string_lossy().contains(&format!("/AcmeSuite/{c}-"))),
            "{c}'s folder is not in h3's attic: {attic:?}"
        );
    }
    let status = u.cvl(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    assert_eq!(
        plan["actions"].as_array().unwrap().len(),
        0,
        "the move did not converge"
    );

    // Agents cut off from their executor still removed their parameters.
    assert_no_params_left(&u);
    drop(lab);
}

/// The lab with h1 alone registered (2 GiB, 6 VMs): its folder, the lab,
/// and `cvl` in the controller's namespace.
fn one_host(tmp: &tempfile::TempDir) -> (PathBuf, Lab, Utility) {
    let dir = tmp.path().canonicalize().unwrap();
    let lab = Lab::new(&dir);
    let u = Utility {
        env_secrets: false,
        ..lab.utility(&["h1"])
    };
    lab.register(&u, "h1", 2048, 6);
    (dir, lab, u)
}

/// Three components of one appliance start at once on one SSH host from a
/// cold cache: the program (a `file://` repository on the controller) is
/// staged to the host once, and the three starts share it.
#[test]
fn three_components_of_one_appliance_start_together_on_a_host() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (_, _lab, u) = one_host(&tmp);
    let said = apply_replicas(&u);
    assert!(sent_files(&said) >= 4, "{said}");
    let placed = {
        let status: serde_json::Value =
            serde_json::from_str(&u.ok(&["status", "Replicas.cvl", "--format", "json"])).unwrap();
        status
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["host"].as_str().unwrap_or_default().to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(placed, BTreeSet::from(["h1".to_string()]));
}

/// A host that stops answering (its sshd killed; its QEMU still runs, as
/// in a network split) is reported unreachable once `--host-dead-after`
/// has passed: in the log, the history of the deployment with appliances
/// there, `/metrics` and the hosts page; nothing is moved or restarted, and
/// once it answers again that is reported too.
#[test]
fn a_silent_host_is_reported_unreachable_and_nothing_moves() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (dir, lab, u) = one_host(&tmp);
    u.publish("Replica", REPLICA);
    std::fs::write(
        u.dir.join("One.cvl"),
        REPLICAS
            .replace("Replicas", "One")
            .replace("  Replica b;\n  Replica c;\n", ""),
    )
    .unwrap();
    u.ok(&["apply", "One.cvl", "--auto-approve", "--stop-timeout", "10"]);
    let pid_file = lab.root("h1").join("vms/One/a/qemu.pid");
    let qemu: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let service = u.service(
        &[
            &WATCHFUL[..],
            &["--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
        ]
        .concat(),
        &dir.join("service.log"),
    );
    let event = |name: &str, limit: Duration| service.wait_for(name, |_| true, limit);
    let started = event("started", Duration::from_secs(30));
    let (http, metrics) = (
        started["http"].as_str().unwrap().to_string(),
        started["metrics"].as_str().unwrap().to_string(),
    );
    let get = |addr: &str, path: &str| get_in(&ns("ctl"), addr, path);
    // Answering: not reported.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !service.text().contains("host_unreachable"),
        "an answering host reported"
    );
    assert!(
        get(&metrics, "/metrics").contains("cvl_host_unreachable{host=\"h1\"} 0"),
        "{}",
        get(&metrics, "/metrics")
    );

    lab.kill_sshd("h1");
    let silent = Instant::now();
    let reported = event("host_unreachable", Duration::from_secs(60));
    eprintln!(
        "h1 silent to reported unreachable: {:.1} s (dead after 3 s, survey every 1 s)",
        silent.elapsed().as_secs_f64()
    );
    assert_eq!(reported["host"], "h1", "{reported}");
    assert_eq!(reported["appliances"]["One"][0], "a", "{reported}");
    let history = u.ok(&["history", "One"]);
    assert!(
        history.contains("host     One: unreachable by service"),
        "{history}"
    );
    let scraped = get(&metrics, "/metrics");
    assert!(
        scraped.contains("cvl_host_unreachable{host=\"h1\"} 1"),
        "{scraped}"
    );
    // The status page follows within a survey of its own (every second).
    let shown = Instant::now();
    loop {
        let hosts: serde_json::Value = serde_json::from_str(&get(&http, "/api/hosts")).unwrap();
        let h1 = hosts["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "h1")
            .unwrap()
            .clone();
        if let Some(silent) = h1["unreachable_for"].as_u64() {
            assert!(silent >= 3, "{hosts:#}");
            break;
        }
        assert!(
            shown.elapsed() < Duration::from_secs(10),
            "the status page does not show h1 unreachable: {hosts:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing moved, nothing restarted: its QEMU is the same process.
    assert!(alive(qemu), "h1's QEMU was stopped");

    lab.start_sshd("h1");
    let back = event("host_answers", Duration::from_secs(30));
    assert_eq!(back["host"], "h1", "{back}");
    assert!(
        get(&metrics, "/metrics").contains("cvl_host_unreachable{host=\"h1\"} 0"),
        "answers again"
    );
    let history = u.ok(&["history", "One"]);
    assert!(
        history.contains("host     One: answers again by service"),
        "{history}"
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        qemu.to_string(),
        "h1's appliance was restarted"
    );
    drop(service);
    u.ok(&["stop", "One.cvl", "--auto-approve", "--stop-timeout", "10"]);
}

/// A backup store on a second host (h2, registered as a store only: no
/// memory, no VMs) for an appliance on h1: each restore point is made on h1
/// and carried to h2 over the two pinned SSH connections, incremental after
/// the first; nothing stays on h1; verify and list read the store on h2; a
/// restore brings a point back byte for byte; a store host that presents
/// another key is refused before anything runs (no point made, the store
/// untouched), and once its new key is trusted the next backup follows the
/// point the restore put back (incremental) and restores byte for byte; the
/// service backs up into it by policy and prunes it.
/// `Solo`: one appliance `a` with a data disk of `size` (`ide0:1`, the
/// guest's /dev/vdb), applied.
/// One ping from the controller's namespace, waiting at most 2 s.
fn ping_once(address: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &ns("ctl"), "/bin/busybox", "ping"])
        .args(["-c", "1", "-W", "2", address])
        .output()
        .unwrap()
        .status
        .success()
}

fn apply_solo(u: &Utility, size: &str) {
    u.publish(
        "Alpha",
        &format!(
            "CVL = \"0.8\";\nAlpha extends VMAppliance {{\n  \
             datadisks = {{ device => \"ide0:1\", size => \"{size}\" }};\n  \
             vm = \"alpha.vmx\";\n}}\n"
        ),
    );
    std::fs::write(
        u.dir.join("Solo.cvl"),
        "import { url => \"http://virtualappliance.org/Alpha\", cvl => \"Alpha.cvl\" } Alpha;\n\
         Solo extends VANAppliance {\n  Alpha a;\n  vanIF = \"a.ethernet0\";\n}\n",
    )
    .unwrap();
    u.ok(&[
        "apply",
        "Solo.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
}

/// [`apply_solo`] with a data disk of 64 MiB and a public address on the
/// hosts' network (Solo exports `a`'s interface: routed through its host's
/// uplink, answered there by proxy ARP): that address.
fn apply_public_solo(u: &Utility) -> String {
    u.ok(&["pool", "set", "public", "198.18.0.100-198.18.0.150"]);
    apply_solo(u, "64M");
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "Solo.cvl", "--format", "json"])).unwrap();
    plan["allocations"]["a"]["interfaces"]["ethernet0"]["ip"]
        .as_str()
        .expect("a has an address")
        .to_string()
}

#[test]
fn backups_go_to_a_store_on_another_host_over_ssh() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (dir, lab, u) = one_host(&tmp);
    lab.register(&u, "h2", 0, 0);
    apply_solo(&u, "256M");
    let vm = lab.root("h1").join("vms/Solo/a");
    let in_guest = |script: &str| in_guest_of(&vm, script);
    let write = |at: u32, mib: u32| {
        in_guest(&format!(
            "dd if=/dev/urandom of=/dev/vdb bs=1048576 seek={at} count={mib} conv=fsync 2>/dev/null"
        ));
    };
    let sha = || in_guest("sha256sum /dev/vdb")[..64].to_string();
    let store_dir = dir.join("h2/store");
    let store = format!("ssh://h2{}", store_dir.display());
    let backup = || -> serde_json::Value {
        let out: serde_json::Value =
            serde_json::from_str(&u.ok(&["backup", "Solo", "--to", &store, "--format", "json"]))
                .unwrap();
        out[0]["backups"][0].clone()
    };
    let folder = store_dir.join("Solo/a/ide0-1");
    let outbox = lab.root("h1").join("outbox/Solo/a/ide0-1");
    let qcow2s = |d: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .map(|e| {
                e.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".qcow2"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };

    write(0, 4);
    let first = backup();
    assert_eq!(first["kind"], "full", "{first:#}");
    write(16, 4);
    let sending = Instant::now();
    let second = backup();
    let took = sending.elapsed();
    assert_eq!(second["kind"], "incremental", "{second:#}");
    assert_eq!(second["parent"], "0001", "{second:#}");
    let size = second["size"].as_u64().unwrap();
    assert!(
        ((4 << 20)..(6 << 20)).contains(&size),
        "an incremental backup of 4 MiB written: {second:#}"
    );
    eprintln!(
        "to a store on another host: full {} bytes, incremental {size} bytes in {:.2} s",
        first["size"],
        took.as_secs_f64()
    );
    let at_second = sha();
    assert_eq!(
        qcow2s(&folder),
        ["0001-full.qcow2", "0002-incremental.qcow2"]
    );
    assert!(
        qcow2s(&outbox).is_empty(),
        "left on h1: {:?}",
        qcow2s(&outbox)
    );
    assert!(
        !lab.root("h1")
            .join(store_dir.strip_prefix("/").unwrap())
            .exists(),
        "a store folder made on h1"
    );
    // The store's own host reads it back through its chain.
    let out = Command::new("qemu-img")
        .args(["compare", "-q"])
        .arg(folder.join("0002-incremental.qcow2"))
        .arg(folder.join("0001-full.qcow2"))
        .status()
        .unwrap();
    assert_eq!(
        out.code(),
        Some(1),
        "0002 differs from 0001 by what was written"
    );
    let said = u.ok(&["backup", "verify", "Solo", "--to", &store]);
    assert!(said.contains("all 2 restore points are whole"), "{said}");

    // Put back from h2, byte for byte.
    write(0, 8);
    assert_ne!(sha(), at_second);
    let restore = |extra: &[&str]| -> String {
        let mut args = vec!["restore", "Solo.cvl", "a", "--from", &store];
        args.extend_from_slice(extra);
        args.extend(["--auto-approve", "--stop-timeout", "10"]);
        u.ok(&args)
    };
    let said = restore(&["--id", "0002"]);
    assert!(said.contains("put back to restore point 0002"), "{said}");
    assert_eq!(sha(), at_second, "restored data differs");
    assert!(
        !lab.root("h1").join("incoming/points").exists()
            || walk(&lab.root("h1").join("incoming/points")).is_empty(),
        "the chain carried to h1 is left there"
    );

    // h2 reinstalled (another key): refused before anything runs.
    let manifest = std::fs::read(folder.join("manifest.json")).unwrap();
    lab.kill_sshd("h2");
    lab.new_host_key("h2");
    lab.start_sshd("h2");
    write(40, 1);
    let out = u.cvl(&["backup", "Solo", "--to", &store]);
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("host h2 presented the") && said.contains("Nothing was run there"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(folder.join("manifest.json")).unwrap(),
        manifest,
        "the store changed"
    );
    assert!(
        qcow2s(&outbox).is_empty(),
        "a point made for a refused store"
    );
    u.ok(&[
        "host",
        "trust",
        "h2",
        "--fingerprint",
        &lab.fingerprint("h2"),
    ]);
    let third = backup();
    assert_eq!(third["kind"], "incremental", "{third:#}");
    assert_eq!(third["parent"], "0002", "{third:#}");
    let at_third = sha();
    write(0, 2);
    let said = restore(&[]);
    assert!(said.contains("put back to restore point 0003"), "{said}");
    assert_eq!(
        sha(),
        at_third,
        "0003, incremental after a restore, differs"
    );
    let listed: serde_json::Value = serde_json::from_str(
        &u.ok(&["backup", "list", "Solo", "--to", &store, "--format", "json"]),
    )
    .unwrap();
    assert_eq!(listed["a"].as_array().map(Vec::len), Some(3), "{listed:#}");

    // The service backs up by policy into the same store, and prunes it.
    u.ok(&[
        "policy",
        "set",
        "Solo",
        "--backup-every",
        "2s",
        "--backup-to",
        &store,
        "--keep-last",
        "2",
    ]);
    let mut service = u
        .command(&[
            "utility",
            "run",
            "--interval",
            "1s",
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let begun = Instant::now();
    let by_service = loop {
        let history: serde_json::Value =
            serde_json::from_str(&u.ok(&["history", "Solo", "--format", "json"])).unwrap();
        let backups: Vec<serde_json::Value> = history["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "backup" && e["actor"] == "service")
            .cloned()
            .collect();
        if backups.len() >= 2 || begun.elapsed() > Duration::from_secs(90) {
            break backups;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = service.kill();
    let _ = service.wait();
    assert!(by_service.len() >= 2, "{by_service:#?}");
    for e in &by_service {
        assert_eq!(e["outcome"], "ok", "{e:#}");
    }
    assert!(
        by_service
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("(incremental,")),
        "{by_service:#?}"
    );
    let listed: serde_json::Value = serde_json::from_str(
        &u.ok(&["backup", "list", "Solo", "--to", &store, "--format", "json"]),
    )
    .unwrap();
    let kept = listed["a"].as_array().unwrap().len();
    assert!((2..=3).contains(&kept), "{listed:#}");
    let said = u.ok(&["backup", "verify", "Solo", "--to", &store]);
    assert!(said.contains("restore points are whole"), "{said}");
}

/// A host that dies (its namespace's processes killed: sshd and QEMU) while
/// the service runs: reported unreachable; without a fence command nothing
/// moves (the service says so); with one that fails, nothing moves; with
/// one that confirms its QEMU is gone, it is fenced and its appliance is
/// recovered on the other host from its last backup (a marker written
/// before that backup is there, one written after is not), with RPO and
/// RTO in the history. When it answers again its old folder goes to its
/// attic, and `cvl host rejoin` puts it back into placement.
#[test]
fn a_dead_host_is_fenced_and_its_appliance_recovered_from_its_backup() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (dir, lab, u) = one_host(&tmp);
    let public = apply_public_solo(&u);
    assert!(public.starts_with("198.18.0.1"), "{public}");
    // The controller's neighbour entry for it: h1's MAC.
    assert!(
        ping_once(&public),
        "a's public address {public} does not answer"
    );
    // Another deployment of it, never backed up.
    std::fs::write(
        u.dir.join("Bare.cvl"),
        std::fs::read_to_string(u.dir.join("Solo.cvl"))
            .unwrap()
            .replace("Solo extends", "Bare extends"),
    )
    .unwrap();
    u.ok(&[
        "apply",
        "Bare.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    // h2 joins after: `a` is on h1, and h2 holds its backups and takes it.
    lab.register(&u, "h2", 2048, 6);
    let in_guest =
        |host: &str, script: &str| in_guest_of(&lab.root(host).join("vms/Solo/a"), script);
    let mark = |host: &str, mib: u32, text: &str| {
        in_guest(
            host,
            &format!("printf {text} | dd of=/dev/vdb bs=1048576 seek={mib} conv=fsync 2>/dev/null"),
        );
    };
    let read = |host: &str, mib: u32| {
        in_guest(
            host,
            &format!("dd if=/dev/vdb bs=1048576 skip={mib} count=1 2>/dev/null | head -c 10"),
        )
    };
    let store = format!("ssh://h2{}", dir.join("h2/store").display());
    // The service backs `a` up every 20 s into a store on h2.
    u.ok(&[
        "policy",
        "set",
        "Solo",
        "--backup-every",
        "20s",
        "--backup-to",
        &store,
    ]);
    mark("h1", 0, "CVL-BEFORE");

    let service = u.service(&WATCHFUL, &dir.join("service.log"));
    let wait_for = |name: &str, what: &dyn Fn(&serde_json::Value) -> bool, limit: Duration| {
        service.wait_for(name, what, limit)
    };
    wait_for("started", &|_| true, Duration::from_secs(30));
    wait_for(
        "backup",
        &|e| e["deployment"] == "Solo" && e["outcome"] == "ok",
        Duration::from_secs(90),
    );
    // Written after the last backup: lost with h1, as expected.
    mark("h1", 8, "CVL-AFTER");
    let on_h2 = lab.root("h2").join("vms/Solo/a");

    // h1 dies: every process of its namespace (sshd, the agent, QEMU).
    let died = lab.kill_host("h1");
    wait_for(
        "host_unreachable",
        &|e| e["host"] == "h1",
        Duration::from_secs(60),
    );
    let waiting = wait_for(
        "host_not_fenced",
        &|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("no fence command")
        },
        Duration::from_secs(30),
    );
    eprintln!("without a fence command: {}", waiting["message"]);
    std::thread::sleep(Duration::from_secs(4));
    assert!(!on_h2.exists(), "a started on h2 with h1 not fenced");

    u.ok(&[
        "host",
        "set",
        "h1",
        "--fence",
        "echo the PDU said no >&2; exit 3",
    ]);
    let failed = wait_for(
        "host_not_fenced",
        &|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("exit status: 3")
        },
        Duration::from_secs(30),
    );
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("the PDU said no"),
        "{failed}"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !on_h2.exists(),
        "a started on h2 though h1's fencing failed"
    );

    // The fence command confirms h1's processes are gone.
    u.ok(&[
        "host",
        "set",
        "h1",
        "--fence",
        &format!("test -z \"$(ip netns pids {})\"", ns("h1")),
    ]);
    wait_for(
        "host_fenced",
        &|e| e["host"] == "h1",
        Duration::from_secs(30),
    );
    let fenced_after = died.elapsed();
    let started = Instant::now();
    loop {
        let history = u.ok(&["history", "Solo"]);
        if history.contains("recovered on h2") && history.contains("RTO") {
            eprintln!("{history}");
            assert!(history.contains("fenced by service"), "{history}");
            assert!(history.contains("RPO"), "{history}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not recovered:\n{history}\n{}",
            service.text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "h1 died; fenced after {:.1} s (dead after 3 s); a ready on h2 after {:.1} s",
        fenced_after.as_secs_f64(),
        died.elapsed().as_secs_f64()
    );
    assert_eq!(read("h2", 0), "CVL-BEFORE", "the backed-up marker is lost");
    assert_ne!(read("h2", 8), "CVL-AFTER", "data from after the backup");
    // Its public address answers from h2 at once: h2 announced it
    // (gratuitous ARP), so the controller did not wait for its entry for
    // h1's MAC to fail first (5 s of delay and 3 s of probes at least).
    let t = Instant::now();
    assert!(
        ping_once(&public),
        "a's public address {public} does not answer from h2 right after its recovery"
    );
    eprintln!(
        "a's public address answered from h2 {:.2} s after a was ready",
        t.elapsed().as_secs_f64()
    );
    let list = u.ok(&["host", "list"]);
    assert!(list.contains("fenced"), "{list}");
    // Without a backup, not started empty: a person's choice.
    let bare = loop {
        let history = u.ok(&["history", "Bare"]);
        if history.contains("it is not started empty") {
            break history;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{history}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(bare.contains("Bare has no backup store"), "{bare}");
    assert!(!lab.root("h2").join("vms/Bare/a/qemu.pid").exists());
    let said = u.ok(&[
        "apply",
        "Bare.cvl",
        "--auto-approve",
        "--accept-empty",
        "a",
        "--lock-timeout",
        "2m",
        "--stop-timeout",
        "10",
    ]);
    assert!(said.contains("started with empty data disks"), "{said}");
    assert!(lab.root("h2").join("vms/Bare/a/qemu.pid").exists());

    // h1 comes back with its old folder: it starts nothing, its folder goes
    // to its attic, and it rejoins.
    lab.start_sshd("h1");
    wait_for(
        "host_retired",
        &|e| e["host"] == "h1",
        Duration::from_secs(60),
    );
    for d in ["Solo", "Bare"] {
        assert!(
            !lab.root("h1").join("vms").join(d).join("a").exists(),
            "h1 keeps its old folder of {d}/a"
        );
    }
    assert!(lab.root("h1").join("attic/Solo").exists());
    drop(service);
    let said = u.ok(&["host", "rejoin", "h1"]);
    assert!(said.contains("h1 takes VMs again"), "{said}");
    assert!(!u.ok(&["host", "list"]).contains("fenced"));
    u.ok(&["stop", "Solo.cvl", "--auto-approve", "--stop-timeout", "10"]);
    u.ok(&["stop", "Bare.cvl", "--auto-approve", "--stop-timeout", "10"]);
}

/// The failures issue's scenario with the real suite: spread over the
/// three hosts and backed up every 20 s to a store on another host, the
/// host that serves the page dies (every process of its namespace killed:
/// sshd, the host agent, its QEMUs). The service reports it unreachable,
/// fences it with a command that confirms its processes are gone, and
/// starts its appliances on the others with their last backup's data; the
/// page is served through the firewall again, and history says each
/// appliance's RPO and RTO.
#[test]
fn the_real_suite_comes_back_from_the_death_of_a_host() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let built = real_appliances();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let lab = Lab::new(&dir);
    let u = lab.utility(&HOSTS.map(|(h, _)| h));
    for name in ["Firewall", "DHCP", "DNS", "LDAP", "Mail", "Plone"] {
        u.publish_built(name, &built[name]);
    }
    u.publish("GroupwareSuite", &suite_text("GroupwareSuite"));
    std::fs::write(u.dir.join("AcmeSuite.cvl"), suite_text("AcmeSuite")).unwrap();
    for (host, _) in HOSTS {
        lab.register(&u, host, 1024, 6);
    }
    u.ok(&["pool", "set", "public", "198.18.0.100-198.18.0.150"]);
    let started = Instant::now();
    let said = u.ok(&[
        "apply",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    assert!(said.contains("Applied 6 action(s) to AcmeSuite"), "{said}");
    eprintln!(
        "apply of the real suite on three hosts: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let placed = hosts_of(&u);
    eprintln!("placed: {placed:?}");
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    let public = plan["allocations"]["f"]["interfaces"]["ethernet1"]["ip"]
        .as_str()
        .expect("f has a public interface")
        .to_string();
    // The page, through the firewall, from the hosts' network (a page
    // answered within `limit`).
    let page = |limit: Duration| -> String {
        let t = Instant::now();
        loop {
            match http_get_in(&ns("ctl"), &public, "/") {
                Ok(page) => return page,
                Err(e) => assert!(t.elapsed() < limit, "no page within {limit:?}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let before = page(Duration::from_secs(30));
    assert!(before.contains("acme.org"), "{before}");

    // The host that serves the page dies; the store is on another one.
    let dead = placed["p"].clone();
    let on_dead: Vec<&str> = placed
        .iter()
        .filter(|(_, h)| **h == dead)
        .map(|(c, _)| c.as_str())
        .collect();
    let store_host = HOSTS.iter().map(|(h, _)| *h).find(|h| *h != dead).unwrap();
    let store = format!(
        "ssh://{store_host}{}",
        dir.join(store_host).join("store").display()
    );
    u.ok(&[
        "policy",
        "set",
        "AcmeSuite",
        "--backup-every",
        "20s",
        "--backup-to",
        &store,
    ]);
    u.ok(&[
        "host",
        "set",
        &dead,
        "--fence",
        &format!("test -z \"$(ip netns pids {})\"", ns(&dead)),
    ]);
    u.exec_ok("p", &["sh", "-c", "echo kept > /data/cvl-before && sync"]);
    let service = u.service(&WATCHFUL, &dir.join("service.log"));
    service.wait_for("started", |_| true, Duration::from_secs(30));
    // Every appliance with data on the dead host backed up once; then p
    // again, and right after that backup a marker it cannot hold.
    let backups_of = |c: &str| {
        service
            .events("backup")
            .iter()
            .filter(|e| e["component"] == c && e["outcome"] == "ok")
            .count()
    };
    let with_data: Vec<&str> = on_dead
        .iter()
        .copied()
        .filter(|c| ["d", "l", "m", "p"].contains(c))
        .collect();
    let t = Instant::now();
    while with_data.iter().any(|c| backups_of(c) == 0) {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no backup of each of {with_data:?}:\n{}",
            service.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = backups_of("p");
    while backups_of("p") == seen {
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "p is not backed up again:\n{}",
            service.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    u.exec_ok("p", &["sh", "-c", "echo lost > /data/cvl-after && sync"]);
    let died = lab.kill_host(&dead);
    service.wait_for(
        "host_unreachable",
        |e| e["host"] == dead.as_str(),
        Duration::from_secs(60),
    );
    let unreachable_s = died.elapsed().as_secs_f64();
    service.wait_for(
        "host_fenced",
        |e| e["host"] == dead.as_str(),
        Duration::from_secs(60),
    );
    let fenced_s = died.elapsed().as_secs_f64();
    // Each appliance of the dead host: its recovery (done), with its RTO.
    let recovery = |history: &serde_json::Value, c: &str| -> Option<String> {
        history["entries"].as_array()?.iter().find_map(|e| {
            let detail = e["detail"].as_str()?;
            (e["component"] == c && e["outcome"] == "done" && detail.contains("recovered on"))
                .then(|| detail.to_string())
        })
    };
    let history = loop {
        let history: serde_json::Value =
            serde_json::from_str(&u.ok(&["history", "AcmeSuite", "--format", "json"])).unwrap();
        if on_dead.iter().all(|c| recovery(&history, c).is_some()) {
            break history;
        }
        assert!(
            died.elapsed() < Duration::from_secs(300),
            "{on_dead:?} not recovered from {dead}:\n{history:#}\n{}",
            service.text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let recovered_s = died.elapsed().as_secs_f64();
    let after = page(Duration::from_secs(60));
    let served_s = died.elapsed().as_secs_f64();
    assert!(after.contains("acme.org"), "{after}");
    for c in &on_dead {
        let detail = recovery(&history, c).unwrap();
        eprintln!("  {c}: {detail}");
        assert!(detail.contains("RTO"), "{detail}");
    }
    assert!(
        recovery(&history, "p").unwrap().contains("RPO"),
        "{history:#}"
    );
    let moved = hosts_of(&u);
    for c in &on_dead {
        assert_ne!(moved[*c], dead, "{c} is still placed on {dead}");
    }
    assert_eq!(u.exec_ok("p", &["cat", "/data/cvl-before"]).trim(), "kept");
    let (code, _, _) = u.exec("p", &["test", "-e", "/data/cvl-after"]);
    assert_ne!(code, 0, "p holds data written after its last backup");
    eprintln!(
        "{dead} died (it ran {on_dead:?}): unreachable after {unreachable_s:.1} s, fenced after \
         {fenced_s:.1} s, all recovered after {recovered_s:.1} s, the page served through the \
         firewall again after {served_s:.1} s"
    );
    drop(service);
    u.ok(&[
        "stop",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
}

/// What `script` prints in Solo's `a` on `root`'s host (it must succeed).
fn in_solo(root: &std::path::Path, script: &str) -> String {
    in_guest_of(&root.join("vms/Solo/a"), script)
}

/// Whether a QEMU of Solo's `a` runs in `host`'s namespace.
fn runs_solo(host: &str) -> bool {
    sh(&["ip", "netns", "pids", &ns(host)])
        .split_whitespace()
        .any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("cvl:Solo/a"))
        })
}

/// `cvl host drain h1 --live`, then `cvl apply`: Solo's `a`, serving a page
/// on its public address (busybox httpd in the guest), moves to h2 while it
/// runs. A client outside fetches the page in a loop throughout, every
/// fetch answered; a connection opened before the move is answered after
/// it; the guest's uptime goes on, a value in its memory and its data
/// disk's content are the same on h2; h1 keeps no QEMU and no folder of
/// it. Then `cvl move a --to h1` (live by default; `--offline` planned
/// offline), with h1's arriving QEMU killed mid-migration: the move fails,
/// `a` runs on h2 as before, and h1 keeps nothing of it. Then a move given
/// one second (`--move-timeout 1s`): cancelled, `a` still on h2; with
/// `--offline-fallback`: moved offline, saying why, its data disk carried.
#[test]
fn a_running_appliance_moves_live_to_another_host() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (dir, lab, u) = one_host(&tmp);
    let public = apply_public_solo(&u);
    lab.register(&u, "h2", 2048, 6);
    let (h1, h2) = (lab.root("h1"), lab.root("h2"));
    let uptime = |s: &str| -> f64 { s.split_whitespace().next().unwrap().parse().unwrap() };
    let before = in_solo(
        &h1,
        "mkdir -p /tmp/www && echo CVL-PAGE > /tmp/www/index.html && \
         busybox httpd -p 80 -h /tmp/www && echo CVL-MEM-7 > /dev/shm/value && \
         printf CVL-DISK | dd of=/dev/vdb bs=1048576 seek=5 conv=fsync 2>/dev/null && \
         cat /proc/uptime",
    );
    let page = http_get_in(&ns("ctl"), &public, "/").unwrap();
    assert!(page.contains("CVL-PAGE"), "{page}");
    // A restore point before the move: the next one follows the data
    // disk's dirty bitmap, which the move carries.
    let store = format!("ssh://h2{}", dir.join("h2/store").display());
    let backup = || -> serde_json::Value {
        let out: serde_json::Value =
            serde_json::from_str(&u.ok(&["backup", "Solo", "--to", &store, "--format", "json"]))
                .unwrap();
        out[0]["backups"][0].clone()
    };
    let first = backup();
    assert_eq!(first["kind"], "full", "{first:#}");

    // A connection opened now, its request sent after the move.
    let (send, sent) = std::sync::mpsc::channel::<()>();
    let held = {
        let (ns, public) = (ns("ctl"), public.clone());
        std::thread::spawn(move || {
            in_netns(&ns, move || {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(format!("{public}:80")).unwrap();
                sent.recv().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                write!(s, "GET / HTTP/1.0\r\nHost: a\r\n\r\n").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).map(|_| out)
            })
        })
    };
    // The client outside: a fetch every 100 ms until told to stop; each
    // one's time and outcome.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (stop, public) = (stop.clone(), public.clone());
        std::thread::spawn(move || {
            let mut fetches = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let got = http_get_in(&ns("ctl"), &public, "/");
                fetches.push((t.elapsed(), got.map(|p| p.contains("CVL-PAGE"))));
                std::thread::sleep(Duration::from_millis(100));
            }
            fetches
        })
    };

    // The service runs throughout, asking the hosts every second: a move
    // is not a crash to restart (the old host runs no QEMU of it before the
    // state records the new one).
    let service = u.service(
        &[
            &WATCHFUL[..],
            &["--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
        ]
        .concat(),
        &dir.join("service.log"),
    );
    let listening = service.wait_for("started", |_| true, Duration::from_secs(30));
    u.ok(&["host", "drain", "h1", "--live"]);
    let shown = u.ok(&["plan", "Solo.cvl"]);
    assert!(
        shown.contains("(live: the host is drained live)"),
        "the plan does not say the move is live:\n{shown}"
    );
    let started = Instant::now();
    let said = u.ok(&["apply", "Solo.cvl", "--auto-approve"]);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let fetches = client.join().unwrap();
    send.send(()).unwrap();
    let answered = held.join().unwrap();
    eprintln!("{said}");
    assert!(said.contains("moved live from h1"), "{said}");
    let failed: Vec<_> = fetches.iter().filter(|(_, r)| r != &Ok(true)).collect();
    let longest = fetches.iter().map(|(t, _)| *t).max().unwrap_or_default();
    eprintln!(
        "live move: apply {:.1} s; {} fetches during it, {} failed, the longest {} ms",
        took.as_secs_f64(),
        fetches.len(),
        failed.len(),
        longest.as_millis()
    );
    let network = || {
        format!(
            "the outside's neighbours: {}h1's routes: {}h2's routes: {}h2's neighbours: {}\
             h2's links: {}",
            sh(&["ip", "-n", &ns("ctl"), "neigh"]),
            sh(&["ip", "-n", &ns("h1"), "route"]),
            sh(&["ip", "-n", &ns("h2"), "route"]),
            sh(&["ip", "-n", &ns("h2"), "neigh"]),
            sh(&["ip", "-n", &ns("h2"), "-br", "link"]),
        ) + &Agent::connect(&h2.join("vms/Solo/a/qga.sock"), Duration::from_secs(5))
            .and_then(|mut a| {
                a.exec(
                    &[
                        "/bin/sh",
                        "-c",
                        "cat /proc/uptime; ip addr; ip neigh; netstat -tn",
                    ],
                    Duration::from_secs(20),
                )
            })
            .map(|(_, out)| String::from_utf8_lossy(&out).into_owned())
            .unwrap_or_else(|e| format!("a's guest agent on h2: {e}"))
            + &format!(
                "\nh2's bridge ports: {}h2's QEMU: {}\nthe end of a's console on h2:\n{}",
                sh(&[
                    "ip",
                    "-n",
                    &ns("h2"),
                    "-br",
                    "link",
                    "show",
                    "master",
                    "cvlpub"
                ]),
                cvl_executor::qmp::Qmp::connect(
                    &h2.join("vms/Solo/a/qmp.sock"),
                    Duration::from_secs(5)
                )
                .and_then(|mut q| q.execute(&cvl_executor::qmp::cmd::QueryStatus {}))
                .map_or_else(|e| e.to_string(), |s| format!("{s:?}")),
                std::fs::read(h2.join("vms/Solo/a/console.log")).map_or_else(
                    |e| e.to_string(),
                    |c| String::from_utf8_lossy(&c[c.len().saturating_sub(4000)..]).into_owned()
                )
            )
    };
    assert!(
        failed.len() <= 1,
        "fetches failed during the move: {failed:?}\n{}",
        network()
    );
    assert!(
        answered.as_ref().is_ok_and(|a| a.contains("CVL-PAGE")),
        "the connection opened before the move was not answered after it: {answered:?}\n{}",
        network()
    );
    // Recorded on h2: nothing more to do. The history has the move, with
    // what it carried and how long the guest paused.
    let again = u.ok(&["plan", "Solo.cvl"]);
    assert!(again.contains("No changes"), "{again}");
    let history = u.ok(&["history", "Solo"]);
    assert!(
        history.contains("moved live from h1") && history.contains("MB in"),
        "{history}"
    );
    assert!(history.contains("the guest paused"), "{history}");
    assert!(runs_solo("h2") && !runs_solo("h1"));
    assert!(!h1.join("vms/Solo/a").exists(), "h1 keeps a's folder");
    let after = in_solo(
        &h2,
        "cat /proc/uptime /dev/shm/value && \
         dd if=/dev/vdb bs=1048576 skip=5 count=1 2>/dev/null | head -c 8",
    );
    assert!(
        uptime(&after) > uptime(&before),
        "the guest rebooted: uptime {before} then {after}"
    );
    assert!(after.contains("CVL-MEM-7"), "memory lost: {after}");
    assert!(after.ends_with("CVL-DISK"), "data disk lost: {after}");
    // The first backup on h2 is incremental from the point made on h1: the
    // disk's dirty bitmap came with it (without it, it would be full).
    in_solo(
        &h2,
        "printf CVL-MOVED | dd of=/dev/vdb bs=1048576 seek=9 conv=fsync 2>/dev/null; echo",
    );
    let second = backup();
    assert_eq!(
        second["kind"],
        "incremental",
        "{second:#}\nh2's drives: {}",
        cvl_executor::qmp::Qmp::connect(&h2.join("vms/Solo/a/qmp.sock"), Duration::from_secs(5))
            .and_then(|mut q| q.execute(&cvl_executor::qmp::cmd::QueryBlock {}))
            .map_or_else(|e| e.to_string(), |b| format!("{b:#?}"))
    );
    assert_eq!(second["parent"], first["id"], "{second:#}");

    // A guest that does not live on after it arrived (paused on h1 the
    // moment h1 took it over, as a guest whose memory arrived damaged stops
    // answering): the move is undone, and `a` goes on on h2 from where it
    // paused there, served there again.
    u.ok(&["host", "drain", "h1", "--undo"]);
    // A move that failed: said, `a` still on h2, nothing of it on h1.
    let undone_on_h2 = |said: &str| {
        assert!(said.contains("it still runs on h2"), "{said}");
        assert!(runs_solo("h2") && !runs_solo("h1"));
        assert!(!h1.join("vms/Solo/a").exists(), "h1 keeps a's folder");
    };
    let awaited = h1.join("vms/Solo/a/migrating");
    let apply = u.spawn(&["move", "Solo.cvl", "a", "--to", "h1", "--auto-approve"]);
    let t = Instant::now();
    for arrived in [false, true] {
        while awaited.exists() == arrived {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "h1 never {} a",
                if arrived { "took over" } else { "awaited" }
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    cvl_executor::qmp::Qmp::connect(&h1.join("vms/Solo/a/qmp.sock"), Duration::from_secs(5))
        .and_then(|mut q| q.execute(&cvl_executor::qmp::cmd::Stop {}))
        .expect("h1's QEMU paused");
    let out = apply.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    eprintln!("{said}");
    assert!(!out.status.success(), "the move succeeded: {said}");
    assert!(
        said.contains("answered on h2 before the move but not on h1"),
        "{said}"
    );
    undone_on_h2(&said);
    let resumed = in_solo(&h2, "cat /proc/uptime /dev/shm/value");
    assert!(uptime(&resumed) > uptime(&after), "{after} then {resumed}");
    assert!(resumed.contains("CVL-MEM-7"), "{resumed}");
    let t = Instant::now();
    while !http_get_in(&ns("ctl"), &public, "/").is_ok_and(|p| p.contains("CVL-PAGE")) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a is not served from h2 again:\n{}",
            network()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "undone after a guest that did not live on: served from h2 again {} ms later",
        t.elapsed().as_millis()
    );

    // Back to h1 by `cvl move` (live, the default), the guest writing to
    // its memory all the while, and h1's arriving QEMU killed once the
    // guest's memory is reaching it.
    in_solo(
        &h2,
        "(while :; do dd if=/dev/urandom of=/dev/shm/busy bs=1048576 count=16 \
         2>/dev/null; done) </dev/null >/dev/null 2>&1 & echo busy",
    );
    let how = |extra: &[&str]| -> serde_json::Value {
        let args = [
            &["move", "Solo.cvl", "a", "--to", "h1", "--format", "json"],
            extra,
        ]
        .concat();
        let plan: serde_json::Value = serde_json::from_str(&u.ok(&args)).unwrap();
        assert_eq!(plan["actions"].as_array().unwrap().len(), 1, "{plan:#}");
        assert_eq!(
            plan["actions"][0]["reason"],
            "asked (`cvl move`): from h2 to h1"
        );
        plan["actions"][0]["how"].clone()
    };
    assert_eq!(how(&[])["live"], true);
    let offline = how(&["--offline"]);
    assert_eq!(offline["live"], false);
    assert_eq!(offline["because"], "asked offline (`cvl move --offline`)");
    let apply = u.spawn(&["move", "Solo.cvl", "a", "--to", "h1", "--auto-approve"]);
    let pidfile = h1.join("vms/Solo/a/qemu.pid");
    let rss = |pid: i32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let t = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "h1 never started a");
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(200));
    let waiting = rss(pid);
    while rss(pid) < waiting + 16 * 1024 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no memory reached h1's QEMU ({} kB, {waiting} kB waiting)",
            rss(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "h1's QEMU killed with {} kB resident ({waiting} kB waiting)",
        rss(pid)
    );
    // SAFETY: the QEMU of the test's own lab host.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = apply.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    eprintln!("{said}");
    assert!(
        !out.status.success(),
        "the move succeeded with its destination killed"
    );
    assert!(said.contains("it still runs on h2"), "{said}");
    // Still recorded on h2: nothing to do.
    let again = u.ok(&["plan", "Solo.cvl"]);
    assert!(again.contains("No changes"), "{again}");
    assert!(runs_solo("h2") && !runs_solo("h1"));
    assert!(!h1.join("vms/Solo/a").exists(), "h1 keeps a's folder");
    let still = in_solo(&h2, "cat /proc/uptime /dev/shm/value");
    assert!(uptime(&still) > uptime(&after), "{after} then {still}");
    assert!(still.contains("CVL-MEM-7"), "{still}");
    assert!(http_get_in(&ns("ctl"), &public, "/")
        .unwrap()
        .contains("CVL-PAGE"));

    // Too slow: given a second, the live move is cancelled and `a` runs on
    // h2 as before; with --offline-fallback it is moved offline instead,
    // saying why, its data disk carried.
    let slow = [
        "move",
        "Solo.cvl",
        "a",
        "--to",
        "h1",
        "--auto-approve",
        "--move-timeout",
        "1s",
    ];
    let out = u.cvl(&slow);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("the live move did not finish within 1s"),
        "{said}"
    );
    undone_on_h2(&said);
    eprintln!("{said}");
    let said = u.ok(&[&slow[..], &["--offline-fallback"]].concat());
    eprintln!("{said}");
    assert!(said.contains("so moved offline instead"), "{said}");
    assert!(runs_solo("h1") && !runs_solo("h2"));
    assert!(!h2.join("vms/Solo/a").exists(), "h2 keeps a's folder");
    let history = u.ok(&["history", "Solo"]);
    assert!(history.contains("moved offline instead"), "{history}");
    let kept = in_solo(
        &h1,
        "dd if=/dev/vdb bs=1048576 skip=5 count=1 2>/dev/null | head -c 8",
    );
    assert_eq!(kept, "CVL-DISK", "the data disk was not carried");
    let there = u.ok(&["move", "Solo.cvl", "a", "--to", "h1"]);
    assert!(
        there.contains("a is on h1 already: nothing to move."),
        "{there}"
    );

    // The two moves that were done, with their figures: in the history
    // (JSON), on the status page's hosts page and in /metrics.
    let history: serde_json::Value =
        serde_json::from_str(&u.ok(&["history", "Solo", "--format", "json"])).unwrap();
    let moves: Vec<&serde_json::Value> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("moved"))
        .collect();
    assert_eq!(moves.len(), 2, "{history:#}");
    let (live, offline) = (moves[0], moves[1]);
    assert_eq!(
        (&live["from"], &live["to"], &live["live"]),
        (&"h1".into(), &"h2".into(), &true.into()),
        "{live}"
    );
    assert!(live["bytes"].as_u64().unwrap() > 50_000_000, "{live}");
    assert!(live["downtime_ms"].as_u64().unwrap() < 5_000, "{live}");
    assert!(live["millis"].as_u64().unwrap() > 0, "{live}");
    assert_eq!(
        (&offline["from"], &offline["to"], &offline["live"]),
        (&"h2".into(), &"h1".into(), &false.into()),
        "{offline}"
    );
    assert!(offline.get("downtime_ms").is_none(), "{offline}");
    // The service, surveying every second through all of it, restarted
    // nothing (it only reported the drain's move as a person's to do), and
    // a runs on h1 only.
    assert!(
        !history["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "service" && e["action"] != "report"),
        "the service acted during the moves: {history:#}\n{}",
        service.text()
    );
    assert!(runs_solo("h1") && !runs_solo("h2"));
    let (http, metrics) = (
        listening["http"].as_str().unwrap().to_string(),
        listening["metrics"].as_str().unwrap().to_string(),
    );
    // The page's snapshot follows the state within seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let hosts_page = loop {
        let page = get_in(&ns("ctl"), &http, "/hosts");
        if page.matches("data-move=\"Solo/a\"").count() == 2 || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(hosts_page.contains("Recent moves"), "{hosts_page}");
    assert_eq!(
        hosts_page.matches("data-move=\"Solo/a\"").count(),
        2,
        "{hosts_page}"
    );
    let scraped = get_in(&ns("ctl"), &metrics, "/metrics");
    for line in [
        "cvl_moves{how=\"live\"} 1",
        "cvl_moves{how=\"offline\"} 1",
        "cvl_move_last_duration_milliseconds{appliance=\"Solo/a\"}",
    ] {
        assert!(scraped.contains(line), "{line}:\n{scraped}");
    }
    eprintln!(
        "the moves' metrics:\n{}",
        scraped
            .lines()
            .filter(|l| l.starts_with("cvl_move"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A guest writing to its memory (a MiB of new random data every 200 ms
    // or so) moves live too, within the default limits: auto-converge and
    // the pause limit bring it over. Its figures, for the report.
    in_solo(
        &h1,
        "(while :; do dd if=/dev/urandom of=/dev/shm/busy bs=65536 count=16 2>/dev/null; \
         sleep 0.2; done) </dev/null >/dev/null 2>&1 & echo busy",
    );
    let said = u.ok(&["move", "Solo.cvl", "a", "--to", "h2", "--auto-approve"]);
    eprintln!("a guest writing to its memory, moved live:\n{said}");
    assert!(said.contains("moved live from h1"), "{said}");
    assert!(runs_solo("h2") && !runs_solo("h1"));
    // Its writer (started on h1, after the offline move's boot) goes on.
    let busy = in_solo(&h2, "ls /dev/shm; ps");
    assert!(
        busy.contains("busy") && busy.contains("dd if=/dev/urandom"),
        "{busy}"
    );
}

/// `cvl host drain h1 --live` of a VAN of three (Replicas: a, b, c on h1):
/// the next apply moves the three live to h2 (their guests go on: uptimes
/// grow), one at a time, h1 keeps none of them, and the VAN's members
/// still reach each other there.
#[test]
fn a_van_of_three_is_drained_live() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, lab, u) = one_host(&tmp);
    apply_replicas(&u);
    lab.register(&u, "h2", 2048, 6);
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "Replicas.cvl", "--format", "json"])).unwrap();
    let ip = |c: &str| {
        plan["allocations"][c]["interfaces"]["ethernet0"]["ip"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let uptimes = |root: &std::path::Path| -> Vec<f64> {
        ["a", "b", "c"]
            .iter()
            .map(|c| {
                in_guest_of(&root.join("vms/Replicas").join(c), "cat /proc/uptime")
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    for (from, to) in [("b", "c"), ("c", "b")] {
        in_guest_of(
            &lab.root("h1").join("vms/Replicas").join(from),
            &format!("ping -c 1 -W 3 {}", ip(to)),
        );
    }
    let before = uptimes(&lab.root("h1"));
    // h2 has not yet found its accelerator (no VM ran there, and it has a
    // /dev/kvm): the guests arrive on TCG, which they run on at h1.
    std::fs::remove_file(lab.root("h2").join("accel")).unwrap();
    u.ok(&["host", "drain", "h1", "--live"]);
    let said = u.ok(&["apply", "Replicas.cvl", "--auto-approve"]);
    eprintln!("{said}");
    assert!(said.contains("Applied 3 action(s) to Replicas"), "{said}");
    assert_eq!(said.matches("moved live from h1").count(), 3, "{said}");
    // One at a time: each line says when its move ended (`[ 16.6s]`, since
    // the apply began) and how long its migration took (`in 7.6 s`); a
    // migration begins only after the one before it ended.
    let mut spans: Vec<(f64, f64)> = said
        .lines()
        .filter(|l| l.contains("moved live from h1") && l.starts_with('['))
        .map(|l| {
            let end: f64 = l[1..l.find("s]").unwrap()].trim().parse().unwrap();
            let took = l.split(" MB in ").nth(1).unwrap();
            let took: f64 = took[..took.find(" s").unwrap()].parse().unwrap();
            (end - took, end)
        })
        .collect();
    spans.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(spans.len(), 3, "{said}");
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1 - 0.3,
            "two migrations at once: {spans:?}\n{said}"
        );
    }
    let after = uptimes(&lab.root("h2"));
    for (b, a) in before.iter().zip(&after) {
        assert!(a > b, "a guest rebooted: uptimes {before:?} then {after:?}");
    }
    assert!(!lab
        .root("h1")
        .join("vms/Replicas")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));
    // b and c (a's one interface is the VAN's exported one, public) reach
    // each other over the VAN, now on h2.
    for (from, to) in [("b", "c"), ("c", "b")] {
        in_guest_of(
            &lab.root("h2").join("vms/Replicas").join(from),
            &format!("ping -c 1 -W 3 {}", ip(to)),
        );
    }
    let again = u.ok(&["plan", "Replicas.cvl"]);
    assert!(again.contains("No changes"), "{again}");
}
