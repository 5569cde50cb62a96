//! Shared by the end-to-end tests: the `cvl` binary, the appliance guest
//! (built from Debian packages by scripts/build-guest.sh), the suite
//! published into local repositories, network namespaces that clean up
//! after themselves (their processes killed, the namespace deleted, even
//! when a test fails), a guest-agent client to look inside guests, and the
//! lab of three SSH hosts (`Lab`) that `hosts.rs` and the spread benchmark use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use cvl_executor::qmp::Agent;

/// Tests that boot guests run one at a time: two cores, TCG.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `cvl` binary, built now if needed (this package cannot name
/// another package's binary); `$CVL_E2E_CVL` names another build (a
/// release build, to measure).
pub fn cvl_binary() -> PathBuf {
    if let Some(cvl) = std::env::var_os("CVL_E2E_CVL") {
        let cvl = PathBuf::from(cvl);
        assert!(cvl.is_file(), "CVL_E2E_CVL: no cvl at {}", cvl.display());
        return cvl;
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "cvl", "--bin", "cvl"])
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p cvl failed");
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let cvl = debug.join("cvl");
    assert!(cvl.is_file(), "no cvl at {}", cvl.display());
    stripped(&cvl)
}

/// A copy of `cvl` without its debug information (a fraction of its size),
/// named after the build it comes from: what the lab's hosts are sent as
/// their agent, quick to copy and to start on a busy machine. `cvl` itself
/// when `objcopy` cannot make one.
fn stripped(cvl: &Path) -> PathBuf {
    let meta = std::fs::metadata(cvl).unwrap();
    let built = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("cvl-e2e-{}-{built}", meta.len());
    let out = cvl.with_file_name(&name);
    if out.is_file() {
        return out;
    }
    let part = cvl.with_file_name(format!("{name}.part-{}", std::process::id()));
    let made = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(cvl)
        .arg(&part)
        .status()
        .is_ok_and(|s| s.success());
    if !made || std::fs::rename(&part, &out).is_err() {
        let _ = std::fs::remove_file(&part);
        return cvl.to_path_buf();
    }
    // Copies of earlier builds go.
    for entry in std::fs::read_dir(cvl.parent().unwrap())
        .into_iter()
        .flatten()
        .flatten()
    {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("cvl-e2e-") && file != name && !file.contains(".part-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    out
}

/// The `cvl` a benchmark measures: the release build (built now if
/// needed), or `$CVL_E2E_CVL`.
pub fn release_binary() -> PathBuf {
    if let Some(cvl) = std::env::var_os("CVL_E2E_CVL") {
        return PathBuf::from(cvl);
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "--release", "-p", "cvl", "--bin", "cvl"])
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --release -p cvl failed");
    workspace().join("target/release/cvl")
}

/// The guest's kernel and initramfs (built once, kept in target/).
pub fn guest() -> PathBuf {
    let out = workspace().join("target/cvl-guest");
    let status = Command::new(workspace().join("scripts/build-guest.sh"))
        .arg(&out)
        .status()
        .expect("build-guest.sh runs");
    assert!(status.success(), "scripts/build-guest.sh failed");
    out
}

/// A network namespace of the test's own; dropping it kills every process
/// in it (the QEMUs) and deletes it, with its bridges and taps.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let ns = Netns {
            name: name.to_string(),
        };
        ns.cleanup();
        run(&["ip", "netns", "add", name]);
        run(&["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    fn cleanup(&self) {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // The cgroups of its QEMUs' jails (cvl/vm-UID), to remove once
        // they are gone.
        let mut cgroups = std::collections::BTreeSet::new();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let of = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            for line in of.lines() {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
                let (Some(controllers), Some(path)) = (controllers, path) else {
                    continue;
                };
                if path.contains("/vm-") {
                    for controller in controllers.split(',') {
                        cgroups.insert(if controller.is_empty() {
                            format!("/sys/fs/cgroup{path}")
                        } else {
                            format!("/sys/fs/cgroup/{controller}{path}")
                        });
                    }
                }
            }
            // SAFETY: signalling processes of our own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(200));
        for cgroup in cgroups {
            for _ in 0..50 {
                match std::fs::remove_dir(&cgroup) {
                    Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.cleanup();
    }
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A VM description booting the guest directly, with one small program disk.
pub const DESCRIPTION: &str =
    "memory = 192\nvcpus = 1\nmachine = \"q35\"\n\n[[disk]]\ndevice = \"virtio0\"\n\
    file = \"system.qcow2\"\n\n[boot]\nkernel = \"vmlinuz\"\ninitrd = \"initrd.img\"\n\
    cmdline = \"console=ttyS0 quiet\"\n";

/// Stages `cvl_file` as a publisher keeps it (the guest, a program disk, a
/// VM description under the name its `vm` gives) and returns the staged file.
pub fn stage(dir: &Path, guest: &Path, name: &str, cvl_text: &str, description: &str) -> PathBuf {
    let src = dir.join("src").join(name);
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join(format!("{name}.cvl"));
    std::fs::write(&file, cvl_text).unwrap();
    if let Some(vm) = cvl_text
        .split("vm = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
    {
        std::fs::write(src.join(vm), description).unwrap();
        for f in ["vmlinuz", "initrd.img"] {
            std::fs::copy(guest.join(f), src.join(f)).unwrap();
        }
        if !src.join("system.qcow2").exists() {
            run(&[
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                src.join("system.qcow2").to_str().unwrap(),
                "8M",
            ]);
        }
    }
    file
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            } else if e.file_type().is_ok_and(|t| t.is_file()) {
                out.push(p);
            }
        }
    }
    out
}

/// Whether a process runs (a zombie does not: where PID 1 does not reap
/// orphans, an exited daemon stays one).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// Every process whose command line, or environment where `environ_of`
/// its command line, holds one of `needles`, sampled until `done`.
pub fn sample_processes(
    needles: Vec<String>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    environ_of: fn(&str) -> bool,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut found = Vec::new();
        let mut rounds = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) || rounds == 0 {
            rounds += 1;
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                for what in ["cmdline", "environ"] {
                    if what == "environ" && !environ_of(&cmd) {
                        continue;
                    }
                    let bytes = std::fs::read(entry.path().join(what)).unwrap_or_default();
                    for n in &needles {
                        if contains(&bytes, n) {
                            found.push(format!("pid {} {what}: {cmd}", name.to_string_lossy()));
                        }
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!("sampled the process list {rounds} times");
        found
    })
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

pub const SECRETS: [(&str, &str); 4] = [
    ("CVL_SECRET_ACMESUITE_ROOTPW", "Canary-Root-7Q1x"),
    ("CVL_SECRET_ACMESUITE_ROOTDNPASS", "Canary-Dn-7Q2x"),
    ("CVL_SECRET_ACMESUITE_PROXYPW", "Canary-Proxy-7Q3x"),
    ("CVL_SECRET_ACMESUITE_SMTPPW", "Canary-Smtp-7Q4x"),
];

/// A utility in a folder of its own: `cvl` run in the namespace `ns`, with
/// its home, the suite's repositories (mirrored from file://) and secrets.
pub struct Utility {
    pub dir: PathBuf,
    pub cvl: PathBuf,
    pub ns: String,
    /// The host agents' roots, where their VMs' folders are.
    pub roots: Vec<PathBuf>,
    /// More environment for `cvl` (`CVL_STATE`).
    pub env: Vec<(String, String)>,
    /// Whether `cvl` gets [`SECRETS`] from the environment (as CI does).
    pub env_secrets: bool,
}

impl Utility {
    /// `cvl ARGS` in the utility's namespace, folder and environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .arg(&self.cvl)
            .args(args)
            .current_dir(&self.dir)
            .env("CVL_HOME", self.dir.join("home"))
            .env(
                "CVL_MIRRORS",
                format!(
                    "http://virtualappliance.org/=file://{}/repos/",
                    self.dir.display()
                ),
            )
            .env("CVL_ACCEL", "tcg")
            .env("CVL_KEY_PASSPHRASE", "test publisher passphrase")
            .envs(SECRETS.into_iter().filter(|_| self.env_secrets))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    pub fn cvl(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `cvl ARGS` in the background, its output kept for `wait_with_output`.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `cvl utility run ARGS` in the background, its JSON log (stderr) in
    /// the file `log`: killed when dropped.
    pub fn service(&self, args: &[&str], log: &Path) -> Service {
        let mut all = vec!["utility", "run"];
        all.extend(args);
        let child = self
            .command(&all)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Service {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Stops the whole suite (guests get 20 s to power off); what it said.
    pub fn stop_all(&self) -> String {
        self.ok(&[
            "stop",
            "AcmeSuite.cvl",
            "--auto-approve",
            "--stop-timeout",
            "20",
        ])
    }

    /// Publishes a new DNS version and applies it: only DNS restarts, and
    /// `marker`, written on its data disk before, is there after. Returns
    /// what the apply said.
    pub fn new_dns_version(&self, marker: &str) -> String {
        self.write_data("d", marker);
        let before = self.pids();
        self.publish("DNS", &suite_text("DNS"));
        self.ok(&["update-lock", "AcmeSuite.cvl"]);
        let said = self.ok(&[
            "apply",
            "AcmeSuite.cvl",
            "--auto-approve",
            "--stop-timeout",
            "20",
        ]);
        let after = self.pids();
        for c in ["f", "h", "l", "m", "p"] {
            assert_eq!(before[c], after[c], "{c} restarted");
        }
        assert_ne!(before["d"], after["d"], "d did not restart");
        assert_eq!(
            self.read_data("d", marker.len()),
            marker,
            "d's data disk lost its data"
        );
        said
    }

    /// Whether the guest `component` reaches `ip` (one ping, 3 s): what
    /// ping said when it does not.
    pub fn ping(&self, component: &str, ip: &str) -> Result<(), String> {
        let (code, out) = self
            .agent(component)
            .exec(
                &["/bin/ping", "-c", "1", "-W", "3", ip],
                Duration::from_secs(10),
            )
            .unwrap();
        if code == 0 {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out).into_owned())
        }
    }

    /// Writes `marker` at the start of the guest's data disk (`/dev/vdb`).
    pub fn write_data(&self, component: &str, marker: &str) {
        let script =
            format!("echo {marker} | dd of=/dev/vdb bs=512 count=1 conv=sync 2>/dev/null && sync");
        let (code, out) = self
            .agent(component)
            .exec(&["/bin/sh", "-c", &script], Duration::from_secs(10))
            .unwrap();
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    }

    /// The first `len` bytes of the guest's data disk.
    pub fn read_data(&self, component: &str, len: usize) -> String {
        let (_, data) = self
            .agent(component)
            .exec(
                &["/bin/sh", "-c", &format!("head -c {len} /dev/vdb")],
                Duration::from_secs(10),
            )
            .unwrap();
        String::from_utf8_lossy(&data).into_owned()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cvl(args);
        let said = text(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "cvl {}:\n{said}",
            args.join(" ")
        );
        said
    }

    pub fn publish(&self, name: &str, text: &str) {
        let guest = guest();
        let file = stage(&self.dir, &guest, name, text, DESCRIPTION);
        self.publish_file(name, &file);
    }

    /// The publisher's signing key of this utility's repositories (made on
    /// first use; its passphrase is in every command's environment).
    pub fn key(&self) -> PathBuf {
        let key = self.dir.join("publisher.key");
        if !key.exists() {
            self.ok(&["key", "generate", key.to_str().unwrap()]);
        }
        key
    }

    /// Publishes `file` as the next version of `repos/NAME`, signed (the
    /// repository made, signed, on first use). What `cvl publish` said.
    pub fn publish_file(&self, name: &str, file: &Path) -> String {
        let repo = format!("repos/{name}");
        let key = self.key();
        let key = key.to_str().unwrap();
        if !self.dir.join(&repo).exists() {
            self.ok(&["repo", "create", &repo, "--key", key]);
        }
        self.ok(&["publish", &repo, file.to_str().unwrap(), "--key", key])
    }

    /// Publishes a folder scripts/build-appliance.sh made as the next
    /// version of the appliance `name` (its repository made on first use).
    pub fn publish_built(&self, name: &str, dir: &Path) -> String {
        self.publish_file(name, &dir.join(format!("{name}.cvl")))
    }

    /// `cvl exec AcmeSuite.cvl COMPONENT -- ARGV`: its exit code, standard
    /// output and standard error.
    pub fn exec(&self, component: &str, argv: &[&str]) -> (i32, String, String) {
        let mut args = vec!["exec", "AcmeSuite.cvl", component, "--"];
        args.extend(argv);
        let out = self.cvl(&args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// [`Utility::exec`] that must succeed: its standard output.
    /// `cvl exec -i` with `input` on the command's standard input.
    pub fn exec_with_stdin(
        &self,
        component: &str,
        argv: &[&str],
        input: &str,
    ) -> (i32, String, String) {
        let mut args = vec!["exec", "-i", "AcmeSuite.cvl", component, "--"];
        args.extend(argv);
        let mut child = self
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn exec_ok(&self, component: &str, argv: &[&str]) -> String {
        let (code, out, err) = self.exec(component, argv);
        assert_eq!(
            code, 0,
            "cvl exec {component} -- {argv:?}:
{out}{err}"
        );
        out
    }

    /// The VM's folder, on whichever host runs it.
    pub fn vm_dir(&self, component: &str) -> PathBuf {
        let at = |root: &PathBuf| root.join("vms/AcmeSuite").join(component);
        self.roots
            .iter()
            .map(at)
            .find(|d| d.exists())
            .unwrap_or_else(|| at(&self.roots[0]))
    }

    /// Publishes the suite's seven appliances and writes AcmeSuite.cvl.
    pub fn publish_suite(&self) {
        for name in [
            "Firewall",
            "DHCP",
            "DNS",
            "LDAP",
            "Mail",
            "Plone",
            "GroupwareSuite",
        ] {
            self.publish(name, &suite_text(name));
        }
        std::fs::write(self.dir.join("AcmeSuite.cvl"), suite_text("AcmeSuite")).unwrap();
    }

    pub fn pid(&self, component: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.vm_dir(component).join("qemu.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    pub fn pids(&self) -> BTreeMap<String, Option<u32>> {
        ["f", "h", "d", "l", "m", "p"]
            .iter()
            .map(|c| (c.to_string(), self.pid(c)))
            .collect()
    }

    pub fn agent(&self, component: &str) -> Agent {
        Agent::connect(
            &self.vm_dir(component).join("qga.sock"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("the guest agent of {component}: {e}"))
    }

    pub fn params(&self, component: &str) -> String {
        String::from_utf8(self.agent(component).read_file("/run/cvl/params").unwrap()).unwrap()
    }
}

pub fn suite_text(name: &str) -> String {
    std::fs::read_to_string(workspace().join(format!("examples/groupware/suite/{name}.cvl")))
        .unwrap()
}

/// The utility in a temporary folder, the suite published; the namespace
/// (dropped first: its QEMUs die before their folder goes).
pub fn setup(ns: &str) -> (tempfile::TempDir, Utility, Netns) {
    let (tmp, u, netns) = bare(ns);
    u.publish_suite();
    (tmp, u, netns)
}

/// The utility in a temporary folder with nothing published, running
/// appliances on this machine in the namespace `ns`.
pub fn bare(ns: &str) -> (tempfile::TempDir, Utility, Netns) {
    let tmp = tempfile::tempdir().unwrap();
    let netns = Netns::new(ns);
    let dir = tmp.path().canonicalize().unwrap();
    let u = Utility {
        roots: vec![dir.join("home/host")],
        dir,
        cvl: cvl_binary(),
        ns: ns.to_string(),
        env: Vec::new(),
        env_secrets: true,
    };
    (tmp, u, netns)
}

/// An appliance with nothing to configure, and a VAN of three of it: what
/// users with replicated appliances (two web servers, two resolvers) write.
pub const REPLICA: &str =
    "CVL = \"0.8\";\nReplica extends VMAppliance {\n  vm = \"replica.vmx\";\n}\n";
pub const REPLICAS: &str = "import { url => \"http://virtualappliance.org/Replica\", cvl => \"Replica.cvl\" } Replica;\n\
    Replicas extends VANAppliance {\n  Replica a;\n  Replica b;\n  Replica c;\n  vanIF = \"a.ethernet0\";\n}\n";

/// Publishes [`REPLICA`], writes [`REPLICAS`] as `Replicas.cvl`, applies it
/// from a cold cache and checks that the three started in one go.
pub fn apply_replicas(u: &Utility) -> String {
    u.publish("Replica", REPLICA);
    std::fs::write(u.dir.join("Replicas.cvl"), REPLICAS).unwrap();
    let said = u.ok(&[
        "apply",
        "Replicas.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    assert!(said.contains("Applied 3 action(s) to Replicas"), "{said}");
    assert!(!said.contains("FAILED"), "{said}");
    let status: serde_json::Value =
        serde_json::from_str(&u.ok(&["status", "Replicas.cvl", "--format", "json"])).unwrap();
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{status:#}");
    assert!(
        rows.iter().all(|r| r["agent"] == true && r["drift"] == ""),
        "{status:#}"
    );
    said
}

pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A PostgreSQL server of the test's own (Debian's `postgresql`): a cluster
/// in a temporary folder, listening only on a Unix socket there, stopped
/// and deleted on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The TCP port, for a server started with [`PgServer::start_tls`].
    pub port: Option<u16>,
}

impl PgServer {
    /// A server on a local socket only.
    pub fn start() -> PgServer {
        PgServer::start_with(|_| String::new())
    }

    /// A server on a local socket and on 127.0.0.1 with TLS, whose
    /// certificate names `localhost` only, signed by the CA written to
    /// `ca.pem` (see [`PgServer::file`]); TCP clients must use TLS, and the
    /// role `team`, when it exists, its password.
    pub fn start_tls() -> PgServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut server = PgServer::start_with(|dir| {
            let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
            run(&[
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
                "-keyout",
                &file("ca.key"),
                "-out",
                &file("ca.pem"),
            ]);
            run(&[
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                &file("server.key"),
                "-out",
                &file("server.csr"),
            ]);
            std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
            run(&[
                "openssl",
                "x509",
                "-req",
                "-in",
                &file("server.csr"),
                "-CA",
                &file("ca.pem"),
                "-CAkey",
                &file("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &file("san.ext"),
                "-out",
                &file("server.pem"),
            ]);
            run(&[
                "chown",
                "postgres:postgres",
                &file("server.key"),
                &file("server.pem"),
            ]);
            run(&["chmod", "600", &file("server.key")]);
            // TCP only with TLS: a plain connection is refused.
            std::fs::write(
                dir.join("pg_hba.conf"),
                "local all all trust\nhostssl all team 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            run(&["chown", "postgres:postgres", &file("pg_hba.conf")]);
            format!(
                " -c listen_addresses=127.0.0.1 -p {port} -c ssl=on -c ssl_cert_file={} \
                 -c ssl_key_file={} -c hba_file={}",
                file("server.pem"),
                file("server.key"),
                file("pg_hba.conf")
            )
        });
        server.port = Some(port);
        server
    }

    /// A file in the server's folder (`ca.pem`).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `more` gives the server more options, from the server's folder.
    fn start_with(more: impl FnOnce(&Path) -> String) -> PgServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (Debian's postgresql)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        // The server runs as the `postgres` user: the folder is its.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        run(&["chown", "postgres:postgres", dir.path().to_str().unwrap()]);
        let data = dir.path().join("data");
        let as_postgres = |program: &str, args: &[&str]| {
            let mut all = vec!["runuser", "-u", "postgres", "--"];
            let path = bin.join(program);
            all.push(path.to_str().unwrap());
            all.extend(args);
            run(&all);
        };
        as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let extra = more(dir.path());
        let options = if extra.is_empty() {
            format!("-k {} -c listen_addresses='' -F", dir.path().display())
        } else {
            format!("-k {} -F{extra}", dir.path().display())
        };
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                dir.path().join("server.log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        PgServer {
            dir,
            bin,
            port: None,
        }
    }

    /// A new, empty database, and its URL.
    pub fn database(&self, name: &str) -> String {
        run(&[
            "runuser",
            "-u",
            "postgres",
            "--",
            self.bin.join("createdb").to_str().unwrap(),
            "-h",
            self.dir.path().to_str().unwrap(),
            "-p",
            &self.port.unwrap_or(5432).to_string(),
            name,
        ]);
        self.url(name)
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql:///{database}?user=postgres&host={}&port={}",
            self.dir.path().display(),
            self.port.unwrap_or(5432)
        )
    }

    /// Runs SQL on `database` with psql.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.unwrap_or(5432).to_string()])
            .args(["-U", "postgres", "-d", database, "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// No parameters file is left in /dev/shm (they hold sensitive values):
/// every agent removed its own, however its executor ended.
pub fn assert_no_params_left(u: &Utility) {
    let left = tmpfs_files_left(&["cvl-params-"], Some(&u.roots));
    assert!(left.is_empty(), "parameters files left behind: {left:?}");
}

/// The host agent's files on /dev/shm (`PREFIX-...`) left behind: with
/// `roots`, those of the VMs whose folders are under them (each file
/// belongs to its VM's uid), whatever else runs beside; without, those
/// whose agent (`PREFIX-PID-...`) is gone.
pub fn tmpfs_files_left(prefixes: &[&str], roots: Option<&[PathBuf]>) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let uids: Option<Vec<u32>> = roots.map(|roots| {
        roots
            .iter()
            .flat_map(|r| walk(&r.join("vms")))
            .filter(|f| f.file_name().is_some_and(|n| n == "uid"))
            .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
            .collect()
    });
    walk(Path::new("/dev/shm"))
        .into_iter()
        .filter(|f| {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let Some(rest) = prefixes.iter().find_map(|p| name.strip_prefix(p)) else {
                return false;
            };
            match &uids {
                Some(uids) => std::fs::metadata(f).is_ok_and(|m| uids.contains(&m.uid())),
                None => {
                    let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                    pid.is_none_or(|pid| !alive(pid))
                }
            }
        })
        .collect()
}

/// The three test hosts of [`Lab`] and their addresses on the switch.
pub const HOSTS: [(&str, &str); 3] = [
    ("h1", "198.18.0.11"),
    ("h2", "198.18.0.12"),
    ("h3", "198.18.0.13"),
];

/// The network namespace of a lab node (`ctl` is where `cvl` runs).
pub fn ns(host: &str) -> String {
    format!("cvlm-{host}")
}

/// Runs a command that must succeed; its standard output.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test's network: the switch, the controller, the hosts (dropped in
/// reverse: hosts and their QEMUs first, the switch last).
pub struct Lab {
    dir: PathBuf,
    namespaces: Vec<Netns>,
    sshds: std::cell::RefCell<Vec<Child>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.namespaces.clear(); // kills every process in them
        for mut sshd in self.sshds.take() {
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
    }
}

impl Lab {
    pub fn new(dir: &Path) -> Lab {
        let sw = Netns::new("cvlm-sw");
        run(&[
            "ip", "-n", "cvlm-sw", "link", "add", "sw0", "type", "bridge",
        ]);
        run(&[
            "ip", "-n", "cvlm-sw", "link", "set", "sw0", "mtu", "1600", "up",
        ]);
        let mut namespaces = vec![sw];
        let nodes = [("ctl", "198.18.0.2")].into_iter().chain(HOSTS);
        for (i, (node, address)) in nodes.enumerate() {
            let n = Netns::new(&ns(node));
            let port = format!("p{i}");
            run(&[
                "ip", "-n", "cvlm-sw", "link", "add", &port, "mtu", "1600", "type", "veth", "peer",
                "name", "up0", "netns", &n.name, "mtu", "1600",
            ]);
            run(&[
                "ip", "-n", "cvlm-sw", "link", "set", &port, "master", "sw0", "up",
            ]);
            run(&[
                "ip",
                "-n",
                &n.name,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "up0",
            ]);
            run(&["ip", "-n", &n.name, "link", "set", "up0", "up"]);
            namespaces.push(n);
        }
        namespaces.reverse();
        std::fs::create_dir_all("/run/sshd").unwrap();
        keygen(&dir.join("id_ed25519"));
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        let lab = Lab {
            dir: dir.to_path_buf(),
            namespaces,
            sshds: Default::default(),
        };
        for (host, _) in HOSTS {
            let root = lab.root(host);
            std::fs::create_dir_all(&root).unwrap();
            // This host's accelerator, as the agent remembers it: TCG (KVM
            // hangs guests on these machines).
            std::fs::write(root.join("accel"), "tcg").unwrap();
            lab.new_host_key(host);
            lab.start_sshd(host);
        }
        lab
    }

    pub fn root(&self, host: &str) -> PathBuf {
        self.dir.join(host).join("root")
    }

    pub fn new_host_key(&self, host: &str) {
        let key = self.dir.join(host).join("host_key");
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        keygen(&key);
    }

    /// The arguments of `cvl host add` for a lab host (its fingerprint not
    /// among them), with the identity of [`Lab::new`].
    pub fn host_add_args(&self, host: &str, memory_mib: u32, max_vms: u32) -> Vec<String> {
        let address = HOSTS.iter().find(|(h, _)| *h == host).unwrap().1;
        let identity = self.dir.join("id_ed25519");
        [
            "host",
            "add",
            host,
            "--address",
            address,
            "--memory",
            &memory_mib.to_string(),
            "--max-vms",
            &max_vms.to_string(),
            "--uplink",
            "up0",
            "--identity",
            identity.to_str().unwrap(),
            "--root",
            self.root(host).to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// What `ssh-keygen -lf` prints for the host's key: the fingerprint an
    /// administrator checks on the host itself.
    pub fn fingerprint(&self, host: &str) -> String {
        let key = self.dir.join(host).join("host_key.pub");
        sh(&["ssh-keygen", "-lf", key.to_str().unwrap()])
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    pub fn start_sshd(&self, host: &str) {
        let address = HOSTS.iter().find(|(h, _)| *h == host).unwrap().1;
        let d = self.dir.join(host);
        let config = d.join("sshd_config");
        // A home of the host's own: sessions do not run this machine's
        // root shell setup (a ~/.bashrc that takes locks a killed host
        // would leave held, hanging every later session).
        let home = d.join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            &config,
            format!(
                "ListenAddress {address}\nPort 22\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nSetEnv HOME={}\n",
                d.join("host_key").display(),
                d.join("sshd.pid").display(),
                self.dir.join("authorized_keys").display(),
                home.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns(host),
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd (openssh-server) is installed");
        // Listening once the pidfile is there.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.join("sshd.pid").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.sshds.borrow_mut().push(child);
    }

    /// `cvl` in the controller's namespace, its agents' roots those of
    /// `hosts` (none registered yet: [`Lab::register`]), secrets from the
    /// environment.
    pub fn utility(&self, hosts: &[&str]) -> Utility {
        Utility {
            dir: self.dir.clone(),
            cvl: cvl_binary(),
            ns: ns("ctl"),
            roots: hosts.iter().map(|h| self.root(h)).collect(),
            env: Vec::new(),
            env_secrets: true,
        }
    }

    /// `cvl host add` of a lab host, its fingerprint checked.
    pub fn register(&self, u: &Utility, host: &str, memory_mib: u32, max_vms: u32) {
        let mut add = self.host_add_args(host, memory_mib, max_vms);
        add.extend(["--fingerprint".to_string(), self.fingerprint(host)]);
        u.ok(&add.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// The host dies as in a power cut: every process of its namespace
    /// (sshd, the agent, QEMU) killed at once. Returns when.
    pub fn kill_host(&self, host: &str) -> Instant {
        let died = Instant::now();
        for pid in sh(&["ip", "netns", "pids", &ns(host)]).split_whitespace() {
            // SAFETY: a process of the test's own namespace.
            unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(self.dir.join(host).join("sshd.pid"));
        died
    }

    /// Kills every sshd of the host: the listener and the connections.
    pub fn kill_sshd(&self, host: &str) {
        for pid in sh(&["ip", "netns", "pids", &ns(host)]).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sshd" {
                // SAFETY: a process of the test's own namespace.
                unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_file(self.dir.join(host).join("sshd.pid"));
    }
}

/// Runs a shell script in the guest whose VM folder is `dir` (through its
/// guest agent); its output. The script must succeed.
pub fn in_guest_of(dir: &Path, script: &str) -> String {
    let (code, out) = Agent::connect(&dir.join("qga.sock"), Duration::from_secs(10))
        .unwrap()
        .exec(&["/bin/sh", "-c", script], Duration::from_secs(60))
        .unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(code, 0, "{script}: {out}");
    out
}

/// A new ed25519 key pair without a passphrase at `path` (and `path.pub`).
fn keygen(path: &Path) {
    run(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        path.to_str().unwrap(),
    ]);
}

/// The suite's six real appliances and the next versions of three of them,
/// built from their recipes (appliances/) by scripts/build-appliance.sh, two
/// at a time (the builder caches them in /var/cache/cvl-test): each name
/// (`LDAP`, `LDAP-v2`, ...) and the folder `cvl publish` takes.
pub fn real_appliances() -> BTreeMap<String, PathBuf> {
    let recipes = [
        ("Firewall", "Firewall"),
        ("DHCP", "DHCP"),
        ("DNS", "DNS"),
        ("LDAP", "LDAP"),
        ("Mail", "Mail"),
        ("Plone", "Plone"),
        ("LDAP-v2", "LDAP/v2"),
        ("DNS-v2", "DNS/v2"),
        ("Mail-v2", "Mail/v2"),
    ];
    let out = workspace().join("target/cvl-appliances");
    let started = Instant::now();
    let build = |(name, recipe): (&str, &str)| {
        let dir = out.join(name);
        let said = Command::new(workspace().join("scripts/build-appliance.sh"))
            .arg(workspace().join("appliances").join(recipe))
            .arg(&dir)
            .output()
            .expect("scripts/build-appliance.sh runs");
        assert!(
            said.status.success(),
            "building {name} failed:\n{}",
            text(&said)
        );
        (name.to_string(), dir)
    };
    // Bases first (two at a time), then the variants built on them.
    let mut built = BTreeMap::new();
    for pair in recipes[..6].chunks(2) {
        let done: Vec<_> = std::thread::scope(|scope| {
            let jobs: Vec<_> = pair
                .iter()
                .map(|r| scope.spawn(move || build(*r)))
                .collect();
            jobs.into_iter().map(|j| j.join().unwrap()).collect()
        });
        built.extend(done);
    }
    for r in &recipes[6..] {
        let (name, dir) = build(*r);
        built.insert(name, dir);
    }
    eprintln!(
        "the appliances built (or taken from the cache) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    built
}

/// `GET path` over HTTP/1.0 from the network namespace `ns`: the whole
/// answer, or what went wrong (no connection, not 200).
pub fn http_get_in(ns: &str, host: &str, path: &str) -> Result<String, String> {
    use std::io::Write;
    let host = host.to_string();
    let path = path.to_string();
    in_netns(ns, move || {
        let mut stream = std::net::TcpStream::connect_timeout(
            &format!("{host}:80").parse().unwrap(),
            Duration::from_secs(10),
        )
        .map_err(|e| format!("http://{host}{path}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("http://{host}{path}: {e}"))?;
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer)
            .map_err(|e| format!("http://{host}{path}: {e}"))?;
        if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
            Ok(answer)
        } else {
            Err(format!("http://{host}{path}: {answer}"))
        }
    })
}

/// Runs `f` on a thread inside the network namespace `ns` (sockets it
/// opens live there): the test as the outside world of a deployment.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let handle = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                use std::os::fd::AsRawFd;
                // SAFETY: moves only this thread into the namespace.
                let joined = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
    })
}

/// GET `path` at `addr` (HTTP/1.0) from inside the namespace `ns`: the body.
pub fn get_in(ns: &str, addr: &str, path: &str) -> String {
    in_netns(ns, || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(out)
    })
}

pub mod browser;

/// A generated state for the status page: `deployments` deployments of
/// `per` appliances each, in a VAN of their own (network numbers from 1),
/// recorded running on host `local` (nothing runs: the survey reports
/// drift), each with a plain `title` parameter (`title(d, i)`) and a
/// sensitive `password` whose fingerprint is `FINGERPRINT-d-i`; every
/// appliance but the first requires `DNS`, which the first provides.
pub fn status_state(
    deployments: usize,
    per: usize,
    title: impl Fn(usize, usize) -> String,
) -> Vec<cvl_planner::model::Change> {
    use cvl_planner::model::*;
    let mut changes = vec![Change::HostAdded(Host {
        name: "local".into(),
        port: 22,
        memory_mib: 16384,
        max_vms: 64,
        ..Default::default()
    })];
    for d in 0..deployments {
        let name = format!("D{d:04}");
        let network = d as u32 + 1;
        changes.push(Change::VanRecorded {
            deployment: name.clone(),
            path: ComponentPath::root(),
            network,
        });
        for i in 0..per {
            let mut params = BTreeMap::new();
            params.insert(
                "title".to_string(),
                ParamValue::Plain {
                    values: vec![title(d, i)],
                },
            );
            params.insert(
                "password".to_string(),
                ParamValue::Sensitive {
                    fingerprint: Some(format!("FINGERPRINT-{d}-{i}")),
                    supply: "CVL_SECRET_PASSWORD".into(),
                },
            );
            let ip = format!("10.{}.{}.{}", network >> 8, network & 255, i + 2);
            changes.push(Change::VmRecorded {
                deployment: name.clone(),
                path: ComponentPath(format!("c{i}")),
                record: Box::new(VmRecord {
                    spec: DesiredVm {
                        appliance: ApplianceRef {
                            name: if i == 0 {
                                "DNS".into()
                            } else {
                                format!("App{i}")
                            },
                            source: format!("http://repo.example/App{i}"),
                            version: Some(1),
                            digest: "sha256:00".into(),
                            import_site: None,
                        },
                        params,
                        provides: if i == 0 { vec!["DNS".into()] } else { vec![] },
                        requires: if i == 0 { vec![] } else { vec!["DNS".into()] },
                        memory_mib: 128,
                        data_disks: vec![],
                        agent: true,
                    },
                    alloc: VmAlloc {
                        host: "local".into(),
                        interfaces: BTreeMap::from([(
                            "ethernet0".to_string(),
                            InterfaceAlloc {
                                mac: format!("0a:c7:1a:{:02x}:{:02x}:{:02x}", d >> 8, d & 255, i),
                                ip: Some(ip),
                                network: Some(network),
                                subnet: Some(format!("10.{}.{}.0/24", network >> 8, network & 255)),
                                netmask: Some("255.255.255.0".into()),
                            },
                        )]),
                    },
                    status: Status::Running,
                }),
            });
        }
    }
    changes
}

/// `cvl utility run --http 127.0.0.1:0` on the state in `home`, with more
/// arguments; the child and the address it serves on.
pub fn status_service(cvl: &Path, home: &Path, more: &[&str]) -> (Child, String) {
    let (child, started) = status_service_started(cvl, home, more);
    let addr = started["http"]
        .as_str()
        .expect("no http in the started line")
        .to_string();
    (child, addr)
}

/// [`status_service`], with the whole `started` line (where it serves
/// `/metrics` too, with `--metrics 127.0.0.1:0`).
pub fn status_service_started(
    cvl: &Path,
    home: &Path,
    more: &[&str],
) -> (Child, serde_json::Value) {
    let mut child = Command::new(cvl)
        .args([
            "utility",
            "run",
            "--interval",
            "1h",
            "--http",
            "127.0.0.1:0",
        ])
        .args(more)
        .env("CVL_HOME", home)
        .env("CVL_HOST_ROOT", home.join("host"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = started_event(&mut child);
    (child, started)
}

/// Reads a starting service's log up to its `started` line: the address
/// of its status page. The rest of the log goes on to this test's stderr.
pub fn started_http(child: &mut Child) -> String {
    started_event(child)["http"]
        .as_str()
        .expect("no http in the started line")
        .to_string()
}

/// A starting service's `started` line; the rest of its log goes on to
/// this test's stderr.
pub fn started_event(child: &mut Child) -> serde_json::Value {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = String::new();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("the service stopped before it started:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["event"] == "started" {
            break event;
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("service: {line}");
        }
    });
    addr
}

/// A `cvl utility run` of a test's ([`Utility::service`]).
pub struct Service {
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    /// Its log so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its log lines of the event `name`, oldest first.
    pub fn events(&self, name: &str) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// The first event `name` that `what` accepts, waited for up to `limit`
    /// (else the test fails with the log).
    pub fn wait_for(
        &self,
        name: &str,
        what: impl Fn(&serde_json::Value) -> bool,
        limit: Duration,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            if let Some(e) = self.events(name).into_iter().find(|e| what(e)) {
                return e;
            }
            assert!(
                started.elapsed() < limit,
                "no {name} as expected within {limit:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL (`ip netns exec` execs `cvl`: the service itself).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
