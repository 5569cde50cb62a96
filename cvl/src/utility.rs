//! The utility's administration: where its state lives, the hosts it runs
//! appliances on (`cvl host`), and the pools it allocates from (`cvl pool`).
//! With no host registered, this machine is the one host.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cvl_planner::model::{Change, Pools};

use crate::render::{self, ListFormat};

use cvl_ops::hosts::{hosts_or_local, DEFAULT_HOST_ROOT};

#[derive(clap::Subcommand)]
pub enum HostCommand {
    /// Register a QEMU host reached over SSH (or change one).
    #[command(after_help = "Examples:\n  \
        cvl host add qemu1 --address 198.18.0.11 --memory 65536 --max-vms 40\n      \
        (connects, prints the host key's fingerprint, records nothing)\n  \
        cvl host add qemu1 --address 198.18.0.11 --memory 65536 --max-vms 40 \\\n      \
        --fingerprint SHA256:... --identity ~/.ssh/id_ed25519 --uplink eth0\n\n\
        The host key is the trust anchor: compare the fingerprint with what \
        `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints on the host itself \
        (or give the key with --host-key, as `ssh-keyscan -t ed25519 ADDRESS` prints it). \
        Afterwards cvl refuses the host whenever it presents another key.\n\n\
        The host needs QEMU, qemu-img and iproute2, and a user that may run them and \
        create network links (root). cvl copies itself to ROOT/bin on first use.")]
    Add {
        /// The host's name in the utility (as `cvl host list` shows it).
        name: String,
        /// The SSH address (name or IP); VXLAN between hosts uses it too.
        #[arg(long)]
        address: String,
        /// The SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// The SSH user.
        #[arg(long, default_value = "root")]
        user: String,
        /// A private key file (default: the keys of your SSH agent).
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// The host's SSH public key, OpenSSH format (`ssh-ed25519 AAAA...`).
        #[arg(long, value_name = "KEY", conflicts_with = "fingerprint")]
        host_key: Option<String>,
        /// The fingerprint the host's key must have (`SHA256:...`): cvl
        /// connects, checks it and records the key.
        #[arg(long, value_name = "SHA256:...")]
        fingerprint: Option<String>,
        /// Memory the utility may give VMs there, in MiB.
        #[arg(long, value_name = "MIB")]
        memory: u64,
        /// The most VMs it may run.
        #[arg(long, value_name = "N", default_value_t = 32)]
        max_vms: u32,
        /// The interface VANs reach other hosts through (VXLAN).
        #[arg(long, value_name = "IFACE")]
        uplink: Option<String>,
        /// The agent's folder on the host: disks, caches, the attic.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_HOST_ROOT)]
        root: String,
    },
    /// Accept a registered host's new key (after a reinstall), once its
    /// fingerprint is checked on the host itself.
    Trust {
        /// The host's name in the utility (as `cvl host list` shows it).
        name: String,
        /// The fingerprint the host's key must have (`SHA256:...`).
        #[arg(long, value_name = "SHA256:...")]
        fingerprint: String,
    },
    /// Drain a host: it takes no new VMs, and the next `cvl plan`/`cvl apply`
    /// of each deployment moves its VMs to other hosts (stop, carry the data
    /// disks over, start; the old folders go to the drained host's attic).
    /// With `--live` a running VM moves without stopping: the plan shows
    /// each move `live` or `offline` and why.
    #[command(after_help = "Examples:
          cvl host drain qemu1 --live && cvl apply AcmeSuite.cvl
          cvl host drain qemu1 --undo

        A live move starts the VM on the new host waiting for it, migrates its memory and         its disks' own blocks there while it runs (through the SSH connections cvl holds:         nothing listens on either host's network), and stops it on the old host only once         it runs on the new one; the old host keeps nothing of it. A move that fails leaves         the VM running where it was, with nothing left on the new host. A VM whose program         or parameters change in the same apply, or that is not running, moves offline.")]
    Drain {
        /// The host's name in the utility (as `cvl host list` shows it).
        name: String,
        /// Let the host take VMs again (what moved stays where it is).
        #[arg(long)]
        undo: bool,
        /// Move running VMs live: they keep running while they move, and
        /// stop only for the last instant (QEMU's downtime, shown after).
        #[arg(long, conflicts_with = "undo")]
        live: bool,
    },
    /// Register the command that fences a host (powers it off) when it
    /// stops answering; the utility service runs it before it starts the
    /// host's appliances elsewhere.
    #[command(after_help = "Examples:\n  \
        cvl host set qemu1 --fence 'ipmitool -I lanplus -H qemu1-bmc -U admin -f /etc/cvl/qemu1.ipmi chassis power off'\n  \
        cvl host set qemu1 --no-fence\n\n\
        The command runs on the service's machine through `sh -c`, with CVL_HOST and \
        CVL_HOST_ADDRESS set; it must exit 0 only once the host is off (or otherwise \
        cannot run its VMs), within 120 s. Keep passwords in files the command reads, \
        never in the command itself: it is stored in the state as written.")]
    Set {
        /// The host's name in the utility (as `cvl host list` shows it).
        name: String,
        /// The fence command.
        #[arg(long, value_name = "COMMAND", required_unless_present = "no_fence")]
        fence: Option<String>,
        /// Remove the fence command (the service then waits for a person).
        #[arg(long, conflicts_with = "fence")]
        no_fence: bool,
    },
    /// Fence a host that does not answer: run its fence command, or, with
    /// --confirm-dead, take your word that it is off. A fenced host takes
    /// no VMs, and the next plan recovers its appliances on the other hosts
    /// from their newest backups.
    #[command(
        after_help = "Never confirm a host dead that may still run its VMs (a network \
        split): its appliances would run twice, each writing its own data."
    )]
    Fence {
        /// The host's name in the utility (as `cvl host list` shows it).
        name: String,
        /// You know the host is off: record it fenced without a command.
        #[arg(long)]
        confirm_dead: bool,
    },
    /// Put a fenced host that answers again back into placement; its old
    /// VMs' folders (now running elsewhere) go to its attic first.
    Rejoin {
        /// The host's name in the utility (as `cvl host list` shows it).
        name: String,
    },
    /// List the registered hosts (none: this machine is the one host).
    List {
        /// Output: for people, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Unregister a host that runs nothing.
    Rm {
        /// The host's name (as `cvl host list` shows it).
        name: String,
    },
    /// Serve host operations on stdin/stdout (what the executor starts on
    /// each host; not for people).
    #[command(hide = true)]
    Serve {
        /// The folder the agent keeps caches, VMs and the attic in.
        #[arg(long)]
        root: PathBuf,
    },
    /// Run a program in a VM's jail (what the host agent starts each QEMU
    /// with; not for people).
    #[command(hide = true)]
    Jail {
        /// The jail, as the agent describes it (JSON).
        #[arg(long)]
        spec: String,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        program: Vec<String>,
    },
}

#[derive(clap::Subcommand)]
pub enum PoolCommand {
    /// Show the pools: VAN network numbers, public addresses, the MAC prefix.
    Show {
        /// Output: for people, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Set a pool: `networks FROM-TO` (1-65535; VAN n gets 10.(n/256).(n%256).0/24),
    /// `public FIRST-LAST` (IPv4), `mac-prefix XX:XX:XX` (locally administered).
    Set {
        /// Which pool.
        #[arg(value_enum)]
        pool: PoolName,
        /// networks: FROM-TO (`1-4095`); public: FIRST-LAST addresses
        /// (`198.51.100.10-198.51.100.99`); mac-prefix: three octets (`0a:c7:1a`).
        value: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolName {
    Networks,
    Public,
    MacPrefix,
}

pub fn host(command: HostCommand) -> Result<ExitCode> {
    use cvl_ops::registry;
    match command {
        HostCommand::Serve { root } => return serve(&root),
        HostCommand::Jail { spec, program } => {
            let spec: cvl_executor::agent::jail::Spec =
                serde_json::from_str(&spec).context("--spec is not a jail")?;
            eprintln!("{}", cvl_executor::agent::jail::run(&spec, &program));
            return Ok(ExitCode::from(126));
        }
        HostCommand::Add {
            name,
            address,
            port,
            user,
            identity,
            host_key,
            fingerprint,
            memory,
            max_vms,
            uplink,
            root,
        } => {
            registry::add(registry::NewHost {
                name: name.clone(),
                address,
                port,
                user,
                identity,
                host_key,
                fingerprint,
                memory_mib: memory,
                max_vms,
                uplink,
                root,
            })?;
            eprintln!("host {name} registered");
        }
        HostCommand::Drain { name, undo, live } => {
            let on = registry::drain(&name, undo, live)?;
            let how = if live { " live" } else { "" };
            if undo {
                eprintln!("host {name} takes VMs again");
            } else if on.is_empty() {
                eprintln!("host {name} is drained{how}; it runs nothing");
            } else {
                eprintln!(
                    "host {name} is drained{how}; `cvl plan` then `cvl apply` for {} move its \
                     VMs to other hosts",
                    on.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
        }
        HostCommand::Trust { name, fingerprint } => {
            registry::trust(&name, &fingerprint)?;
            eprintln!("host {name}: its key {fingerprint} is now the one trusted");
        }
        HostCommand::Set {
            name,
            fence,
            no_fence: _,
        } => {
            cvl_ops::fence::set_command(&name, fence.as_deref())?;
            match fence {
                Some(_) => eprintln!("host {name}: fence command registered"),
                None => eprintln!("host {name}: no fence command (the service waits for a person)"),
            }
        }
        HostCommand::Fence { name, confirm_dead } => {
            use cvl_ops::fence::How;
            let how = if confirm_dead {
                How::Person
            } else {
                How::Command
            };
            let at = cvl_ops::fence::fence(&name, how)?;
            eprintln!(
                "host {name} is fenced: {at}. It takes no VMs; `cvl plan` shows its appliances \
                 recovered on the other hosts (the utility service recovers them itself)"
            );
        }
        HostCommand::Rejoin { name } => {
            let moved = cvl_ops::fence::rejoin(&name)?;
            for folder in &moved {
                eprintln!("  {folder}");
            }
            eprintln!(
                "host {name} takes VMs again ({} old folder(s) moved to its attic)",
                moved.len()
            );
        }
        HostCommand::List { format } => list_hosts(format)?,
        HostCommand::Rm { name } => {
            registry::remove(&name)?;
            eprintln!("host {name} unregistered");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cvl host list`: each host with what is placed on it.
fn list_hosts(format: ListFormat) -> Result<()> {
    let state = cvl_ops::state::open()?.load()?;
    let hosts = hosts_or_local(&state.hosts);
    if format == ListFormat::Json {
        render::print_json(&serde_json::to_value(&hosts)?)?;
        return Ok(());
    }
    let mut load: std::collections::BTreeMap<&str, (u64, u32)> = Default::default();
    for vm in state.deployments.values().flat_map(|d| d.vms.values()) {
        let l = load.entry(vm.alloc.host.as_str()).or_default();
        l.0 += u64::from(vm.spec.memory_mib);
        l.1 += 1;
    }
    if state.hosts.is_empty() {
        println!("no host registered: this machine is the one host");
    }
    println!(
        "{:<16} {:<24} {:>12} {:>9}  uplink",
        "NAME", "ADDRESS", "MEMORY MiB", "VMS"
    );
    for h in &hosts {
        let (mem, count) = load.get(h.name.as_str()).copied().unwrap_or_default();
        let address = h
            .address
            .as_ref()
            .map_or("(this machine)".to_string(), |a| format!("{a}:{}", h.port));
        let uplink = h.uplink.as_deref().unwrap_or("-");
        println!(
            "{:<16} {:<24} {:>12} {:>9}  {uplink}{}",
            h.name,
            address,
            format!("{mem}/{}", h.memory_mib),
            format!("{count}/{}", h.max_vms),
            match (&h.fenced, h.draining) {
                (Some(at), _) => format!("  (fenced {at})"),
                (None, true) if h.drain_live => "  (draining live)".to_string(),
                (None, true) => "  (draining)".to_string(),
                (None, false) => String::new(),
            }
        );
    }
    Ok(())
}

pub fn pool(command: PoolCommand) -> Result<ExitCode> {
    let mut store = cvl_ops::state::open()?;
    let state = store.load()?;
    match command {
        PoolCommand::Show { format } => {
            let p = &state.pools;
            match format {
                ListFormat::Json => render::print_json(&serde_json::json!({
                    "networks": [p.networks.0, p.networks.1],
                    "public": [p.public.0.to_string(), p.public.1.to_string()],
                    "mac_prefix": mac_prefix(p),
                }))?,
                ListFormat::Human => {
                    println!(
                        "networks    {}-{}  (VAN n gets 10.(n/256).(n%256).0/24)",
                        p.networks.0, p.networks.1
                    );
                    println!("public      {}-{}", p.public.0, p.public.1);
                    println!("mac-prefix  {}", mac_prefix(p));
                }
            }
        }
        PoolCommand::Set { pool, value } => {
            let mut pools = state.pools.clone();
            match pool {
                PoolName::Networks => {
                    let (a, b) = range(&value)?;
                    let (a, b): (u32, u32) = (
                        a.parse().context("networks: FROM is not a number")?,
                        b.parse().context("networks: TO is not a number")?,
                    );
                    if a == 0 || b > 65535 || a > b {
                        bail!("networks must be FROM-TO within 1-65535, FROM <= TO");
                    }
                    pools.networks = (a, b);
                }
                PoolName::Public => {
                    let (a, b) = range(&value)?;
                    let (a, b): (Ipv4Addr, Ipv4Addr) = (
                        a.parse().context("public: FIRST is not an IPv4 address")?,
                        b.parse().context("public: LAST is not an IPv4 address")?,
                    );
                    if u32::from(a) > u32::from(b) {
                        bail!("public: FIRST must not be after LAST");
                    }
                    pools.public = (a, b);
                }
                PoolName::MacPrefix => {
                    let prefix = cvl_state::parse_prefix(&value)
                        .context("mac-prefix must be three hex bytes, e.g. 0a:c7:1a")?;
                    if prefix[0] & 1 != 0 || prefix[0] & 2 == 0 {
                        bail!(
                            "mac-prefix {value} must be unicast and locally administered (first \
                             byte with bit 0 clear and bit 1 set, e.g. 02, 0a, 52)"
                        );
                    }
                    pools.mac_prefix = prefix;
                }
            }
            store.commit(&[Change::PoolsSet(pools)])?;
            eprintln!("pool updated; what is allocated keeps its values");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn range(text: &str) -> Result<(&str, &str)> {
    text.split_once('-')
        .map(|(a, b)| (a.trim(), b.trim()))
        .with_context(|| format!("`{text}` is not FIRST-LAST"))
}

fn mac_prefix(p: &Pools) -> String {
    let m = p.mac_prefix;
    format!("{:02x}:{:02x}:{:02x}", m[0], m[1], m[2])
}

/// `cvl host serve --root ROOT`: the host agent on stdin/stdout.
pub fn serve(root: &Path) -> Result<ExitCode> {
    // The executor may vanish (killed, or its SSH connection cut): an answer
    // that cannot be written is dropped, and the operations under way
    // finish (each removes its parameters file), rather than the agent
    // dying of SIGPIPE in the middle of them.
    // SAFETY: setting a signal's disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    cvl_executor::agent::serve(root, stdin.lock(), stdout)?;
    Ok(ExitCode::SUCCESS)
}
