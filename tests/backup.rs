//! Backups of data disks, on a real QEMU guest in a namespace the test
//! creates: a live full backup, then an incremental one that holds about
//! what the guest wrote since; the dirty bitmap survives a restart (the next
//! one is still incremental) and not a killed QEMU (the next one is full);
//! a restore point two back is put back byte for byte through its chain; a
//! stopped appliance is backed up from its files; verify finds every
//! restore point whole; backups to two stores in turn each follow their
//! own points; a prune keeps the newest three, making the oldest
//! kept one full, and it still restores byte for byte; and a store whose
//! file was tampered with is named by verify and refused by a restore
//! before anything is replaced.

use std::path::PathBuf;
use std::time::Duration;

use cvl_e2e::*;

const ALPHA: &str = "CVL = \"0.8\";\nAlpha extends VMAppliance {\n  \
    datadisks = { device => \"ide0:1\", size => \"256M\" };\n  vm = \"alpha.vmx\";\n}\n";
const SOLO: &str =
    "import { url => \"http://virtualappliance.org/Alpha\", cvl => \"Alpha.cvl\" } Alpha;\n\
    Solo extends VANAppliance {\n  Alpha a;\n  vanIF = \"a.ethernet0\";\n}\n";
const MIB: u64 = 1 << 20;

fn vm_dir(u: &Utility) -> PathBuf {
    u.dir.join("home/host/vms/Solo/a")
}

/// Runs a shell script in the guest; its output.
fn in_guest(u: &Utility, script: &str) -> String {
    in_guest_of(&vm_dir(u), script)
}

/// Writes `mib` MiB of random data at MiB offset `at` of the data disk.
fn write_random(u: &Utility, at: u64, mib: u64) {
    in_guest(
        u,
        &format!(
            "dd if=/dev/urandom of=/dev/vdb bs=1048576 seek={at} count={mib} conv=fsync 2>/dev/null"
        ),
    );
}

/// The data disk's SHA-256, read by the guest.
fn disk_sha(u: &Utility) -> String {
    in_guest(u, "sha256sum /dev/vdb")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Solo/a's restore points in `store`.
fn list(u: &Utility, store: &str) -> Vec<serde_json::Value> {
    let listed: serde_json::Value = serde_json::from_str(&u.ok(&[
        "backup", "list", "Solo.cvl", "--to", store, "--format", "json",
    ]))
    .unwrap();
    listed["a"].as_array().unwrap().clone()
}

/// `cvl backup` into `store`; the restore point it made.
fn backup_point(u: &Utility, store: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["backup", "Solo.cvl", "--to", store, "--format", "json"];
    args.extend_from_slice(extra);
    let out: serde_json::Value = serde_json::from_str(&u.ok(&args)).unwrap();
    let made = &out[0]["backups"];
    assert_eq!(made.as_array().map(Vec::len), Some(1), "{out:#}");
    made[0].clone()
}

fn size(point: &serde_json::Value) -> u64 {
    point["size"].as_u64().unwrap()
}

fn apply(u: &Utility) {
    u.ok(&[
        "apply",
        "Solo.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
}

/// Solo (one Alpha with a 256 MiB data disk) applied in a namespace `ns`.
fn solo(ns: &str) -> (tempfile::TempDir, Utility, Netns) {
    let (tmp, u, netns) = bare(ns);
    let file = stage(&u.dir, &guest(), "Alpha", ALPHA, DESCRIPTION);
    u.publish_file("Alpha", &file);
    std::fs::write(u.dir.join("Solo.cvl"), SOLO).unwrap();
    apply(&u);
    (tmp, u, netns)
}

#[test]
fn data_disks_are_backed_up_live_incrementally_and_restored() {
    let (tmp, u, _ns) = solo("cvl-e2e-backup");
    let store_dir = tmp.path().join("store");
    let store = store_dir.to_str().unwrap();

    // Full, live.
    write_random(&u, 0, 4);
    let first = backup_point(&u, store, &[]);
    assert_eq!(first["id"], "0001", "{first:#}");
    assert_eq!(first["kind"], "full", "{first:#}");
    // The test guest's root is an initramfs: nothing to freeze (the
    // suite's appliances freeze theirs: tests/appliances.rs).
    assert_eq!(first["consistency"], "crash-consistent", "{first:#}");
    assert!(size(&first) >= 4 * MIB, "{first:#}");
    // Incremental: about the 4 MiB written since.
    write_random(&u, 16, 4);
    let second = backup_point(&u, store, &[]);
    assert_eq!(second["kind"], "incremental", "{second:#}");
    assert_eq!(second["parent"], "0001", "{second:#}");
    assert!(
        (4 * MIB..6 * MIB).contains(&size(&second)),
        "an incremental backup of 4 MiB written: {second:#}"
    );
    let at_second = disk_sha(&u);
    eprintln!(
        "full: {} bytes; incremental of 4 MiB written: {} bytes; I/O frozen {} ms and {} ms",
        size(&first),
        size(&second),
        first["frozen_ms"],
        second["frozen_ms"]
    );

    // Stopped and started: the bitmap was saved with the disk.
    u.ok(&["stop", "Solo.cvl", "--auto-approve", "--stop-timeout", "10"]);
    apply(&u);
    write_random(&u, 32, 1);
    let third = backup_point(&u, store, &[]);
    assert_eq!(third["kind"], "incremental", "{third:#}");
    assert!(size(&third) < 2 * MIB, "1 MiB written: {third:#}");
    let at_third = disk_sha(&u);

    // A killed QEMU could not save it: the next backup is full.
    let pid: i32 = std::fs::read_to_string(vm_dir(&u).join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    while alive(pid as u32) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // `cvl apply` starts what is recorded running and gone.
    let said = u.ok(&["apply", "Solo.cvl", "--auto-approve"]);
    assert!(said.contains("its QEMU is gone"), "{said}");
    let fourth = backup_point(&u, store, &[]);
    assert_eq!(fourth["kind"], "full", "after a killed QEMU: {fourth:#}");
    assert_ne!(fourth["consistency"], "stopped", "{fourth:#}");

    // Restore point 0002, two back, through its chain, byte for byte.
    write_random(&u, 0, 8);
    assert_ne!(disk_sha(&u), at_second);
    let restoring = std::time::Instant::now();
    let said = u.ok(&[
        "restore",
        "Solo.cvl",
        "a",
        "--from",
        store,
        "--id",
        "0002",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    assert!(said.contains("put back to restore point 0002"), "{said}");
    eprintln!(
        "restore (stop, put back 256 MiB, start): {:.1} s",
        restoring.elapsed().as_secs_f64()
    );
    assert_eq!(disk_sha(&u), at_second, "restored data differs");
    let kept: Vec<_> = std::fs::read_dir(vm_dir(&u))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "the data it had is kept");

    // Two other stores, C and D, taken in turn: each follows its own
    // restore points (a disk's bitmaps are per store), so C's incremental
    // after D's backup holds both writes since C's last, not only the one
    // since D's.
    let (c, d) = (tmp.path().join("store-c"), tmp.path().join("store-d"));
    let (c, d) = (c.to_str().unwrap(), d.to_str().unwrap());
    assert_eq!(backup_point(&u, c, &[])["kind"], "full");
    write_random(&u, 100, 2);
    assert_eq!(backup_point(&u, d, &[])["kind"], "full");
    write_random(&u, 104, 2);
    let from_c = backup_point(&u, c, &[]);
    assert_eq!(from_c["kind"], "incremental", "{from_c:#}");
    assert_eq!(from_c["parent"], "0001", "{from_c:#}");
    assert!(
        (4 * MIB..6 * MIB).contains(&size(&from_c)),
        "2 + 2 MiB written since C's last: {from_c:#}"
    );

    // Stopped: copied from its files.
    u.ok(&["stop", "Solo.cvl", "--auto-approve", "--stop-timeout", "10"]);
    let fifth = backup_point(&u, store, &[]);
    assert_eq!(fifth["consistency"], "stopped", "{fifth:#}");
    let ids = |u: &Utility| -> Vec<(String, String)> {
        let listed: serde_json::Value = serde_json::from_str(&u.ok(&[
            "backup", "list", "Solo.cvl", "--to", store, "--format", "json",
        ]))
        .unwrap();
        listed["a"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["id"].as_str().unwrap().into(),
                    b["file"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let listed: Vec<_> = ids(&u).into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed, ["0001", "0002", "0003", "0004", "0005"]);
    let said = u.ok(&["backup", "verify", "Solo.cvl", "--to", store]);
    assert!(said.contains("all 5 restore points are whole"), "{said}");

    // Retention: the newest three kept; 0003 loses its parents and is made
    // full, and still restores byte for byte.
    let pruned: serde_json::Value = serde_json::from_str(&u.ok(&[
        "backup",
        "prune",
        "Solo.cvl",
        "--to",
        store,
        "--keep-last",
        "3",
        "--format",
        "json",
    ]))
    .unwrap();
    let dropped: Vec<_> = pruned["a"]["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(dropped, ["0001", "0002"], "{pruned:#}");
    assert_eq!(pruned["a"]["kept"][0]["kind"], "full", "{pruned:#}");
    let after = ids(&u);
    let listed: Vec<_> = after.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(listed, ["0003", "0004", "0005"]);
    let mut files: Vec<_> = std::fs::read_dir(store_dir.join("Solo/a/ide0-1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".qcow2"))
        .collect();
    files.sort();
    let mut named: Vec<_> = after.iter().map(|(_, f)| f.clone()).collect();
    named.sort();
    assert_eq!(files, named, "the dropped files are gone");
    let said = u.ok(&[
        "restore",
        "Solo.cvl",
        "a",
        "--from",
        store,
        "--id",
        "0003",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    assert!(said.contains("put back to restore point 0003"), "{said}");
    assert_eq!(disk_sha(&u), at_third, "0003, rebased, restores other data");
    // What the first restore kept went at the start after its own; what
    // this one kept is there until the next.
    let kept: Vec<String> = std::fs::read_dir(vm_dir(&u))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.contains(".before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");

    // A tampered file: verify names it (exit 1), and a restore from it is
    // refused, the disk left as it was.
    u.ok(&["stop", "Solo.cvl", "--auto-approve", "--stop-timeout", "10"]);
    let disk = vm_dir(&u).join("data-ide0-1.qcow2");
    let before = std::fs::read(&disk).unwrap();
    let base = store_dir.join("Solo/a/ide0-1").join(&after[0].1);
    let mut bytes = std::fs::read(&base).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 1;
    std::fs::write(&base, bytes).unwrap();
    let out = u.cvl(&["backup", "verify", "Solo.cvl", "--to", store]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("0003: DAMAGED"), "{said}");
    assert!(said.contains("1 of 3 restore points are damaged"), "{said}");
    let out = u.cvl(&[
        "restore",
        "Solo.cvl",
        "a",
        "--from",
        store,
        "--id",
        "0003",
        "--auto-approve",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("{} is not what was backed up", after[0].1)),
        "{said}"
    );
    assert_eq!(std::fs::read(&disk).unwrap(), before, "the disk changed");
}

/// GET `path` from the service's HTTP server in the test's namespace.
fn get(u: &Utility, addr: &str, path: &str) -> String {
    get_in(&u.ns, addr, path)
}

/// The service backs up by policy: `cvl policy set --backup-every` (a
/// policy without a store refused), a full backup then incremental ones
/// every interval, the store pruned to the newest two, each in the history,
/// `/metrics` (the newest's age) and the appliance's page. Then the newest
/// is restored into another deployment (`--of`), byte for byte, after the
/// service went on backing up while a person stopped and started it; and a
/// `cvl backup` killed half way costs nothing, and so does the service
/// killed half way through one of its backups.
#[test]
fn the_service_backs_up_by_policy() {
    let (tmp, u, _ns) = solo("cvl-e2e-backup-policy");
    let store_dir = tmp.path().join("store");
    let store = store_dir.to_str().unwrap();

    let out = u.cvl(&["policy", "set", "Solo", "--backup-every", "1h"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("--backup-to DIR"), "{}", text(&out));
    let said = u.ok(&[
        "policy",
        "set",
        "Solo",
        "--backup-every",
        "4s",
        "--backup-to",
        store,
        "--keep-last",
        "2",
    ]);
    assert!(
        said.contains(&format!("backups every 4s into {store} (the last 2 kept)")),
        "{said}"
    );

    let mut child = u
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
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let started = started_event(&mut child);
    let service = Killed(child);
    let http = started["http"].as_str().unwrap().to_string();
    let metrics = started["metrics"].as_str().unwrap().to_string();

    // Four backups (about 16 s), the guest writing between them.
    let begun = std::time::Instant::now();
    let history = loop {
        write_random(&u, 64, 1);
        let history: serde_json::Value =
            serde_json::from_str(&u.ok(&["history", "Solo", "--format", "json"])).unwrap();
        let backups: Vec<serde_json::Value> = history["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "backup")
            .cloned()
            .collect();
        if backups.len() >= 4 {
            break backups;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "four backups by policy within 2 minutes: {history:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for e in &history {
        assert_eq!(e["outcome"], "ok", "{e:#}");
        assert_eq!(e["actor"], "service", "{e:#}");
    }
    let details: Vec<&str> = history
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(details.iter().any(|d| d.contains("(full,")), "{details:#?}");
    assert!(
        details.iter().any(|d| d.contains("(incremental,")),
        "{details:#?}"
    );
    assert!(
        details.iter().any(|d| d.contains("dropped 0001")),
        "{details:#?}"
    );

    let page: serde_json::Value =
        serde_json::from_str(&get(&u, &http, "/api/deployments/Solo/appliances/a")).unwrap();
    assert_eq!(page["backup"]["every_secs"], 4, "{page:#}");
    assert_eq!(page["backup"]["stale"], false, "{page:#}");
    assert!(page["backup"]["newest"].is_string(), "{page:#}");
    let scraped = get(&u, &metrics, "/metrics");
    assert!(
        scraped.contains("cvl_backup_age_seconds{appliance=\"Solo/a\"}"),
        "{scraped}"
    );
    let taken: u64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix("cvl_backups_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{scraped}"));
    assert!(taken >= 4, "{scraped}");

    // A person stops and starts the appliance while the service backs it
    // up every 4 s: they take turns on the host's per-VM lock; every stop,
    // start and backup succeeds, and the store stays whole.
    let backups_of = |u: &Utility| -> Vec<serde_json::Value> {
        let history: serde_json::Value =
            serde_json::from_str(&u.ok(&["history", "Solo", "--format", "json"])).unwrap();
        history["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "backup")
            .cloned()
            .collect()
    };
    let seen = backups_of(&u).len();
    let racing = std::time::Instant::now();
    while racing.elapsed() < Duration::from_secs(20) {
        write_random(&u, 64, 1);
        u.ok(&["stop", "Solo.cvl", "--auto-approve", "--stop-timeout", "10"]);
        apply(&u);
    }
    std::thread::sleep(Duration::from_secs(6));
    let during = backups_of(&u);
    assert!(
        during.len() > seen,
        "no backup while a person stopped and started it"
    );
    for e in &during[seen..] {
        assert_eq!(e["outcome"], "ok", "{e:#}");
    }
    eprintln!(
        "{} backups by the service while a person stopped and started the appliance",
        during.len() - seen
    );
    drop(service);

    // What the policy keeps: the newest two (a third while the last
    // backup's prune had not run when the service was stopped), whole.
    let listed: serde_json::Value = serde_json::from_str(&u.ok(&[
        "backup", "list", "Solo.cvl", "--to", store, "--format", "json",
    ]))
    .unwrap();
    let kept = listed["a"].as_array().unwrap();
    assert!((2..=3).contains(&kept.len()), "{listed:#}");
    assert_ne!(kept[0]["id"], "0001", "{listed:#}");
    let said = u.ok(&["backup", "verify", "Solo.cvl", "--to", store]);
    assert!(said.contains("restore points are whole"), "{said}");
    let newest = kept.last().unwrap()["id"].as_str().unwrap().to_string();
    // What the newest holds, read by Solo/a's guest once put back.
    u.ok(&[
        "restore",
        "Solo.cvl",
        "a",
        "--from",
        store,
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    let production = disk_sha(&u);

    // A copy of production's data for a test deployment: Copy/a gets
    // Solo/a's newest restore point.
    std::fs::write(u.dir.join("Copy.cvl"), SOLO.replace("Solo", "Copy")).unwrap();
    u.ok(&[
        "apply",
        "Copy.cvl",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    let copy = u.dir.join("home/host/vms/Copy/a");
    let sha = |dir: &std::path::Path| {
        in_guest_of(dir, "sha256sum /dev/vdb")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(sha(&copy), production);
    let out = u.cvl(&[
        "restore",
        "Copy.cvl",
        "a",
        "--from",
        store,
        "--of",
        "Nobody/a",
        "--auto-approve",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("Nobody/a has no restore point"),
        "{}",
        text(&out)
    );
    let said = u.ok(&[
        "restore",
        "Copy.cvl",
        "a",
        "--from",
        store,
        "--of",
        "Solo/a",
        "--auto-approve",
        "--stop-timeout",
        "10",
    ]);
    assert!(
        said.contains(&format!("put back to restore point {newest} of Solo/a")),
        "{said}"
    );
    assert_eq!(sha(&copy), production, "Copy/a has not Solo/a's data");
    u.ok(&["stop", "Copy.cvl", "--auto-approve", "--stop-timeout", "10"]);

    // `cvl backup` and its host agent killed (SIGKILL) while a full copy
    // of 64 MiB written runs: the restore points before it are whole, and
    // the next backup (QEMU's job left behind cancelled) is too.
    let begun = std::time::Instant::now();
    let next = killed_half_way(
        &u,
        store,
        &["backup", "Solo.cvl", "--to", store, "--full"],
        || begun.elapsed() > Duration::from_millis(400),
    );
    assert_ne!(next["consistency"], "stopped", "{next:#}");

    // The service (and its host agent) killed while its backup's copy
    // runs (the job's target is in the VM's folder only then): the same,
    // and the next backup still follows the last whole one.
    let target = vm_dir(&u).join("backup-ide0-1.qcow2");
    let next = killed_half_way(
        &u,
        store,
        &[
            "utility",
            "run",
            "--interval",
            "1s",
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        || target.exists(),
    );
    assert_eq!(next["kind"], "incremental", "{next:#}");
    u.ok(&["stop", "Solo.cvl", "--auto-approve", "--stop-timeout", "10"]);
}

/// Writes 64 MiB in Solo/a's guest, runs `cvl ARGS` in a process group of
/// its own and kills the group (SIGKILL: cvl and its host agent) once
/// `half_way` says so; then checks that this cost nothing: the restore
/// points before are as they were, and whole, and so is the next backup
/// (returned).
fn killed_half_way(
    u: &Utility,
    store: &str,
    args: &[&str],
    half_way: impl Fn() -> bool,
) -> serde_json::Value {
    let before = list(u, store);
    write_random(u, 64, 64);
    let mut command = u.command(args);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiting = std::time::Instant::now();
    while !half_way() && waiting.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert!(half_way(), "cvl {args:?} was never half way");
    let after = list(u, store);
    assert_eq!(
        after[..before.len()],
        before[..],
        "the restore points before changed"
    );
    let said = u.ok(&["backup", "verify", "Solo.cvl", "--to", store]);
    assert!(said.contains("restore points are whole"), "{said}");
    let next = backup_point(u, store, &[]);
    assert!(
        next["id"].as_str() > before.last().unwrap()["id"].as_str(),
        "{next:#}"
    );
    let said = u.ok(&["backup", "verify", "Solo.cvl", "--to", store]);
    assert!(said.contains("restore points are whole"), "{said}");
    next
}
