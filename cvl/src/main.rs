//! The `cvl` command: the toolchain's front door for publishers, users, CI
//! and administrators. Parses arguments, runs one command, and turns its
//! outcome into an exit code: 0 success, 1 problems found, 2 usage or I/O
//! error.

/// mimalloc, not glibc's malloc: parsing and checking allocate millions of
/// small tree nodes, and glibc both costs more per allocation and hands
/// freed memory back to the kernel at moments that make the next parse fault
/// every page in again (a one-file `cvl check` of 10,000 objects ran a
/// quarter faster, the parser's throughput a tenth; see ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod apply;
mod backup;
mod blacklist;
mod build;
mod check;
mod deploy;
mod eval;
mod exec;
mod files;
mod fmt;
mod history;
mod install;
mod key;
mod moves;
mod render;
mod repo;
mod secrets;
mod service;
mod test;
mod update;
mod utility;
mod workspace;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use codespan_reporting::term::termcolor::ColorChoice;

#[derive(Parser)]
#[command(
    name = "cvl",
    version,
    about = "The CVL toolchain: check, format, evaluate, plan and run virtual appliances",
    long_about = "The CVL toolchain.\n\n\
        CVL (the Collective Virtual appliance Language) describes virtual appliances: VMs and \
        networks of them (VANs), with parameters marked \"required\" or \"sensitive\", \
        components, and lazily evaluated assignments.\n\n\
        Exit codes: 0 success; 1 problems were found (errors in a file, a file that would be \
        reformatted); 2 the command could not run (bad arguments, unreadable file).",
    after_help = "Examples:\n  \
        cvl check --deploy AcmeGroupware AcmeGroupware.cvl   check a user's appliance as deployed\n  \
        cvl check --format sarif . > cvl.sarif              every .cvl file below ., for CI dashboards\n  \
        cvl eval AcmeGroupware.cvl -o AcmeGroupware         every parameter's final value\n  \
        cvl fmt --check .                                   fail (exit 1) if a file is not formatted\n  \
        cvl repo create repos/DNS && cvl publish repos/DNS DNS.cvl\n  \
        cvl check --mirror http://virtualappliance.org/=file:///srv/repos/ AcmeGroupware.cvl\n\n\
        Every command that reads CVL takes --mirror, --offline and --timeout, and those that use \
        cvl.lock take --locked; see each command's --help."
)]
pub(crate) struct Cli {
    /// When to color output.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Where the utility's state is: a SQLite file, or a PostgreSQL URL
    /// (`postgresql://cvl@db.example/cvl`) shared by a team and its CI.
    /// Default: $CVL_STATE, else $CVL_HOME/state.db. Over TCP, TLS as libpq's
    /// sslmode says (`?sslmode=verify-full&sslrootcert=FILE` for a server
    /// across a network). Keep passwords out of the command line: use
    /// $CVL_STATE, PGPASSWORD or ~/.pgpass (PGPASSFILE).
    #[arg(long, global = true, value_name = "FILE|URL")]
    state: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Report every problem in CVL files, with source excerpts.
    #[command(
        after_help = "Exit code 1 when any error is found, 0 when only warnings \
        or hints are, 2 when a file cannot be read.\n\n\
        JSON output is an array of objects with code, severity, message, file, line, column, \
        end_line, end_column (1-based; columns in characters), labels and notes."
    )]
    Check(check::CheckArgs),
    /// Format CVL files in place, or check that they are formatted.
    #[command(
        after_help = "Files with syntax errors are never reformatted: their errors are \
        shown and the exit code is 1. `cvl fmt -` formats standard input to standard output."
    )]
    Fmt(fmt::FmtArgs),
    /// Print every parameter of a deployed object with its final value.
    #[command(
        after_help = "Values the utility allocates at deploy time (interface addresses) \
        print as (allocated at deploy time) in text and null in JSON. Sensitive values never \
        print: a parameter the user supplies at deploy time (`cvl secrets`, CVL_SECRET_...) \
        prints as <sensitive: supplied at deploy time> (JSON: {\"sensitive\": \"supplied at \
        deploy time\"}), one assigned in CVL from a sensitive parameter as <redacted> (JSON: \
        {\"sensitive\": \"redacted\"}); an unset plain parameter is (unset), [] in JSON. Exit \
        code 1 when the file has errors (the values are printed anyway)."
    )]
    Eval(eval::EvalArgs),
    /// Show what deploying an object would do: start, update, resend, stop
    /// and remove actions, in dependency order, each with its reason.
    #[command(
        after_help = "The plan compares the deployed object's CVL (evaluated with the \
        utility's allocations) with the utility's state ($CVL_HOME/state.db). Nothing is \
        changed, but a new state is created on first use. Sensitive parameters come from \
        the environment (CVL_SECRET_<DEPLOYMENT>_<PARAM>, e.g. CVL_SECRET_ACMESUITE_ROOTPW, \
        or a descriptor named by CVL_SECRET_<DEPLOYMENT>_<PARAM>_FD), then from the user \
        agent (`cvl agent`, `cvl secrets`); with a terminal attached, cvl asks for what is \
        missing. They appear only as keyed fingerprints.\n\n\
        Exit codes: 0 success (with --detailed-exitcode: no changes), 1 error (nothing \
        planned), 2 with --detailed-exitcode: the plan has changes.\n\n\
        Examples:\n  cvl plan AcmeSuite.cvl\n  cvl plan AcmeSuite.cvl --target d --out d.plan\n  \
        cvl plan AcmeSuite.cvl --format json --detailed-exitcode   (CI: exit 2 when changes)"
    )]
    Plan(deploy::PlanArgs),
    /// Print a saved plan.
    Show(deploy::ShowArgs),
    /// Carry out a plan on QEMU (this machine): start, update, resend, stop
    /// and remove, in dependency order.
    #[command(
        after_help = "Plans as `cvl plan` does, shows the plan, and asks for `yes` \
        (or --auto-approve, for CI). Independent actions run in parallel; the state is \
        written after every step, so an interrupted apply is finished by the next one. A \
        failed action skips what depends on it; the rest goes on.\n\n\
        VMs live under $CVL_HOST_ROOT (default $CVL_HOME/host): a folder per VM with its \
        overlays and data disks, and an attic for removed ones. The accelerator is KVM where \
        a trial boot works, else TCG; CVL_ACCEL=kvm|tcg overrides it. VANs need root \
        (bridges and taps). An appliance recorded running whose QEMU is gone (it crashed, or \
        its host restarted) is started again, with its data disks.\n\n\
        Exit codes: 0 applied (or nothing to do), 1 an error or a failed action, 2 bad \
        arguments.\n\nExamples:\n  cvl apply AcmeSuite.cvl\n  \
        CVL_SECRET_ACMESUITE_ROOTPW=... cvl apply AcmeSuite.cvl --auto-approve"
    )]
    Apply(apply::ApplyArgs),
    /// Move one VM appliance to another host: live by default (it keeps
    /// running), or stopped, copied and started (--offline).
    #[command(
        after_help = "Plans as `cvl apply --target PATH` does with PATH placed on HOST, shows \
        the plan (the move says `live` or `offline` and why), asks for `yes` (or \
        --auto-approve), and carries it out; the state records PATH on HOST only once it runs \
        there, and later plans keep it there.\n\n\
        Live: HOST's agent starts QEMU waiting for the guest; its memory and its disks' own \
        blocks travel over the SSH connections cvl holds to both hosts; the guest pauses at \
        the end for at most --max-downtime, and the old host's QEMU and folder go only once \
        it runs on HOST. A move that fails at any point leaves it running where it was, with \
        nothing left on HOST. A move is live only when PATH runs and nothing but its host \
        changes (a new version or parameters need a restart: then it is offline, and the \
        plan says why).\n\n\
        Exit codes: 0 moved (or already there), 1 an error or a failed move, 2 bad \
        arguments.\n\nExamples:\n  cvl move AcmeSuite.cvl p --to host2\n  \
        cvl move AcmeSuite.cvl m --to host3 --offline --auto-approve\n  \
        cvl move AcmeSuite.cvl l --to host2 --move-timeout 2m --offline-fallback\n  \
        cvl move AcmeSuite.cvl p --to host2 --format json   (the plan only)"
    )]
    Move(moves::MoveArgs),
    /// Take the newest allowed versions of a deployment's imports (or of one
    /// component's) into cvl.lock, then plan and apply as `cvl apply` does.
    #[command(
        after_help = "The paper's `cui update`. Versions the administrator's blacklist bars \
        are not taken, nor versions that failed their health gate in this deployment (`cvl \
        history` lists them). With PATH only that component's import changes, and only its \
        update (and what it waits for) runs; data disks stay, as in every update.\n\n\
        Examples:\n  cvl update AcmeSuite.cvl\n  cvl update AcmeSuite.cvl d --auto-approve"
    )]
    Update(update::UpdateArgs),
    /// Put a component's previous version back (and its data as it was
    /// before the update, or as it is), and keep the utility service from
    /// taking the version it leaves again.
    #[command(
        after_help = "Pins the component's import in cvl.lock to the newest allowed version \
        before the one it runs (or --to N), records the one it leaves as failed in the \
        deployment (the service takes a newer version, never that one), then plans and applies \
        as `cvl apply` does.\n\nAn appliance with data disks needs --data: `before-update` puts \
        each disk back to the snapshot the update to the version it leaves took (everything \
        written since is lost), `current` starts the older version on the data as it is (which \
        the newer version may have migrated to a format the older cannot read). The history \
        says which.\n\nExamples:\n  cvl rollback AcmeSuite.cvl p\n  \
        cvl rollback AcmeSuite.cvl l --data before-update"
    )]
    Rollback(update::RollbackArgs),
    /// Back up a deployment's data disks into a backup store, live and
    /// incrementally; list, verify or prune the store's restore points.
    #[command(
        after_help = "Each appliance with data disks is backed up by its host into the store \
        (STORE/DEPLOYMENT/PATH/DEVICE/, qcow2 files and a manifest): a folder on that host \
        (/srv/backups), or on another registered host (ssh://HOST/srv/backups: the restore point \
        is made on the appliance's host and carried over the SSH connections cvl holds, each \
        host's key pinned; a host that presents another key is refused). A \
        running appliance is copied live by QEMU, its file systems frozen through its guest \
        agent for the instant the copy starts; after the first (full) copy, each restore \
        point holds only what the guest wrote since the last (a dirty bitmap in the disk, kept \
        across restarts). A backup cut short costs nothing: the next one starts from the last \
        complete restore point. --keep-last / --keep-daily then prune the store as \
        `cvl backup prune` does.\n\n\
        Exit codes: 0 every appliance backed up, 1 one failed (the others are still backed up), \
        2 an error (no such deployment or component, no host to ask).\n\n\
        Examples:\n  cvl backup AcmeSuite.cvl --to /srv/backups\n  \
        cvl backup AcmeSuite.cvl l --to /srv/backups --full\n  \
        cvl backup AcmeSuite.cvl --to /srv/backups --keep-last 24 --keep-daily 7\n  \
        cvl backup AcmeSuite.cvl --to ssh://backup1/srv/backups\n  \
        cvl backup list AcmeSuite.cvl --to /srv/backups --format json\n  \
        cvl backup verify AcmeSuite.cvl --to /srv/backups"
    )]
    Backup(backup::BackupArgs),
    /// Put a component's data disks back to a restore point of a backup
    /// store: it stops, its disks are replaced, it starts again.
    #[command(
        after_help = "Stops the component (and what requires it) as `cvl stop` does, \
        asking first unless --auto-approve; checks every file of the restore point against \
        the store's manifest; replaces each data disk, keeping the data it had beside it \
        (DISK.before-restore-TIME in the VM's folder, until the start after this one); then starts \
        it as `cvl apply` would. --of DEPLOYMENT/PATH restores another appliance's restore \
        points (a copy of production data for a test deployment).\n\n\
        Exit codes: 0 restored and started, 1 the stop or the start failed, 2 an error before \
        anything was replaced (no such restore point, a damaged store).\n\n\
        Examples:\n  cvl restore AcmeSuite.cvl l --from /srv/backups\n  \
        cvl restore AcmeSuite.cvl l --from /srv/backups --id 0003 --auto-approve\n  \
        cvl restore AcmeSuite.cvl l --from /srv/backups --at \"2026-12-06 09:00:00\"\n  \
        cvl restore Staging.cvl l --from /srv/backups --of AcmeSuite/l   # production's data"
    )]
    Restore(backup::RestoreArgs),
    /// Stop a deployment, or one component and everything that requires it.
    #[command(
        after_help = "Stops run dependents first: the guest agent's shutdown, then \
        ACPI, then QEMU's quit after --stop-timeout. `--format json` prints the plan and \
        changes nothing."
    )]
    Stop(apply::StopArgs),
    /// What really runs, asked of the hosts, beside what the state says.
    #[command(
        after_help = "Exit code 1 when anything drifted from the state (a VM that \
        died, one that runs though recorded stopped, a host that does not answer)."
    )]
    Status(apply::StatusArgs),
    /// Run a command in a running appliance through its guest agent, and
    /// exit with its exit code.
    #[command(
        after_help = "The command runs as root in the guest, with its arguments passed as \
        they are (no shell parses them; run `sh -c '...'` for one); its output streams back as \
        it comes. It reaches the guest through the QEMU guest agent, on whichever host runs it: \
        no network and no SSH into the guest.\n\n\
        Exit codes: the command's own; 125 when cvl cannot run it (the appliance is not \
        deployed or not running, its guest agent does not answer); inside the guest, 127 when \
        the command does not exist, 126 when it cannot be executed.\n\n\
        Examples:\n  cvl exec AcmeSuite.cvl d -- cat /run/cvl/dnsmasq.conf\n  \
        cvl exec AcmeSuite.cvl l -- ldapsearch -x -H ldap://localhost -b dc=acme,dc=org\n  \
        cvl exec -i AcmeSuite.cvl l -- ldapadd -Y EXTERNAL -H ldapi:/// < people.ldif"
    )]
    Exec(exec::ExecArgs),
    /// Print a deployment's dependency graph (provides/requires) as Graphviz DOT.
    #[command(after_help = "Example: cvl graph AcmeSuite.cvl | dot -Tsvg > suite.svg")]
    Graph(deploy::GraphArgs),
    /// Register, list and remove the QEMU hosts the utility runs appliances on.
    #[command(subcommand)]
    Host(utility::HostCommand),
    /// What happened to deployments: who or what did what, when, from which
    /// version to which, and how it went.
    #[command(
        after_help = "Every action `cvl apply`, `cvl update`, `cvl rollback`, `cvl stop` and \
        the utility service (`cvl utility run`) carried out, newest last, and what the service \
        left for a person. --format json for scripts."
    )]
    History(history::HistoryArgs),
    /// Show and set what the utility service may do to a deployment by
    /// itself (updates and resends, at any time or in a window; restarts
    /// of crashed appliances; backups on a schedule).
    #[command(subcommand)]
    Policy(history::PolicyCommand),
    /// Show and set the pools the utility allocates from.
    #[command(subcommand)]
    Pool(utility::PoolCommand),
    /// Re-resolve every import (newest allowed versions) and rewrite cvl.lock.
    UpdateLock {
        /// Root files (or directories) whose lock to update.
        files: Vec<PathBuf>,
        #[command(flatten)]
        load: workspace::FetchArgs,
    },
    /// Build an appliance's program from its recipe (Debian packages on a
    /// qcow2 program disk), ready for `cvl publish`; or check that a
    /// rebuild from nothing gives the same image.
    #[command(
        after_help = "Runs the appliance builder (build-appliance.sh: mmdebstrap, \
        mkfs.ext4 -d, no loop device) as root; its progress goes to standard error. Built \
        images are cached by the hash of their inputs (the recipe, the guest kit, the builder, \
        the kernel's version), so a second build of the same recipe takes a moment. The recipe \
        format is in appliances/README.md.\n\n\
        Exit codes: 0 built (with --check: reproducible), 1 the build failed (with --check: \
        the rebuild differs, each difference listed), 2 not a recipe or no builder.\n\n\
        Examples:\n  cvl build appliances/DNS out/DNS && cvl publish repos/DNS out/DNS/DNS.cvl\n  \
        cvl build --check appliances/DNS --format json"
    )]
    Build(build::BuildArgs),
    /// Test an appliance before publishing it: boot it in a sandbox of its
    /// own and check the guest contract and its own checks.
    #[command(
        after_help = "The appliance is published into a repository of the sandbox's own and \
        deployed alone in a VAN, inside a network namespace made for the test (its bridge, tap \
        and routes live there; nothing touches this machine's network, and the utility's state \
        is never opened), then checked step by step: ready within --ready-timeout; \
        /run/cvl/params holds what the appliance evaluates to; an all-zero data disk is \
        formatted and mounted on the first boot; its own checks (every executable in \
        /etc/cvl/test.d/, run through the guest agent) pass; a resend with a changed value runs \
        the reload hook without a restart, and the checks pass again; it powers off within \
        --stop-timeout; a second boot finds the data disk as it was. Each boot's console is kept \
        (--consoles). Needs root (namespaces, bridges, QEMU's jail); everything it made is \
        removed when it ends, and what a killed test left is removed by the next.\n\n\
        With --previous REPO[@VERSION], the upgrade path too: that version boots first and \
        runs its own checks (which may leave data behind), this one then boots on its data disks \
        as an update does (the contract and its checks run there), and a rollback puts the \
        previous version back on the data from before the update, whose checks must pass again.\n\n\
        Exit codes: 0 every step passed, 1 a step failed (each named), 2 the appliance could \
        not be tested (not an appliance, parameters missing, not root).\n\n\
        Examples:\n  cvl build appliances/DNS out/DNS\n  cvl test out/DNS --params dns.params\n  \
        cvl test out/DNS/DNS.cvl --params test.cvl --resend domain=example.net --format junit\n  \
        cvl test out/LDAP-v2 --params ldap.params --previous repos/LDAP"
    )]
    Test(test::TestArgs),
    /// Publish an appliance as the next version of a repository (after
    /// checking it: any error refuses the publish).
    #[command(
        after_help = "A VM appliance's `vm` parameter names its VM description, a TOML file \
        beside the CVL file:\n\n  memory = 256\n  [[disk]]\n  device = \"ide0:0\"\n  \
        file = \"system.qcow2\"\n\n(also vcpus, machine, [boot] kernel/initrd/cmdline; the \
        format is in docs/vm-description.md). It is published with its program disks, as qcow2 \
        deltas on the previous version's; disks named in `datadisks` are the user's and never \
        published.\n\nExample: cvl repo create repos/DNS && cvl publish repos/DNS src/DNS.cvl"
    )]
    Publish(repo::PublishArgs),
    /// Create, list, verify, sign and trust appliance repositories.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Publishers' signing keys for signed repositories.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// The utility administrator's blacklist of repository versions that
    /// must not be run (kept in $CVL_HOME/blacklist.json).
    #[command(subcommand)]
    Blacklist(blacklist::BlacklistCommand),
    /// Run the user agent that keeps sensitive values decrypted in memory
    /// (like ssh-agent), for `cvl plan` and `cvl apply` to ask.
    #[command(
        after_help = "The agent listens on $CVL_AGENT_SOCK (default $CVL_HOME/run/agent.sock, \
        in a folder only you can enter) and answers only processes of your user. Values rest in \
        $CVL_HOME/vault, encrypted with your passphrase (argon2id, XChaCha20-Poly1305); the \
        agent forgets them --lifetime after `cvl secrets unlock`.\n\n\
        Examples:\n  cvl agent && cvl secrets unlock && cvl secrets set AcmeSuite/rootpw\n  \
        cvl agent --status\n  cvl agent --stop"
    )]
    Agent(secrets::AgentArgs),
    /// Set, list and remove sensitive values in the encrypted vault, through
    /// the agent.
    #[command(
        subcommand,
        after_help = "Values are named DEPLOYMENT/PARAMETER, as `cvl plan` lists them \
        (AcmeSuite/rootpw): one value serves every component the deployment passes it to. \
        `cvl plan` and `cvl apply` take a value from CVL_SECRET_<DEPLOYMENT>_<PARAM> (or the \
        descriptor CVL_SECRET_<DEPLOYMENT>_<PARAM>_FD names) first, then from the agent; with \
        a terminal they ask for what is missing."
    )]
    Secrets(secrets::SecretsCommand),
    /// The utility service: keeps deployed appliances up to date by itself.
    #[command(subcommand)]
    Utility(service::UtilityCommand),
    /// Run the language server (LSP over stdin/stdout) for editors.
    #[command(
        after_help = "Editors start it themselves: see editors/ for VS Code, Neovim and Helix.\n\
        It loads every .cvl file of the workspace folder, resolves imports like `cvl check` \
        (mirrors from $CVL_MIRRORS; cvl.lock is read, never written), and publishes the same \
        diagnostics as `cvl check`."
    )]
    Lsp,
    /// Print a shell's completion script for cvl (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Examples:\n  \
        cvl completions bash > /etc/bash_completion.d/cvl\n  \
        cvl completions zsh > \"${fpath[1]}/_cvl\"\n  \
        cvl completions fish > ~/.config/fish/completions/cvl.fish\n\n\
        The Debian package installs the bash, zsh and fish scripts.")]
    Completions {
        /// The shell whose script to print.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages: cvl(1) and one per command (cvl-apply(1), cvl-host-add(1), ...).
    #[command(after_help = "For packagers: `cvl man --out target/man && man -l \
        target/man/cvl-apply.1`. The pages are made from the same text as --help.")]
    Man {
        /// The folder to write the pages into (made if missing).
        #[arg(long, value_name = "DIR", default_value = "man")]
        out: PathBuf,
    },
    /// Print a file's lossless syntax tree and its syntax errors.
    Parse {
        /// The file to parse (`-` for standard input).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // Behave like other Unix tools when output is cut (`cvl eval ... | head`):
    // end quietly instead of failing on a closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // or I/O exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Some(state) = &cli.state {
        cvl_ops::state::set_location(state);
    }
    let color = match cli.color {
        Color::Always => ColorChoice::Always,
        Color::Never => ColorChoice::Never,
        Color::Auto if std::io::stdout().is_terminal() => ColorChoice::Auto,
        Color::Auto => ColorChoice::Never,
    };
    let result = match cli.command {
        Command::Check(args) => check::run(args, color),
        Command::Fmt(args) => fmt::run(args, color),
        Command::Eval(args) => eval::run(args, color),
        Command::Plan(args) => deploy::plan(args, color),
        Command::Show(args) => deploy::show(args),
        Command::Apply(args) => apply::apply(args, color),
        Command::Move(args) => moves::run(args, color),
        Command::Stop(args) => apply::stop(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args, color),
        Command::Update(args) => update::update(args, color),
        Command::Rollback(args) => update::rollback(args, color),
        Command::Status(args) => apply::status(args),
        Command::Exec(args) => exec::run(args),
        Command::Graph(args) => deploy::graph(args, color),
        Command::Host(command) => utility::host(command),
        Command::Pool(command) => utility::pool(command),
        Command::History(args) => history::history(args),
        Command::Utility(command) => service::run(command),
        Command::Policy(command) => history::policy(command),
        Command::UpdateLock { files, load } => update_lock(&files, &load),
        Command::Build(args) => build::run(args),
        Command::Test(args) => test::run(args),
        Command::Publish(args) => repo::publish(args, color),
        Command::Repo(command) => repo::run(command),
        Command::Key(command) => key::run(command),
        Command::Blacklist(command) => blacklist::run(command),
        Command::Agent(args) => secrets::agent(args),
        Command::Secrets(command) => secrets::run(command),
        Command::Lsp => {
            // A server that lives as long as the editor: without transparent
            // huge pages, mimalloc's memory grows 4 KiB at a time, not 2 MiB
            // (lsp_latency bench: 67-69 MiB resident instead of 96-98 on the
            // workspace, 84 instead of 97 on the 1 MB file, latencies within
            // 5%). Commands that run once keep them: fresh memory faults in
            // faster.
            // SAFETY: this prctl only sets a flag on this process's memory.
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
            let previewer = std::sync::Arc::new(cvl_ops::preview::StatePreviewer::default());
            Ok(if cvl_lsp::run_stdio_with(Some(previewer)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Completions { shell } => install::completions(shell),
        Command::Man { out } => install::man(&out),
        Command::Parse { file } => parse(&file),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn update_lock(files: &[PathBuf], fetch: &workspace::FetchArgs) -> anyhow::Result<ExitCode> {
    let load = workspace::LoadArgs::unlocked(fetch);
    let ws = workspace::load(files, &load, cvl_repo::LockMode::Update)?;
    for error in &ws.lock_errors {
        eprintln!("error: {error}");
    }
    for lock in &ws.locks_written {
        eprintln!("wrote {}", lock.display());
    }
    Ok(if ws.lock_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn parse(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let source = files::read(path)?;
    if let Some(bad) = source.invalid_utf8 {
        anyhow::bail!("{}: {bad}", source.name);
    }
    let parsed = cvl_syntax::parse(&source.text);
    print!("{}", parsed.debug_dump());
    Ok(if parsed.errors().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument and option of every command says what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "cvl", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }

    /// The `cvl ...` invocations of a help text's examples (`Examples:`
    /// lines, and `Example: ...`), as words: a line's comment (after a run
    /// of spaces) dropped, cut at pipes, redirections and `&&`, a leading
    /// `VAR=value` skipped.
    fn examples(help: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut in_examples = false;
        // A line ending in ` \` goes on on the next one.
        let mut lines: Vec<String> = Vec::new();
        for line in help.lines() {
            match lines.last_mut() {
                Some(last) if last.ends_with(" \\") => {
                    last.truncate(last.len() - 1);
                    last.push_str(line.trim_start());
                }
                _ => lines.push(line.to_string()),
            }
        }
        for line in &lines {
            let trimmed = line.trim_start();
            // A comment on a line of its own: `(connects, ...)`.
            if in_examples && trimmed.starts_with('(') {
                continue;
            }
            let code = if let Some(rest) = trimmed.strip_prefix("Example:") {
                in_examples = false;
                rest.trim_start()
            } else if trimmed.starts_with("Examples:") {
                in_examples = true;
                continue;
            } else if in_examples && line.starts_with("  ") && !trimmed.is_empty() {
                trimmed
            } else {
                in_examples = false;
                continue;
            };
            let code = code.split("  ").next().unwrap_or_default();
            let words = shell_words::split(code).unwrap_or_else(|e| {
                panic!("an example does not parse as shell words: {code}: {e}")
            });
            for part in words.split(|w| ["|", "&&", "||", ";"].contains(&w.as_str())) {
                let mut part: Vec<String> = part
                    .iter()
                    .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                    .take_while(|w| !w.starts_with('>') && !w.starts_with('<'))
                    .cloned()
                    .collect();
                if part.first().is_some_and(|w| w == "cvl") {
                    part.retain(|w| !w.is_empty());
                    out.push(part);
                }
            }
        }
        out
    }

    /// Every example in every command's help (and so in the manual pages,
    /// made from the same text) parses as written: its commands, options
    /// and values exist and fit.
    #[test]
    fn every_example_in_the_help_parses() {
        fn walk(command: &clap::Command, found: &mut Vec<(String, Vec<String>)>) {
            for help in [command.get_after_help(), command.get_after_long_help()]
                .into_iter()
                .flatten()
            {
                for example in examples(&help.to_string()) {
                    found.push((command.get_name().to_string(), example));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, found);
            }
        }
        let mut found = Vec::new();
        walk(&super::Cli::command(), &mut found);
        assert!(found.len() > 20, "too few examples found: {found:?}");
        let bad: Vec<String> = found
            .iter()
            .filter_map(|(page, words)| {
                let parsed = <super::Cli as clap::Parser>::try_parse_from(words);
                parsed.err().map(|e| {
                    let why = e.to_string();
                    let why = why.lines().next().unwrap_or_default().to_string();
                    format!("{page}: `{}`: {why}", words.join(" "))
                })
            })
            .collect();
        assert!(
            bad.is_empty(),
            "examples that do not parse:\n  {}",
            bad.join("\n  ")
        );
    }

    /// The example finder itself: comments, pipes, redirections, `&&`.
    #[test]
    fn examples_are_found_in_help_text() {
        let help = "Some text.\n\nExamples:\n  cvl a --b   (a comment)\n  \
            X=1 cvl c && cvl d | dot > out.svg\n  cvl e \"two words\" < in\n  \
            cvl g --h \\\n      --i\n      (said of g)\nAfter.\n\
            Example: cvl f";
        let words: Vec<String> = examples(help).into_iter().map(|w| w.join(" ")).collect();
        assert_eq!(
            words,
            [
                "cvl a --b",
                "cvl c",
                "cvl d",
                "cvl e two words",
                "cvl g --h --i",
                "cvl f"
            ]
        );
    }
}
