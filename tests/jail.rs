//! Least privilege, on real QEMU in a namespace the test creates: two
//! appliances applied, and each one's QEMU runs as a user of its own (not
//! root) under its seccomp filter, in a mount namespace where its own
//! folder is there and another VM's data disk, the state database,
//! `/etc/shadow` and `/root` are not, in a cgroup whose memory limit is
//! set; told through its own monitor to open the other VM's disk, it is
//! refused. Then stopped and started again, the same.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cvl_e2e::*;

const ALPHA: &str = "CVL = \"0.8\";\nAlpha extends VMAppliance {\n  \
    datadisks = { device => \"ide0:1\", size => \"16M\" };\n  vm = \"alpha.vmx\";\n}\n";
const DUO: &str =
    "import { url => \"http://virtualappliance.org/Alpha\", cvl => \"Alpha.cvl\" } Alpha;\n\
    Duo extends VANAppliance {\n  Alpha a;\n  Alpha b;\n  vanIF = \"a.ethernet0\";\n}\n";

fn vm_dir(u: &Utility, component: &str) -> PathBuf {
    u.dir.join("home/host/vms/Duo").join(component)
}

fn pid(u: &Utility, component: &str) -> u32 {
    std::fs::read_to_string(vm_dir(u, component).join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A field of `/proc/PID/status`.
fn status(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// Whether `path` can be read from inside the mount namespace of `pid`
/// (as root there: what the jail leaves out is not there at all).
fn readable_in(pid: u32, path: &Path) -> bool {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--", "head", "-c", "1"])
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

/// One QMP command on the VM's monitor: its answer (`return` or `error`).
fn qmp(dir: &Path, command: &str) -> serde_json::Value {
    let stream = UnixStream::connect(dir.join("qmp.sock")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut answer = |send: &str| -> serde_json::Value {
        writeln!(writer, "{send}").unwrap();
        loop {
            let line = lines.next().unwrap().unwrap();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value.get("return").is_some() || value.get("error").is_some() {
                return value;
            }
        }
    };
    // The greeting, then capabilities.
    answer(r#"{"execute":"qmp_capabilities"}"#);
    answer(command)
}

fn blockdev_add(dir: &Path, name: &str, file: &Path) -> serde_json::Value {
    qmp(
        dir,
        &serde_json::json!({
            "execute": "blockdev-add",
            "arguments": {
                "driver": "file", "node-name": name, "read-only": true,
                "filename": file.display().to_string(),
            }
        })
        .to_string(),
    )
}

/// What the jail of `component` must hold, and leave out.
fn check_jailed(u: &Utility, component: &str, other: &str) -> u32 {
    let pid = pid(u, component);
    let uid: u32 = status(pid, "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "{component}'s QEMU runs as root");
    assert!(
        status(pid, "Uid")
            .split_whitespace()
            .all(|u| u == uid.to_string()),
        "{component}: real, effective, saved and fs uid differ: {}",
        status(pid, "Uid")
    );
    assert_eq!(
        status(pid, "Seccomp"),
        "2",
        "{component}: no seccomp filter"
    );
    assert_eq!(
        status(pid, "NoNewPrivs"),
        "1",
        "{component}: may gain privileges"
    );
    assert_eq!(
        status(pid, "CapEff"),
        "0000000000000000",
        "{component}: capabilities"
    );

    // Its own folder is there; nothing else of the host's.
    let own = vm_dir(u, component).join("data-ide0-1.qcow2");
    let theirs = vm_dir(u, other).join("data-ide0-1.qcow2");
    assert!(
        readable_in(pid, &own),
        "{component}: its own disk is not in its jail"
    );
    for path in [
        theirs.clone(),
        u.dir.join("home/state.db"),
        PathBuf::from("/etc/shadow"),
        PathBuf::from("/root"),
    ] {
        assert!(path.exists(), "{} is not on the host", path.display());
        assert!(
            !readable_in(pid, &path),
            "{component}'s jail holds {}",
            path.display()
        );
    }

    // Its cgroup bounds its memory.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let name = format!("vm-{uid}");
    assert!(
        cgroups.contains(&name),
        "{component}: not in {name}:\n{cgroups}"
    );
    let limit = [
        format!("/sys/fs/cgroup/cvl.vms/{name}/memory.max"),
        format!("/sys/fs/cgroup/memory/cvl/{name}/memory.limit_in_bytes"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .expect("a memory cgroup");
    let limit: u64 = limit.trim().parse().expect("a set memory limit");
    assert!(
        limit > 192 << 20 && limit < 2 << 30,
        "{component}'s memory limit is {limit}"
    );

    // Its monitor opens its own files, and cannot reach another VM's.
    let dir = vm_dir(u, component);
    let opened = blockdev_add(&dir, "own", &dir.join("console.log"));
    assert!(opened.get("return").is_some(), "{opened}");
    let refused = blockdev_add(&dir, "theirs", &theirs);
    let said = refused["error"]["desc"].as_str().unwrap_or_default();
    assert!(
        said.contains("No such file or directory"),
        "{component} opened another VM's disk: {refused}"
    );
    eprintln!("{component}: uid {uid}, memory limit {} MiB", limit >> 20);
    uid
}

#[test]
fn every_qemu_runs_as_its_own_user_in_a_jail_of_its_own() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, u, _ns) = bare("cvl-e2e-jail");
    let file = stage(&u.dir, &guest(), "Alpha", ALPHA, DESCRIPTION);
    u.publish_file("Alpha", &file);
    std::fs::write(u.dir.join("Duo.cvl"), DUO).unwrap();
    u.ok(&["apply", "Duo.cvl", "--auto-approve", "--stop-timeout", "10"]);
    let a = check_jailed(&u, "a", "b");
    let b = check_jailed(&u, "b", "a");
    assert_ne!(a, b, "two VMs share a uid");
    // The guest works as before: its agent answers, its data disk writes.
    let out = u.ok(&[
        "exec",
        "Duo.cvl",
        "a",
        "--",
        "/bin/sh",
        "-c",
        "echo jailed > /dev/vdb && echo ok",
    ]);
    assert!(out.lines().any(|l| l == "ok"), "{out}");
    let log = std::fs::read_to_string(vm_dir(&u, "a").join("qemu.log")).unwrap();
    let setup = log
        .lines()
        .find(|l| l.starts_with("cvl jail:"))
        .unwrap_or_else(|| panic!("the jailer said nothing:\n{log}"));
    eprintln!("{setup}");

    // Stopped and started again: the same user, jailed again.
    u.ok(&["stop", "Duo.cvl", "--auto-approve", "--stop-timeout", "10"]);
    for name in [format!("vm-{a}"), format!("vm-{b}")] {
        for root in ["/sys/fs/cgroup/cvl.vms", "/sys/fs/cgroup/memory/cvl"] {
            assert!(
                !Path::new(root).join(&name).exists(),
                "{name}'s cgroup is left after the stop"
            );
        }
    }
    u.ok(&["apply", "Duo.cvl", "--auto-approve", "--stop-timeout", "10"]);
    assert_eq!(check_jailed(&u, "a", "b"), a);
}
