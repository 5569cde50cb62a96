//! Backups of data disks, on a real QEMU guest in a namespace the test
//! creates: a live full backup, then an incremental one that holds about
//! what the guest wrote since; the dirty bitmap survives a restart (the next
//! one is still incremental) and not a killed QEMU (the next one is full);
//! a restore point two back is put back byte for byte through its chain; a
//! stopped appliance is backed up from its files; and a store whose file
//! was tampered with is refused before anything is replaced.

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
    let agent = Agent::connect(&vm_dir(u).join("qga.sock"), Duration::from_secs(10));
    let (code, out) = agent
        .unwrap()
        .exec(&["/bin/sh", "-c", script], Duration::from_secs(60))
        .unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(code, 0, "{script}: {out}");
    out
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

/// `cvl backup` into `store`; the restore point it made.
fn backup(u: &Utility, store: &str, extra: &[&str]) -> serde_json::Value {
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

#[test]
fn data_disks_are_backed_up_live_incrementally_and_restored() {
    let (tmp, u, _ns) = bare("cvl-e2e-backup");
    let file = stage(&u.dir, &guest(), "Alpha", ALPHA, DESCRIPTION);
    u.publish_file("Alpha", &file);
    std::fs::write(u.dir.join("Solo.cvl"), SOLO).unwrap();
    apply(&u);
    let store_dir = tmp.path().join("store");
    let store = store_dir.to_str().unwrap();

    // Full, live.
    write_random(&u, 0, 4);
    let first = backup(&u, store, &[]);
    assert_eq!(first["id"], "0001", "{first:#}");
    assert_eq!(first["kind"], "full", "{first:#}");
    // The test guest's root is an initramfs: nothing to freeze (the
    // suite's appliances freeze theirs: tests/appliances.rs).
    assert_eq!(first["consistency"], "crash-consistent", "{first:#}");
    assert!(size(&first) >= 4 * MIB, "{first:#}");
    // Incremental: about the 4 MiB written since.
    write_random(&u, 16, 4);
    let second = backup(&u, store, &[]);
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
    let third = backup(&u, store, &[]);
    assert_eq!(third["kind"], "incremental", "{third:#}");
    assert!(size(&third) < 2 * MIB, "1 MiB written: {third:#}");

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
    let fourth = backup(&u, store, &[]);
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

    // Stopped: copied from its files.
    u.ok(&["stop", "Solo.cvl", "--auto-approve", "--stop-timeout", "10"]);
    let fifth = backup(&u, store, &[]);
    assert_eq!(fifth["consistency"], "stopped", "{fifth:#}");
    let listed: serde_json::Value = serde_json::from_str(&u.ok(&[
        "backup", "Solo.cvl", "--to", store, "--list", "--format", "json",
    ]))
    .unwrap();
    let ids: Vec<_> = listed["a"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["0001", "0002", "0003", "0004", "0005"], "{listed:#}");

    // A tampered file of the chain: refused, the disk left as it was.
    let disk = vm_dir(&u).join("data-ide0-1.qcow2");
    let before = std::fs::read(&disk).unwrap();
    let base = store_dir.join("Solo/a/ide0-1/0001-full.qcow2");
    let mut bytes = std::fs::read(&base).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 1;
    std::fs::write(&base, bytes).unwrap();
    let out = u.cvl(&[
        "restore",
        "Solo.cvl",
        "a",
        "--from",
        store,
        "--id",
        "0002",
        "--auto-approve",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("0001-full.qcow2 is not what was backed up"),
        "{said}"
    );
    assert_eq!(std::fs::read(&disk).unwrap(), before, "the disk changed");
    u.ok(&["stop", "Solo.cvl", "--auto-approve", "--stop-timeout", "10"]);
}
