//! Each VM's QEMU in a jail of its own, as Firecracker's jailer and
//! libvirt's per-VM user do it. An appliance is someone else's software and
//! QEMU's emulated devices are its attack surface, so a guest that escapes
//! QEMU must find an unprivileged process that sees nothing of the host:
//!
//! - **Its own user.** Every VM has a uid (and gid) of its own from
//!   [`UID_BASE`], allocated once by the agent and recorded in the VM's
//!   folder (`uid`); QEMU never runs as root, not even to start.
//! - **Its own files only.** The jailer (`cvl host jail`, this module's
//!   [`run`]) unshares a mount namespace and pivots into a tmpfs root that
//!   holds `/usr` and the loader's cache read-only, `/dev/null`, the random
//!   devices, nodes of its own for `/dev/net/tun` (its taps are created for
//!   its uid) and `/dev/kvm` when used, the VM's folder read-write (no
//!   exec), and the
//!   program files and the parameters file it boots from read-only. The
//!   state, other VMs' folders, `/etc` and `/root` are not there.
//! - **No new privileges, few system calls.** `PR_SET_NO_NEW_PRIVS`, then
//!   QEMU's own seccomp filter (`-sandbox on` with obsolete calls,
//!   privilege elevation, spawning and resource control denied).
//! - **Bounded.** A cgroup per VM (`vm-UID`): its memory plus QEMU's
//!   overhead, and a CPU weight by its vCPUs; past the limit the kernel
//!   kills that QEMU alone.
//!
//! The VM's folder stays root's (mode 1770, group the VM's): QEMU creates
//! its sockets, pidfile and console there, and can remove nothing of the
//! agent's (the sticky bit), and the agent reads what QEMU wrote without
//! following links (`open_vm_file`) and holds the pidfile to the VM's uid.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

/// The first uid (and gid) given to a VM: far above any distribution's
/// users and systemd's dynamic ones.
pub const UID_BASE: u32 = 0x7000_0000;
/// How many uids VMs may take on one host.
const UID_SPAN: u32 = 1 << 24;

/// The name of a VM folder's file recording its uid (the agent's own,
/// root's).
pub(super) const UID_FILE: &str = "uid";
/// The folder in a VM's folder the jail's root is mounted on.
pub(super) const ROOT_DIR: &str = "jail";
/// Where QEMU's own output goes (the jailer's errors too).
pub(super) const LOG_FILE: &str = "qemu.log";

/// A jail, as the agent asks the jailer for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The VM's folder: QEMU's working folder, the one it may write in.
    pub dir: PathBuf,
    /// The VM's uid, and gid.
    pub uid: u32,
    /// Host files and folders QEMU reads (programs, the parameters file),
    /// bound at the same paths, read-only.
    pub read_only: Vec<PathBuf>,
    /// Device nodes besides null, zero, full and the random ones.
    pub devices: Vec<PathBuf>,
    /// The cgroup's memory limit.
    pub memory_mib: u64,
    /// The VM's vCPUs (its CPU weight).
    pub vcpus: u32,
}

impl Spec {
    /// The cgroup's name.
    pub fn cgroup(&self) -> String {
        cgroup_name(self.uid)
    }
}

/// The cgroup of the VM with `uid`.
pub(super) fn cgroup_name(uid: u32) -> String {
    format!("vm-{uid}")
}

/// The size of TCG's translation cache QEMU is started with, in MiB
/// (QEMU's default is 1 GiB, grown as the guest runs).
pub const TCG_CACHE_MIB: u64 = 256;

/// The memory QEMU needs besides the guest's (its own code, buffers and
/// devices, and under TCG its translation cache), in MiB. Measured: a
/// Debian guest of 160 MiB under TCG with the default cache grew to 575
/// MiB, one of 512 MiB to 980 MiB.
pub fn overhead_mib(memory_mib: u64, accel: &str) -> u64 {
    let cache = if accel == "tcg" { TCG_CACHE_MIB } else { 0 };
    cache + 256 + memory_mib / 8
}

/// Whether the kernel killed a process of the VM's cgroup for going past
/// its memory limit.
pub fn oom_killed(uid: u32) -> bool {
    let name = cgroup_name(uid);
    let v2 = Path::new(V2_ROOT)
        .join(V2_PARENT)
        .join(&name)
        .join("memory.events");
    let v1 = Path::new(V1_ROOT)
        .join("memory")
        .join(V1_PARENT)
        .join(&name)
        .join("memory.oom_control");
    [v2, v1]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.strip_prefix("oom_kill "))
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .any(|n| n > 0)
}

/// Where this machine counts the uids it gave VMs: one counter for every
/// agent root on it (the test lab runs several hosts on one machine), so
/// that no two VMs on a machine share a uid.
const UID_COUNTER: &str = "/var/lib/cvl/jail/next-uid";

/// The uid of the VM whose folder is `dir`: the one recorded there, else
/// the machine's next (its counter under its lock; never given twice).
pub(super) fn uid_of(dir: &Path) -> Result<u32, String> {
    let recorded = dir.join(UID_FILE);
    if let Ok(text) = std::fs::read_to_string(&recorded) {
        return text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|u| (UID_BASE..UID_BASE + UID_SPAN).contains(u))
            .ok_or_else(|| format!("{} is damaged: {text:?}", recorded.display()));
    }
    let counter = Path::new(UID_COUNTER);
    let folder = counter.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let lock = std::fs::File::create(folder.join("uids.lock"))
        .map_err(|e| format!("cannot lock the uid counter: {e}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err("cannot lock the uid counter".to_string());
    }
    let next = std::fs::read_to_string(counter)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(UID_BASE);
    if next >= UID_BASE + UID_SPAN {
        return Err(format!(
            "this machine has given out all {UID_SPAN} VM uids ({UID_COUNTER})"
        ));
    }
    cvl_repo::write_atomic(counter, (next + 1).to_string().as_bytes())
        .map_err(|e| format!("cannot write {UID_COUNTER}: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    cvl_repo::write_atomic(&recorded, next.to_string().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", recorded.display()))?;
    Ok(next)
}

/// Makes a VM's folder ready for its jailed QEMU: root's, group the VM's,
/// mode 1770; its disks the VM's own (mode 0600); what an earlier QEMU
/// left (a pidfile, sockets) gone, its console the VM's; the jail's mount
/// point there.
pub(super) fn prepare_dir(dir: &Path, uid: u32) -> Result<(), String> {
    let chown = |path: &Path, owner: Option<u32>, group: u32| {
        std::os::unix::fs::lchown(path, owner, Some(group))
            .map_err(|e| format!("cannot give {} to uid {uid}: {e}", path.display()))
    };
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
    };
    chown(dir, Some(0), uid)?;
    chmod(dir, 0o1770)?;
    let root = dir.join(ROOT_DIR);
    match std::fs::symlink_metadata(&root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => std::fs::remove_file(&root).map_err(|e| e.to_string())?,
        Err(_) => std::fs::create_dir(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?,
    }
    chown(&root, Some(0), 0)?;
    chmod(&root, 0o755)?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if name.ends_with(".qcow2") && meta.is_file() {
            chown(&path, Some(uid), uid)?;
            chmod(&path, 0o600)?;
        } else if name == "console.log" || name == LOG_FILE {
            // Written by QEMU (an earlier one may have been root, or
            // left a link): the agent starts it afresh, the VM's.
            let _ = std::fs::remove_file(&path);
        } else if name.ends_with(".sock") || name == "qemu.pid" {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}

/// Opens a file QEMU wrote in a VM's folder for reading: never through a
/// link (a jailed QEMU owns its files, and could point one anywhere), and
/// only a regular file.
pub fn open_vm_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// The uid a process runs as, from `/proc`.
pub(super) fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// Removes a VM's cgroup once its QEMU is gone. The kernel may hold a
/// cgroup busy for a moment after its last process exited: tried again
/// for up to a second.
pub(super) fn remove_cgroup(uid: u32) {
    let name = cgroup_name(uid);
    let v1 = |controller: &str| {
        PathBuf::from(V1_ROOT)
            .join(controller)
            .join(V1_PARENT)
            .join(&name)
    };
    for dir in [
        PathBuf::from(V2_ROOT).join(V2_PARENT).join(&name),
        v1("memory"),
        v1("cpu"),
    ] {
        for _ in 0..50 {
            match std::fs::remove_dir(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => break,
            }
        }
    }
}

/// Makes the host's cgroup hierarchies visible where a fresh sysfs hides
/// them: `ip netns exec` (how the demo and the tests run a host in a
/// network namespace) mounts a new `/sys` with an empty `/sys/fs/cgroup`.
/// Then the hierarchies init's namespace has there are mounted again, in
/// this process's mount namespace only (the same hierarchies: v1's by
/// their controllers, v2's by its type). Never touches a populated
/// `/sys/fs/cgroup`. Called by the agent before it starts any thread.
pub fn ensure_cgroups_visible() {
    let base = Path::new(V2_ROOT);
    if std::fs::read_dir(base).map_or(true, |mut d| d.next().is_some()) {
        return;
    }
    let Ok(mounts) = std::fs::read_to_string("/proc/1/mounts") else {
        return;
    };
    let generic = [
        "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec",
    ];
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [source, target, kind, options, ..] = fields[..] else {
            continue;
        };
        let target = Path::new(target);
        if !target.starts_with(base) || !matches!(kind, "tmpfs" | "cgroup" | "cgroup2") {
            continue;
        }
        if kind == "tmpfs" && target != base {
            continue;
        }
        let data: Vec<&str> = options
            .split(',')
            .filter(|o| !generic.contains(o))
            .collect();
        let _ = std::fs::create_dir_all(target);
        let _ = mount(
            Some(source),
            target,
            Some(kind),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(data.join(",").as_str()),
        );
    }
}

const V2_ROOT: &str = "/sys/fs/cgroup";
const V2_PARENT: &str = "cvl.vms";
const V1_ROOT: &str = "/sys/fs/cgroup";
const V1_PARENT: &str = "cvl";

/// The jailer: `cvl host jail --spec JSON -- QEMU ARGS...`. Puts itself in
/// the VM's cgroup, in a session and mount namespace of its own, pivots
/// into the jail, drops to the VM's uid and execs `program`. Returns only
/// when it could not.
pub fn run(spec: &Spec, program: &[String]) -> String {
    let started = std::time::Instant::now();
    let entered = enter(spec);
    if let Err(e) = entered {
        return format!("cvl jail: {e}");
    }
    let Some((name, args)) = program.split_first() else {
        return "cvl jail: no program to run".to_string();
    };
    eprintln!(
        "cvl jail: uid {}, cgroup {}, {} ms to set up; running {name}",
        spec.uid,
        spec.cgroup(),
        started.elapsed().as_millis()
    );
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(name)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .exec();
    format!("cvl jail: cannot run {name}: {error}")
}

fn enter(spec: &Spec) -> Result<(), String> {
    if !spec.dir.is_absolute() || spec.read_only.iter().any(|p| !p.is_absolute()) {
        return Err("every path of a jail is absolute".to_string());
    }
    if !(UID_BASE..UID_BASE + UID_SPAN).contains(&spec.uid) {
        return Err(format!("uid {} is not a VM's", spec.uid));
    }
    // Its own session: no signal of the agent's (an SSH session ending)
    // reaches it.
    let _ = nix::unistd::setsid();
    cgroup(spec)?;
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
        .map_err(|e| format!("cannot unshare a mount namespace: {e}"))?;
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("cannot make the mounts private: {e}"))?;
    let root = spec.dir.join(ROOT_DIR);
    // Not nodev: the VM's own device nodes are made here (below).
    mount(
        Some("cvl-jail"),
        &root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=1m"),
    )
    .map_err(|e| format!("cannot mount the jail's root on {}: {e}", root.display()))?;
    // The system QEMU runs from: /usr, and the top-level links to it.
    bind(&root, Path::new("/usr"), Access::ReadOnly)?;
    for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(name);
        match std::fs::read_link(&host) {
            Ok(target) => std::os::unix::fs::symlink(&target, root.join(name))
                .map_err(|e| format!("cannot link {name}: {e}"))?,
            Err(_) if host.is_dir() => bind(&root, &host, Access::ReadOnly)?,
            Err(_) => {}
        }
    }
    if Path::new("/etc/ld.so.cache").exists() {
        bind(&root, Path::new("/etc/ld.so.cache"), Access::ReadOnly)?;
    }
    for device in ["null", "zero", "full", "random", "urandom"] {
        bind(&root, &Path::new("/dev").join(device), Access::Device)?;
    }
    // The ones only root may open on the host (/dev/net/tun, /dev/kvm):
    // a node of the jail's own, the VM's alone.
    for device in &spec.devices {
        own_device(&root, device, spec.uid)?;
    }
    for path in &spec.read_only {
        bind(&root, path, Access::ReadOnly)?;
    }
    bind(&root, &spec.dir, Access::Writable)?;
    // Into it; the host's root detached.
    std::env::set_current_dir(&root).map_err(|e| e.to_string())?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("cannot pivot into the jail: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("cannot detach the host: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| e.to_string())?;
    mount(
        none,
        "/",
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        none,
    )
    .map_err(|e| format!("cannot make the jail's root read-only: {e}"))?;
    std::env::set_current_dir(&spec.dir)
        .map_err(|e| format!("cannot enter {}: {e}", spec.dir.display()))?;
    // The VM's user, for good.
    let (uid, gid) = (Uid::from_raw(spec.uid), Gid::from_raw(spec.uid));
    nix::unistd::setgroups(&[]).map_err(|e| format!("cannot drop groups: {e}"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("cannot set the gid: {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("cannot set the uid: {e}"))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot set no-new-privileges: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A character device like the host's `device`, at the same path under
/// `root`, that `uid` alone may open.
fn own_device(root: &Path, device: &Path, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(device).map_err(|e| format!("{}: {e}", device.display()))?;
    if !meta.file_type().is_char_device() {
        return Err(format!("{} is not a character device", device.display()));
    }
    let target = root.join(device.strip_prefix("/").unwrap_or(device));
    std::fs::create_dir_all(target.parent().unwrap_or(root))
        .map_err(|e| format!("cannot make {}: {e}", target.display()))?;
    nix::sys::stat::mknod(
        &target,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        meta.rdev(),
    )
    .map_err(|e| format!("cannot make {}: {e}", target.display()))?;
    std::os::unix::fs::chown(&target, Some(uid), Some(uid))
        .map_err(|e| format!("cannot give {} to uid {uid}: {e}", target.display()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadOnly,
    Writable,
    Device,
}

/// Binds the host's `path` at the same path under `root`.
fn bind(root: &Path, path: &Path, access: Access) -> Result<(), String> {
    let target = root.join(path.strip_prefix("/").unwrap_or(path));
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let made = if meta.is_dir() {
        std::fs::create_dir_all(&target)
    } else {
        std::fs::create_dir_all(target.parent().unwrap_or(root))
            .and_then(|()| std::fs::File::create(&target).map(drop))
    };
    made.map_err(|e| format!("cannot make {} in the jail: {e}", target.display()))?;
    let none: Option<&str> = None;
    mount(Some(path), &target, none, MsFlags::MS_BIND, none)
        .map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    let flags = match access {
        Access::Device => return Ok(()),
        Access::ReadOnly => MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Access::Writable => MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    };
    mount(
        none,
        &target,
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
        none,
    )
    .map_err(|e| format!("cannot restrict {}: {e}", path.display()))
}

/// Puts this process (the QEMU to be) in the VM's cgroup: memory and CPU,
/// with cgroup v2 where its controllers are enabled, else v1's.
fn cgroup(spec: &Spec) -> Result<(), String> {
    let pid = std::process::id().to_string();
    let limit = (spec.memory_mib << 20).to_string();
    let write = |path: PathBuf, value: &str| {
        std::fs::write(&path, value).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let v2 = Path::new(V2_ROOT);
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        let parent = v2.join(V2_PARENT);
        let _ = std::fs::create_dir(&parent);
        for at in [v2.to_path_buf(), parent.clone()] {
            write(at.join("cgroup.subtree_control"), "+memory")?;
            let _ = write(at.join("cgroup.subtree_control"), "+cpu");
        }
        let dir = parent.join(spec.cgroup());
        let _ = std::fs::create_dir(&dir);
        write(dir.join("memory.max"), &limit)?;
        let _ = write(dir.join("memory.swap.max"), "0");
        let _ = write(
            dir.join("cpu.weight"),
            &(100 * spec.vcpus.max(1)).to_string(),
        );
        return write(dir.join("cgroup.procs"), &pid);
    }
    let memory = Path::new(V1_ROOT).join("memory");
    if !memory.join("memory.limit_in_bytes").exists() {
        return Err(
            "this host has no memory cgroup controller (neither cgroup v2's nor v1's under \
             /sys/fs/cgroup): a VM's memory could not be bounded"
                .to_string(),
        );
    }
    let dir = memory.join(V1_PARENT).join(spec.cgroup());
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write(dir.join("memory.limit_in_bytes"), &limit)?;
    let swap = dir.join("memory.memsw.limit_in_bytes");
    if swap.exists() {
        let _ = write(swap, &limit);
    }
    write(dir.join("cgroup.procs"), &pid)?;
    let cpu = Path::new(V1_ROOT).join("cpu");
    if cpu.join("cpu.shares").exists() {
        let dir = cpu.join(V1_PARENT).join(spec.cgroup());
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write(
            dir.join("cpu.shares"),
            &(1024 * spec.vcpus.max(1)).to_string(),
        )?;
        write(dir.join("cgroup.procs"), &pid)?;
    }
    Ok(())
}

/// The memory limit the VM's cgroup holds, in bytes, if it has one.
pub fn memory_limit(uid: u32) -> Option<u64> {
    let name = cgroup_name(uid);
    let v2 = Path::new(V2_ROOT)
        .join(V2_PARENT)
        .join(&name)
        .join("memory.max");
    let v1 = Path::new(V1_ROOT)
        .join("memory")
        .join(V1_PARENT)
        .join(&name)
        .join("memory.limit_in_bytes");
    [v2, v1]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.trim().parse().ok())
}
