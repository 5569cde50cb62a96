//! The utility's state in PostgreSQL (`--state postgresql://...`), against
//! a server the test starts: the same state as SQLite for the same changes,
//! a foreign or newer database refused untouched, the database's own
//! uniqueness; then two `cvl apply` on one state, on real QEMU: the second
//! waits for the first, and when the first is killed mid-apply the second
//! takes over and converges.

use std::process::Command;
use std::time::{Duration, Instant};

use cvl_e2e::*;
use cvl_planner::model::{Change, ComponentPath, Host, Pools, Status, VmRecord};
use cvl_state::{StateError, Store};

/// A VM record with one interface (`mac`, `ip`), on `host`.
fn record(mac: &str, ip: &str, host: &str, status: &str) -> Box<VmRecord> {
    Box::new(
        serde_json::from_value(serde_json::json!({
            "spec": {
                "appliance": { "name": "DNS", "source": "http://repo/DNS", "version": 2,
                               "digest": "d2" },
                "params": { "domain": { "kind": "plain", "values": ["acme.org"] } },
                "provides": ["DNS"], "requires": [], "memory_mib": 128,
                "data_disks": [{ "device": "ide0:1", "size": "100M" }]
            },
            "alloc": { "host": host, "interfaces": { "ethernet0": {
                "mac": mac, "ip": ip, "network": 1,
                "subnet": "10.0.1.0", "netmask": "255.255.255.0" } } },
            "status": status
        }))
        .expect("a VM record"),
    )
}

fn script() -> Vec<Vec<Change>> {
    let path = |p: &str| ComponentPath(p.into());
    vec![
        vec![Change::HostAdded(Host {
            name: "qemu1".into(),
            address: Some("198.18.0.11".into()),
            port: 22,
            host_key: Some("ssh-ed25519 AAAA".into()),
            memory_mib: 65536,
            max_vms: 40,
            uplink: Some("eth0".into()),
            user: Some("root".into()),
            identity: None,
            root: Some("/var/lib/cvl".into()),
            draining: true,
            drain_live: true,
            fence: Some("ipmitool -f /etc/cvl/qemu1.ipmi chassis power off".into()),
            fenced: Some("2026-12-06T21:00:00Z (by its fence command)".into()),
        })],
        vec![Change::PoolsSet(Pools {
            networks: (200, 300),
            ..Pools::default()
        })],
        vec![
            Change::VanRecorded {
                deployment: "AcmeSuite".into(),
                path: path(""),
                network: 200,
            },
            Change::VmRecorded {
                deployment: "AcmeSuite".into(),
                path: path("d"),
                record: record("0a:c7:1a:00:00:04", "10.0.1.3", "qemu1", "starting"),
            },
            Change::VmRecorded {
                deployment: "AcmeSuite".into(),
                path: path("h"),
                record: record("0a:c7:1a:00:00:03", "10.0.1.2", "qemu1", "running"),
            },
        ],
        vec![Change::VmStatus {
            deployment: "AcmeSuite".into(),
            path: path("d"),
            status: Status::Running,
        }],
        vec![Change::VmRemoved {
            deployment: "AcmeSuite".into(),
            path: path("h"),
        }],
    ]
}

#[test]
fn the_state_in_postgresql_is_the_state_in_sqlite() {
    let pg = PgServer::start();
    let url = pg.database("cvl");
    let dir = tempfile::tempdir().unwrap();
    let mut lite = Store::open(&dir.path().join("state.db")).unwrap();
    let mut post = Store::open_url(&url).unwrap();
    for (i, changes) in script().iter().enumerate() {
        let a = lite.commit(changes).unwrap();
        let b = post.commit(changes).unwrap();
        assert_eq!(a, b, "serials after step {i}");
        let (mut x, mut y) = (lite.load().unwrap(), post.load().unwrap());
        x.lineage.clear();
        y.lineage.clear();
        assert_eq!(x, y, "after step {i}");
    }
    // Reopened: the same state, nothing migrated twice.
    drop(post);
    let mut post = Store::open_url(&url).unwrap();
    assert_eq!(post.load().unwrap().serial, 5);
    assert_eq!(post.fingerprint_key().unwrap().len(), 32);

    // The database itself refuses a MAC taken twice: nothing is written.
    let err = post
        .commit(&[Change::VmRecorded {
            deployment: "Other".into(),
            path: ComponentPath("x".into()),
            record: record("0a:c7:1a:00:00:04", "10.0.1.9", "qemu1", "starting"),
        }])
        .unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
    assert_eq!(post.load().unwrap().serial, 5);

    // A database of something else, and one of a newer cvl: refused, as is.
    let other = pg.database("other");
    pg.psql("other", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let err = Store::open_url(&other).err().expect("refused");
    assert!(
        err.to_string().contains("tables of something else"),
        "{err}"
    );
    assert_eq!(pg.psql("other", "SELECT count(*) FROM t"), "1");
    pg.psql("cvl", "UPDATE meta SET value = '99' WHERE key = 'schema'");
    let err = Store::open_url(&url).err().expect("refused");
    assert!(err.to_string().contains("state schema 99"), "{err}");
    assert_eq!(
        pg.psql("cvl", "SELECT value FROM meta WHERE key = 'serial'"),
        "5"
    );

    // No password in messages.
    let err = Store::open_url("postgresql://cvl:hunter2@127.0.0.1:9/cvl")
        .err()
        .expect("nothing listens there");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("cvl:***@127.0.0.1"), "{err}");
}

/// A process that took the service lock writes only while the session
/// that holds it lives: once that session is cut (a network split from
/// the database, a standby active since), every write is refused and
/// nothing is written; `held` says so.
#[test]
fn a_service_whose_lock_session_ended_writes_nothing() {
    let pg = PgServer::start();
    let url = pg.database("cvl");
    let mut store = Store::open_url(&url).unwrap();
    let mut lock = store.lock_service("a test's service").unwrap();
    assert!(lock.held());
    let script = script();
    store.commit(&script[0]).unwrap();
    let cut = pg.psql(
        "cvl",
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
         AND granted AND objsubid = 1 AND classid = 0 AND objid = 1129729075",
    );
    assert_eq!(cut, "t");
    assert!(!lock.held());
    let serial = store.load().unwrap().serial;
    let err = store.commit(&script[1]).unwrap_err();
    assert!(
        err.to_string()
            .contains("no longer holds the state's service lock"),
        "{err}"
    );
    assert_eq!(store.load().unwrap().serial, serial, "written after all");
    // Another takes the lock at once.
    let other = Store::open_url(&url).unwrap();
    other.lock_service("another").unwrap();
}

#[test]
fn two_applies_on_one_state_one_waits_and_a_killed_one_is_taken_over() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pg = PgServer::start();
    let url = pg.database("cvl");
    let (_tmp, u, _ns) = setup("cvl-e2e-pg");
    let u = Utility {
        env: vec![("CVL_STATE".into(), url.clone())],
        ..u
    };
    let apply = |wait: &str| {
        u.spawn(&[
            "apply",
            "AcmeSuite.cvl",
            "--auto-approve",
            "--lock-timeout",
            wait,
        ])
    };
    // Held applies: the apply lock only, not the writers' short
    // transaction locks (a bigint key is classid:objid, objsubid 1).
    let applies_now = || {
        pg.psql(
            "cvl",
            &format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objsubid = 1 AND classid = {} AND objid = {}",
                cvl_state::POSTGRES_APPLY_LOCK >> 32,
                cvl_state::POSTGRES_APPLY_LOCK & 0xffff_ffff
            ),
        )
    };

    // The first applies; the second waits for it, then finds nothing to do.
    let first = apply("0s");
    let deadline = Instant::now() + Duration::from_secs(30);
    while applies_now() == "0" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = u.cvl(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("another cvl is applying a plan to postgresql:///cvl"),
        "{}",
        text(&refused)
    );
    assert!(text(&refused).contains("cvl apply AcmeSuite.cvl, pid "));
    let second = apply("10m");
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(
        text(&first).contains("Applied 6 action(s)"),
        "{}",
        text(&first)
    );
    let second = second.wait_with_output().unwrap();
    let said = text(&second);
    assert_eq!(second.status.code(), Some(0), "{said}");
    assert!(
        said.contains("Waiting up to 10m for the state's apply lock"),
        "{said}"
    );
    assert!(said.contains("No changes"), "{said}");

    // The first killed mid-apply: the second takes the lock and converges.
    u.stop_all();
    let mut first = apply("0s");
    std::thread::sleep(Duration::from_secs(4));
    let second = apply("10m");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first finished too soon"
    );
    // SAFETY: our own child (ip netns exec execs cvl).
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    let _ = first.wait();
    let second = second.wait_with_output().unwrap();
    let said = text(&second);
    assert_eq!(second.status.code(), Some(0), "{said}");
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    assert_eq!(
        plan["actions"].as_array().unwrap().len(),
        0,
        "did not converge"
    );
    assert!(u.pids().values().all(Option::is_some), "{said}");
    let status = u.cvl(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert_no_params_left(&u);
}

/// A team's server across a network: TLS as libpq's `sslmode` says. The
/// test server takes TCP connections with TLS only, with a certificate for
/// `localhost` signed by the test's own CA.
#[test]
fn the_state_reaches_postgresql_over_tls_as_sslmode_says() {
    let pg = PgServer::start_tls();
    pg.database("tls");
    let port = pg.port.unwrap();
    let ca = pg.file("ca.pem");
    let url =
        |host: &str, params: &str| format!("postgresql://postgres@{host}:{port}/tls?{params}");
    let root = format!("sslrootcert={}", ca.display());

    // Verified: the chain and the name, against the test's CA.
    let mut store = Store::open_url(&url("localhost", &format!("sslmode=verify-full&{root}")))
        .unwrap_or_else(|e| panic!("{e}"));
    store.commit(&script()[0]).unwrap();
    assert_eq!(store.load().unwrap().serial, 1);
    drop(store);
    // The certificate does not name 127.0.0.1: verify-full refuses it,
    // verify-ca (the chain only) and require (encrypted, unchecked) take it.
    let err = Store::open_url(&url("127.0.0.1", &format!("sslmode=verify-full&{root}")))
        .err()
        .expect("the name does not match");
    assert!(err.to_string().contains("sslrootcert"), "{err}");
    for params in [
        format!("sslmode=verify-ca&{root}"),
        "sslmode=require".to_string(),
    ] {
        let mut store =
            Store::open_url(&url("127.0.0.1", &params)).unwrap_or_else(|e| panic!("{params}: {e}"));
        assert_eq!(store.load().unwrap().serial, 1, "{params}");
    }
    // Without the CA, nothing verifies; without TLS, the server refuses.
    let err = Store::open_url(&url("localhost", "sslmode=verify-full"))
        .err()
        .expect("an unknown CA");
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );
    let err = Store::open_url(&url("127.0.0.1", "sslmode=disable"))
        .err()
        .expect("the server takes TLS only");
    assert!(err.to_string().contains("no encryption"), "{err}");
    let err = Store::open_url(&url("localhost", "sslmode=verify-all"))
        .err()
        .expect("not an sslmode");
    assert!(err.to_string().contains("verify-full"), "{err}");
    // A password as libpq takes it when the URL has none: PGPASSWORD, or a
    // password file only its owner may read (the binary, as a team's CI runs it).
    pg.psql("tls", "CREATE ROLE team LOGIN SUPERUSER PASSWORD 'team-pw'");
    let home = tempfile::tempdir().unwrap();
    let state =
        url("localhost", &format!("sslmode=verify-full&{root}")).replace("postgres@", "team@");
    let hosts = |env: &[(&str, &str)]| {
        Command::new(cvl_binary())
            .args(["host", "list"])
            .env("CVL_HOME", home.path())
            .env("CVL_STATE", &state)
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let out = hosts(&[]);
    assert!(!out.status.success(), "no password: {}", text(&out));
    assert!(text(&out).contains("password"), "{}", text(&out));
    assert!(hosts(&[("PGPASSWORD", "team-pw")]).status.success());
    let pgpass = home.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "localhost:{port}:tls:team:team-pw
"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (mode, works) in [(0o644, false), (0o600, true)] {
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = hosts(&[("PGPASSFILE", pgpass.to_str().unwrap())]);
        assert_eq!(out.status.success(), works, "mode {mode:o}: {}", text(&out));
    }

    // Every TCP connection that worked used TLS (the server takes no other),
    // and the state written through it is there.
    assert_eq!(
        pg.psql("tls", "SELECT value FROM meta WHERE key = 'serial'"),
        "1"
    );
}

/// Two services on one PostgreSQL state: the second waits as a standby
/// (its status page says which is active); the active one killed with
/// SIGKILL while it restarts a crashed appliance, the standby takes over
/// within a second or two and finishes the restart; a service whose
/// database session is cut writes nothing more and exits, while a third
/// takes over. At no moment do two act.
#[test]
fn a_standby_service_takes_over_when_the_active_one_dies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pg = PgServer::start();
    let url = pg.database("cvl");
    let (tmp, u, _ns) = bare("cvl-e2e-standby");
    let u = Utility {
        env: vec![("CVL_STATE".into(), url.clone())],
        ..u
    };
    apply_replicas(&u);
    let pid = |c: &str| -> Option<u32> {
        let file = u.roots[0].join("vms/Replicas").join(c).join("qemu.pid");
        let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    };
    let args = |more: &[&'static str]| -> Vec<&'static str> {
        let mut all = vec![
            "--interval",
            "1h",
            "--survey-interval",
            "1s",
            "--http",
            "127.0.0.1:0",
        ];
        all.extend(more);
        all
    };
    let mut first = u.service(&args(&[]), &tmp.path().join("first.log"));
    first.wait_for("active", |_| true, Duration::from_secs(30));
    let second = u.service(&args(&["--standby"]), &tmp.path().join("second.log"));
    let waiting = second.wait_for("standby", |_| true, Duration::from_secs(30));
    assert!(
        waiting["active"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", first.child.id())),
        "{waiting}"
    );
    let http = second.wait_for("started", |_| true, Duration::from_secs(5))["http"]
        .as_str()
        .unwrap()
        .to_string();
    // The page follows within its publisher's look.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let overview: serde_json::Value =
            serde_json::from_str(&get_in(&u.ns, &http, "/api/overview")).unwrap();
        let role = overview["role"].as_str().unwrap_or("").to_string();
        if role.starts_with("standby (active: cvl utility run, pid ") {
            break;
        }
        assert!(Instant::now() < deadline, "{overview:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Without --standby, another service refuses to start.
    let refused = u.cvl(&["utility", "run", "--once"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));

    // `a` crashes; the active service begins its restart and is killed.
    let crashed = pid("a").unwrap();
    // SAFETY: a QEMU of the test's own.
    unsafe { libc::kill(crashed as i32, libc::SIGKILL) };
    first.wait_for(
        "action_began",
        |e| e["component"] == "a",
        Duration::from_secs(30),
    );
    first.kill();
    let died = Instant::now();
    second.wait_for("active", |_| true, Duration::from_secs(15));
    let took_over = died.elapsed();
    second.wait_for(
        "action_finished",
        |e| e["component"] == "a" && e["outcome"] == "done",
        Duration::from_secs(120),
    );
    eprintln!(
        "the active service killed mid-restart: the standby active after {:.1} s; a running \
         again after {:.1} s",
        took_over.as_secs_f64(),
        died.elapsed().as_secs_f64()
    );
    let again = pid("a").expect("a runs again");
    assert!(alive(again) && again != crashed);
    // It acted only once active.
    let lines: Vec<String> = second.text().lines().map(str::to_string).collect();
    let at = |event: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!("\"event\":\"{event}\"")))
            .unwrap()
    };
    assert!(at("active") < at("action_began"), "{}", second.text());

    // Its session cut (as a network split would): it acts no more, and a
    // third, standing by, takes over.
    let mut second = second;
    let third = u.service(&args(&["--standby"]), &tmp.path().join("third.log"));
    third.wait_for("standby", |_| true, Duration::from_secs(30));
    let cut = pg.psql(
        "cvl",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
             AND granted AND objsubid = 1 AND classid = 0 AND objid = {}",
            0x4356_4C33
        ),
    );
    assert_eq!(cut, "t", "the service lock's session was not found");
    third.wait_for("active", |_| true, Duration::from_secs(15));
    let crashed = pid("b").unwrap();
    // SAFETY: a QEMU of the test's own.
    unsafe { libc::kill(crashed as i32, libc::SIGKILL) };
    second.wait_for("lost_lock", |_| true, Duration::from_secs(30));
    let status = second.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{}", second.text());
    third.wait_for(
        "action_finished",
        |e| e["component"] == "b" && e["outcome"] == "done",
        Duration::from_secs(120),
    );
    assert_eq!(
        second
            .events("action_began")
            .iter()
            .filter(|e| e["component"] == "b")
            .count(),
        0,
        "the cut service acted: {}",
        second.text()
    );
    drop(third);
    u.ok(&[
        "stop",
        "Replicas.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
}
