//! Stock cloud images as appliances (docs/cloud-images.md): a Debian 12
//! image with cloud-init, built from Debian packages by
//! scripts/build-cloud-image.sh (no guest kit inside), applied on this
//! machine as a VAN of two: `a` whose image runs the QEMU guest agent, `b`
//! whose image does not. Each gets its address on the interface with its
//! MAC, its hostname and its parameters (a sensitive one included) through
//! a NoCloud seed; they reach each other. Then a restart (cloud-init's
//! per-instance steps do not run again), a resend to `a` (same process),
//! a changed parameter of `b` (the plan says it restarts, and why), and an
//! update of `a` (a new instance to cloud-init, its data disk kept). No seed
//! is left on the host, and the sensitive value is in no file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cvl_e2e::*;

const NS: &str = "cvl-e2e-cloud";
/// The sensitive parameter's value: it must reach `a`'s /run/cvl/params
/// and no file of the host.
const CANARY: &str = "CanaryCloud7Q9x";
/// Cloud-init under TCG takes minutes; two guests share two cores.
const READY_TIMEOUT: &str = "600";

const APPLIANCE: &str = "CVL = \"0.8\";\n\
/* A stock Debian 12 cloud image: cloud-init takes its parameters. */\n\
NAME extends VMAppliance {\n\
EXTRA  var \"required\" \"sensitive\" token;\n\
  var motd;\n\
  datadisks = { device => \"virtio1\", size => \"16M\" };\n\
  vm = \"cloud.vmx\";\n\
}\n";

const DEPLOYMENT: &str = "import { url => \"http://virtualappliance.org/CloudBox\", cvl => \"CloudBox.cvl\" } CloudBox;\n\
import { url => \"http://virtualappliance.org/CloudBare\", cvl => \"CloudBare.cvl\" } CloudBare;\n\
Clouds extends VANAppliance {\n\
  var \"required\" \"sensitive\" token;\n\
  var motd;\n\
  motd = \"MOTD\";\n\
  CloudBox a;\n\
  CloudBare b;\n\
  a.token = token;\n\
  b.token = token;\n\
  a.motd = motd;\n\
  b.motd = motd;\n\
  vanIF = \"a.ethernet1\";\n\
}\n";

#[test]
fn cloud_images_take_their_parameters_through_cloud_init() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let image = cloud_image();
    let (_tmp, mut u, _ns) = bare(NS);
    u.env_secrets = false;
    u.env
        .push(("CVL_SECRET_CLOUDS_TOKEN".into(), CANARY.into()));
    publish_cloud(&u, "CloudBox", &image, "disk.qcow2", true);
    publish_cloud(&u, "CloudBare", &image, "disk-no-agent.qcow2", false);
    write_deployment(&u, "hello");

    // From nothing to two cloud images that cloud-init configured.
    let started = Instant::now();
    let said = apply(&u, &[]);
    eprintln!(
        "apply of two cloud images: {:.1} s\n{said}",
        started.elapsed().as_secs_f64()
    );
    assert!(said.contains("Applied 2 action(s) to Clouds"), "{said}");
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "Clouds.cvl", "--format", "json"])).unwrap();
    let nic = |c: &str, what: &str| {
        plan["allocations"][c]["interfaces"]["ethernet0"][what]
            .as_str()
            .unwrap_or_else(|| panic!("{c}.ethernet0 has no {what}: {plan:#}"))
            .to_string()
    };
    let (a_ip, a_mac, b_ip, b_mac) = (
        nic("a", "ip"),
        nic("a", "mac"),
        nic("b", "ip"),
        nic("b", "mac"),
    );

    // a: its address on the interface with its MAC, its hostname, its
    // parameters at 0600 (the sensitive one too), and it reaches b.
    let iface = exec_ok(
        &u,
        "a",
        &[
            "sh",
            "-c",
            &format!("grep -il '^{a_mac}$' /sys/class/net/*/address"),
        ],
    );
    let iface = iface
        .trim()
        .split('/')
        .nth(4)
        .expect("an interface")
        .to_string();
    let addr = exec_ok(&u, "a", &["ip", "-o", "-4", "addr", "show", "dev", &iface]);
    assert!(addr.contains(&format!("inet {a_ip}/24")), "{addr}");
    assert_eq!(exec_ok(&u, "a", &["hostname"]).trim(), "a");
    let mode = exec_ok(&u, "a", &["stat", "-c", "%a %U", "/run/cvl/params"]);
    assert_eq!(mode.trim(), "600 root");
    let params = exec_ok(&u, "a", &["cat", "/run/cvl/params"]);
    for line in [
        format!("token={CANARY}"),
        "motd=hello".to_string(),
        "name=a".to_string(),
    ] {
        assert!(params.lines().any(|l| l == line), "no {line} in:\n{params}");
    }
    exec_ok(&u, "a", &["ping", "-c", "1", "-W", "5", &b_ip]);
    // b (no guest agent to ask): it answered at its address, from the
    // interface with its MAC (a's neighbour table), and its console's
    // login prompt names it.
    let neighbour = exec_ok(&u, "a", &["ip", "neigh", "show", &b_ip]);
    assert!(neighbour.contains(&b_mac), "{neighbour}");
    let console = vm_dir(&u, "b").join("console.log");
    let prompt = wait_for(Duration::from_secs(90), || {
        let log = std::fs::read(&console).unwrap_or_default();
        contains(&log, "b login:").then_some(())
    });
    assert!(
        prompt.is_some(),
        "b's console shows no login prompt naming it:\n{}",
        String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default())
    );
    let status = u.ok(&["status", "Clouds.cvl", "--format", "json"]);
    assert!(!status.contains("not answering"), "{status}");

    // Nothing of the seed stays on the host; the canary is in no file.
    no_seed_left(&u);
    no_canary(&u);

    // A restart: the same instance to cloud-init, whose per-instance steps
    // do not run again; the parameters are read again.
    let marker = "CVL-CLOUD-DATA-1";
    exec_ok(
        &u,
        "a",
        &[
            "sh",
            "-c",
            &format!("echo {marker} | dd of=/dev/vdb bs=512 count=1 conv=sync 2>/dev/null && sync"),
        ],
    );
    let (instance, ran) = cloud_instance(&u);
    let before = pid(&u, "a");
    u.ok(&[
        "stop",
        "Clouds.cvl",
        "a",
        "--auto-approve",
        "--stop-timeout",
        "30",
    ]);
    let started = Instant::now();
    let said = apply(&u, &["--target", "a"]);
    eprintln!(
        "restart of a (a later boot): {:.1} s\n{said}",
        started.elapsed().as_secs_f64()
    );
    assert_ne!(before, pid(&u, "a"));
    assert_eq!(
        cloud_instance(&u),
        (instance.clone(), ran.clone()),
        "cloud-init ran a's per-instance steps again"
    );
    assert!(exec_ok(&u, "a", &["cat", "/run/cvl/params"]).contains(&format!("token={CANARY}")));

    // A changed parameter: resent to a while it runs; b has no guest
    // agent, so the plan restarts it and says why.
    write_deployment(&u, "changed");
    let plan = u.ok(&["plan", "Clouds.cvl"]);
    assert!(
        plan.contains(
            "resend needs a restart: b has no guest agent (motd \"hello\" -> \"changed\")"
        ),
        "{plan}"
    );
    let pid_a = pid(&u, "a");
    let said = apply(&u, &["--target", "a"]);
    assert!(said.contains("resend"), "{said}");
    assert_eq!(pid_a, pid(&u, "a"), "a restarted for a resend");
    let params = exec_ok(&u, "a", &["cat", "/run/cvl/params"]);
    assert!(params.lines().any(|l| l == "motd=changed"), "{params}");

    // An update: a new instance to cloud-init, which runs its per-instance
    // steps; the data disk keeps its content.
    publish_cloud(&u, "CloudBox", &image, "disk.qcow2", true);
    u.ok(&["update-lock", "Clouds.cvl"]);
    let started = Instant::now();
    let said = apply(&u, &["--target", "a"]);
    eprintln!(
        "update of a (a new instance): {:.1} s\n{said}",
        started.elapsed().as_secs_f64()
    );
    assert!(said.contains("update"), "{said}");
    let (updated, _) = cloud_instance(&u);
    assert_ne!(
        updated, instance,
        "an update is a new instance to cloud-init"
    );
    let data = exec_ok(
        &u,
        "a",
        &["head", "-c", &marker.len().to_string(), "/dev/vdb"],
    );
    assert_eq!(data, marker, "a's data disk lost its content");
    let params = exec_ok(&u, "a", &["cat", "/run/cvl/params"]);
    assert!(params.lines().any(|l| l == "motd=changed"), "{params}");
    no_seed_left(&u);
    no_canary(&u);
    u.ok(&[
        "stop",
        "Clouds.cvl",
        "--auto-approve",
        "--stop-timeout",
        "30",
    ]);
}

/// The cloud image, built (or taken from the cache) by
/// scripts/build-cloud-image.sh.
fn cloud_image() -> PathBuf {
    let out = workspace().join("target/cvl-cloud");
    let started = Instant::now();
    let said = Command::new(workspace().join("scripts/build-cloud-image.sh"))
        .arg(&out)
        .output()
        .expect("scripts/build-cloud-image.sh runs");
    assert!(
        said.status.success(),
        "building the cloud image failed:\n{}",
        text(&said)
    );
    eprintln!(
        "the cloud image built (or taken from the cache) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    out
}

/// Publishes the cloud image as the next version of `name`, as a
/// publisher would: its CVL file, a VM description, the disk and the
/// image's own kernel and initramfs.
fn publish_cloud(u: &Utility, name: &str, image: &Path, disk: &str, agent: bool) {
    let src = u.dir.join("src").join(name);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join(format!("{name}.cvl")),
        APPLIANCE.replace("NAME", name).replace(
            "EXTRA",
            // a is the VAN's exported interface: a second NIC.
            if agent {
                "  Interface ethernet1;\n"
            } else {
                ""
            },
        ),
    )
    .unwrap();
    std::fs::write(
        src.join("cloud.vmx"),
        format!(
            "memory = 512\nguest = \"cloud-init\"\nagent = {agent}\n\n\
             [[disk]]\ndevice = \"virtio0\"\nfile = \"{disk}\"\n\n\
             [boot]\nkernel = \"vmlinuz\"\ninitrd = \"initrd.img\"\n\
             cmdline = \"root=/dev/vda console=ttyS0\"\n"
        ),
    )
    .unwrap();
    for f in [disk, "vmlinuz", "initrd.img"] {
        if !src.join(f).exists() {
            std::fs::hard_link(image.join(f), src.join(f))
                .or_else(|_| std::fs::copy(image.join(f), src.join(f)).map(|_| ()))
                .unwrap();
        }
    }
    u.publish_file(name, &src.join(format!("{name}.cvl")));
}

fn write_deployment(u: &Utility, motd: &str) {
    std::fs::write(u.dir.join("Clouds.cvl"), DEPLOYMENT.replace("MOTD", motd)).unwrap();
}

fn apply(u: &Utility, extra: &[&str]) -> String {
    let mut args = vec![
        "apply",
        "Clouds.cvl",
        "--auto-approve",
        "--stop-timeout",
        "30",
        "--ready-timeout",
        READY_TIMEOUT,
    ];
    args.extend_from_slice(extra);
    u.ok(&args)
}

fn exec_ok(u: &Utility, component: &str, argv: &[&str]) -> String {
    let mut args = vec!["exec", "Clouds.cvl", component, "--"];
    args.extend(argv);
    let out = u.cvl(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "cvl exec {component} -- {argv:?}:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn vm_dir(u: &Utility, component: &str) -> PathBuf {
    u.roots[0].join("vms/Clouds").join(component)
}

fn pid(u: &Utility, component: &str) -> u32 {
    std::fs::read_to_string(vm_dir(u, component).join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// a's cloud-init instance id, and when its per-instance `write_files`
/// ran (its semaphore's mtime).
fn cloud_instance(u: &Utility) -> (String, String) {
    let id = exec_ok(u, "a", &["cat", "/var/lib/cloud/data/instance-id"]);
    let ran = exec_ok(
        u,
        "a",
        &[
            "stat",
            "-c",
            "%Y",
            "/var/lib/cloud/instance/sem/config_write_files",
        ],
    );
    (id.trim().to_string(), ran.trim().to_string())
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + limit;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn no_seed_left(u: &Utility) {
    let left = tmpfs_files_left(&["cvl-seed-", "cvl-params-"], Some(&u.roots));
    assert!(left.is_empty(), "left on the host's tmpfs: {left:?}");
}

/// The canary is in no file of the utility's folder (state, VM folders,
/// disks, logs), nor on QEMU's command line.
fn no_canary(u: &Utility) {
    let out = Command::new("grep")
        .args(["-rlF", "--binary-files=binary", CANARY])
        .arg(&u.dir)
        .arg("/dev/shm")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "files holding the sensitive value"
    );
    for c in ["a", "b"] {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid(u, c))).unwrap();
        assert!(!contains(&cmdline, CANARY), "{c}'s QEMU command line");
    }
}
