//! Repositories from the publisher's side, through the `cvl` binary: program
//! disks stored as qcow2 deltas (measured with qemu-img), data disks never
//! published, concurrent publishes, and publishes killed half-way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

fn cvl(dir: &Path, args: &[&str]) -> Output {
    common::cvl_in(dir, "home", args)
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    common::ok_in(dir, "home", args)
}

const CLUSTER: u64 = 65536;

/// A DNS appliance (Figure 2) with a 32 MiB raw program disk holding 4 MiB of
/// data, and a data disk on the device its `datadisks` names.
fn stage_dns(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let cvl = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/groupware/DNS.cvl"),
    )
    .unwrap()
    .replace("dns.vmx", "dns.vm");
    std::fs::write(src.join("DNS.cvl"), cvl).unwrap();
    std::fs::write(
        src.join("dns.vm"),
        "memory = 64\n[[disk]]\ndevice = \"ide0:0\"\nfile = \"system.raw\"\n\
         [[disk]]\ndevice = \"ide0:1\"\nfile = \"zones.qcow2\"\n",
    )
    .unwrap();
    let mut disk = vec![0u8; 32 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for byte in disk[..4 << 20].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    std::fs::write(src.join("system.raw"), &disk).unwrap();
    common::qemu_img(
        &src,
        &["create", "-q", "-f", "qcow2", "zones.qcow2", "100M"],
    );
    src.join("DNS.cvl")
}

/// The paper's Firewall, staged with a small program disk.
fn stage_firewall(dir: &Path) -> PathBuf {
    let example =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/groupware/Firewall.cvl");
    common::stage(dir, "Firewall", &example, 2)
}

fn index(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("repo/cvl-repository.json")).unwrap()).unwrap()
}

fn allocated(path: &Path) -> u64 {
    let map = common::qemu_img(
        Path::new("/"),
        &["map", "--output=json", path.to_str().unwrap()],
    );
    let entries: Vec<Value> = serde_json::from_str(&map).unwrap();
    entries
        .iter()
        .filter(|e| e["depth"] == 0 && e["data"] == true)
        .map(|e| e["length"].as_u64().unwrap())
        .sum()
}

#[test]
fn program_disks_are_deltas_and_data_disks_stay_home() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cvl_file = stage_dns(dir);
    let src = dir.join("src");
    ok(dir, &["repo", "create", "repo"]);
    ok(dir, &["publish", "repo", cvl_file.to_str().unwrap()]);
    std::fs::copy(src.join("system.raw"), dir.join("v1.raw")).unwrap();

    // Version 2 changes 10 bytes in one cluster; version 3 changes nothing.
    let mut disk = std::fs::read(src.join("system.raw")).unwrap();
    disk[(20 << 20) + 5..(20 << 20) + 15].copy_from_slice(b"0123456789");
    std::fs::write(src.join("system.raw"), &disk).unwrap();
    ok(dir, &["publish", "repo", cvl_file.to_str().unwrap()]);
    ok(dir, &["publish", "repo", cvl_file.to_str().unwrap()]);

    let v = |n: u32, f: &str| dir.join(format!("repo/versions/{n}/{f}"));
    assert_eq!(
        allocated(&v(1, "system.qcow2")),
        4 << 20,
        "version 1 holds the whole disk's data"
    );
    assert_eq!(
        allocated(&v(2, "system.qcow2")),
        CLUSTER,
        "version 2 holds the changed cluster only"
    );
    assert_eq!(
        allocated(&v(3, "system.qcow2")),
        0,
        "version 3 holds nothing new"
    );
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len();
    assert!(size(v(2, "system.qcow2")) < size(v(1, "system.qcow2")) / 4);
    // Each version reads back exactly as published.
    let compare = |a: &Path, b: &Path| {
        common::qemu_img(
            Path::new("/"),
            &["compare", a.to_str().unwrap(), b.to_str().unwrap()],
        )
    };
    compare(&dir.join("v1.raw"), &v(1, "system.qcow2"));
    compare(&src.join("system.raw"), &v(2, "system.qcow2"));
    compare(&src.join("system.raw"), &v(3, "system.qcow2"));

    let idx = index(dir);
    let files = &idx["versions"][1]["files"];
    let disk_entry = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "system.qcow2")
        .unwrap();
    assert_eq!(disk_entry["backing"], "../1/system.qcow2");
    // The data disk (ide0:1 in datadisks) is nowhere in the repository.
    for n in 1..=3 {
        assert!(!v(n, "zones.qcow2").exists());
        let description = std::fs::read_to_string(v(n, "dns.vm")).unwrap();
        assert!(
            description.contains("ide0:0") && !description.contains("ide0:1"),
            "{description}"
        );
    }
    ok(dir, &["repo", "verify", "repo"]);
    let log = String::from_utf8_lossy(&ok(dir, &["repo", "log", "repo"]).stdout).to_string();
    assert!(log.starts_with("version 3  published 20"), "{log}");
}

#[test]
fn a_vm_appliance_without_its_description_is_not_published() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cvl_file = stage_dns(dir);
    std::fs::remove_file(dir.join("src/dns.vm")).unwrap();
    ok(dir, &["repo", "create", "repo"]);
    let out = cvl(dir, &["publish", "repo", cvl_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`dns.vm`, which does not exist"),
        "{stderr}"
    );
    assert_eq!(index(dir)["versions"], serde_json::json!([]));
}

#[test]
fn concurrent_publishes_get_distinct_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cvl_file = stage_firewall(dir);
    ok(dir, &["repo", "create", "repo"]);
    let children: Vec<_> = (0..6)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_cvl"))
                .args(["publish", "repo", cvl_file.to_str().unwrap()])
                .current_dir(dir)
                .env("CVL_HOME", dir.join("home"))
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let versions: Vec<u64> = index(dir)["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    ok(dir, &["repo", "verify", "repo"]);
}

#[test]
fn a_killed_publish_leaves_no_half_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cvl_file = stage_dns(dir);
    ok(dir, &["repo", "create", "repo"]);
    ok(dir, &["publish", "repo", cvl_file.to_str().unwrap()]);
    let mut disk = std::fs::read(dir.join("src/system.raw")).unwrap();
    for round in 0..12u64 {
        disk[(8 << 20) + round as usize] ^= 0xff;
        std::fs::write(dir.join("src/system.raw"), &disk).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cvl"))
            .args(["publish", "repo", cvl_file.to_str().unwrap()])
            .current_dir(dir)
            .env("CVL_HOME", dir.join("home"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + round * 7));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever was interrupted, every version present is whole.
        ok(dir, &["repo", "verify", "repo"]);
    }
    // One more publish completes, and the index lists every version there is;
    // the temporary folders of the killed ones are gone.
    ok(dir, &["publish", "repo", cvl_file.to_str().unwrap()]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("repo/versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let listed: Vec<u64> = index(dir)["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    let on_disk = std::fs::read_dir(dir.join("repo/versions"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().parse::<u64>().ok())
        .count();
    assert_eq!(listed.len(), on_disk);
    assert_eq!(listed, (1..=on_disk as u64).collect::<Vec<_>>());
    ok(dir, &["repo", "verify", "repo"]);
}

#[test]
fn directory_walks_leave_repositories_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cvl_file = stage_firewall(dir);
    // An unformatted source: fmt must reach it, but not the published copy.
    let messy = std::fs::read_to_string(&cvl_file)
        .unwrap()
        .replace("  ", "\t");
    std::fs::write(&cvl_file, &messy).unwrap();
    ok(dir, &["repo", "create", "repo"]);
    ok(dir, &["publish", "repo", cvl_file.to_str().unwrap()]);
    let published = dir.join("repo/versions/1/Firewall.cvl");
    let before = std::fs::read(&published).unwrap();
    ok(dir, &["fmt", "."]);
    assert_eq!(
        std::fs::read(&published).unwrap(),
        before,
        "a published version was reformatted"
    );
    assert_ne!(
        std::fs::read_to_string(&cvl_file).unwrap(),
        messy,
        "the source was not formatted"
    );
    ok(dir, &["repo", "verify", "repo"]);
    let out = ok(dir, &["check", "--format", "json", "."]);
    let checked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(checked
        .as_array()
        .unwrap()
        .iter()
        .all(|d| !d["file"].as_str().unwrap().starts_with("repo/")));
}
