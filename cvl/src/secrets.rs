//! Sensitive values for `cvl plan` and `cvl apply`, and the commands that
//! manage them: `cvl agent` (start, stop, status of the user agent) and
//! `cvl secrets set|list|rm|lock|unlock|passwd`. Values come from the
//! environment first (CI), then from the agent; where both lack one and a
//! terminal is attached, the user is asked without echo.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cvl_planner::lower::SensitiveInput;
use cvl_secrets::client::Client;
use cvl_secrets::protocol::{Request, Secret};
use cvl_secrets::Error;

use crate::utility::ListFormat;

fn home() -> PathBuf {
    cvl_repo::settings::default_home()
}

fn socket() -> PathBuf {
    cvl_secrets::socket_path(&home())
}

#[derive(clap::Args)]
pub struct AgentArgs {
    /// Stay in the foreground (for a service manager) instead of detaching.
    #[arg(long)]
    foreground: bool,
    /// How long values stay decrypted after `cvl secrets unlock`
    /// (`30m`, `8h`); then the agent locks itself.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    lifetime: humantime::Duration,
    /// Stop the running agent (its values are forgotten).
    #[arg(long, conflicts_with_all = ["foreground", "status"])]
    stop: bool,
    /// Whether an agent runs, whether it is locked, and for how long it
    /// keeps its values.
    #[arg(long)]
    status: bool,
}

#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Set a sensitive value (read without echo, or from stdin with --stdin)
    /// and store it in the encrypted vault.
    Set {
        /// DEPLOYMENT/PARAMETER, as `cvl plan` names it: `AcmeSuite/rootpw`.
        name: String,
        /// Read the value from standard input (up to a newline or EOF).
        #[arg(long)]
        stdin: bool,
    },
    /// The names of the values the vault holds (never the values).
    List {
        /// Output: for people, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Remove a value from the vault.
    Rm {
        /// DEPLOYMENT/PARAMETER, as `cvl secrets list` shows it.
        name: String,
    },
    /// Decrypt the vault into the agent (creates the vault on first use).
    Unlock {
        /// Read the passphrase from standard input instead of the terminal.
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Make the agent forget every value until the next unlock.
    Lock,
    /// Change the vault's passphrase.
    Passwd {
        /// Read the old and the new passphrase from standard input, a line each.
        #[arg(long)]
        stdin: bool,
    },
}

/// `cvl agent`.
pub fn agent(args: AgentArgs) -> Result<ExitCode> {
    let socket = socket();
    if args.stop {
        let mut c = Client::connect(&socket)?;
        c.call(&Request::Stop)?;
        eprintln!("stopped the agent on {}", socket.display());
        return Ok(ExitCode::SUCCESS);
    }
    if args.status {
        let status = Client::connect(&socket)?.status()?;
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let lifetime: Duration = args.lifetime.into();
    if args.foreground {
        let memory_locked = cvl_secrets::agent::harden();
        let agent = cvl_secrets::agent::Agent::bind(cvl_secrets::agent::Config {
            socket: socket.clone(),
            vault: cvl_secrets::vault_path(&home()),
            lifetime,
            cost: Default::default(),
            memory_locked,
        })?;
        eprintln!(
            "cvl agent: listening on {} (pid {}); memory {}",
            socket.display(),
            std::process::id(),
            if memory_locked {
                "locked against swapping"
            } else {
                "not locked (RLIMIT_MEMLOCK too low)"
            }
        );
        agent.serve()?;
        return Ok(ExitCode::SUCCESS);
    }
    // Detach: the same command in the foreground, in a session of its own,
    // then wait until it answers.
    if Client::connect(&socket).is_ok() {
        bail!("an agent already answers on {}", socket.display());
    }
    let exe = std::env::current_exe().context("cannot find the cvl executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("agent")
        .arg("--foreground")
        .arg("--lifetime")
        .arg(args.lifetime.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the agent")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = Client::connect(&socket) {
            let status = c.status()?;
            println!(
                "CVL_AGENT_SOCK={}; export CVL_AGENT_SOCK;",
                socket.display()
            );
            eprintln!(
                "cvl agent: running (pid {}); values are forgotten {} after `cvl secrets \
                 unlock`; the vault is {}",
                status.pid, args.lifetime, status.vault
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(code) = child.try_wait()? {
            let mut said = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut said);
            }
            bail!("the agent exited ({code}): {}", said.trim());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the agent did not answer on {} within 10 s",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the user can be asked: a terminal on stdin and /dev/tty.
fn terminal() -> bool {
    std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_ok()
}

fn prompt(text: &str) -> Result<Secret> {
    Ok(Secret::new(
        rpassword::prompt_password(text).context("cannot read from the terminal")?,
    ))
}

fn stdin_line() -> Result<Secret> {
    let mut line = Secret::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// Unlocks the agent, asking for the passphrase on the terminal (twice
/// for a new vault) or reading it from stdin.
fn unlock(c: &mut Client, from_stdin: bool) -> Result<()> {
    let status = c.status()?;
    if status.vault_exists {
        cvl_secrets::vault::Vault::new(&status.vault).check_header()?;
    }
    let create = !status.vault_exists;
    for attempt in 0..3 {
        let passphrase = if from_stdin {
            stdin_line()?
        } else if !terminal() {
            bail!(
                "the agent is locked and no terminal is attached: run `cvl secrets unlock` in \
                 one, or `cvl secrets unlock --passphrase-stdin`"
            );
        } else if create {
            eprintln!(
                "No vault yet: creating {} (encrypted with a passphrase).",
                status.vault
            );
            let a = prompt("New vault passphrase: ")?;
            let b = prompt("Again: ")?;
            if *a != *b {
                eprintln!("The two differ; try again.");
                continue;
            }
            a
        } else {
            prompt(&format!("Passphrase for the vault {}: ", status.vault))?
        };
        if passphrase.is_empty() {
            bail!("an empty passphrase protects nothing: nothing was changed");
        }
        match c.call(&Request::Unlock { passphrase, create }) {
            Ok(_) => return Ok(()),
            Err(Error::WrongPassphrase(m)) if !from_stdin && attempt < 2 => eprintln!("{m}"),
            Err(e) => return Err(e.into()),
        }
    }
    bail!("three wrong passphrases: the agent stays locked")
}

/// An unlocked agent, unlocking it when it is locked.
fn unlocked_client(from_stdin: bool) -> Result<Client> {
    let mut c = Client::connect(&socket())?;
    if c.status()?.locked {
        unlock(&mut c, from_stdin)?;
    }
    Ok(c)
}

/// `cvl secrets ...`.
pub fn run(command: SecretsCommand) -> Result<ExitCode> {
    match command {
        SecretsCommand::Set { name, stdin } => {
            let mut c = unlocked_client(false)?;
            let value = if stdin {
                stdin_line()?
            } else if terminal() {
                prompt(&format!("Value of {name}: "))?
            } else {
                bail!("no terminal to read the value from: pass --stdin and pipe it in");
            };
            c.call(&Request::Set {
                key: name.clone(),
                value,
            })?;
            eprintln!("set {name} (kept encrypted in the vault)");
        }
        SecretsCommand::List { format } => {
            let keys = unlocked_client(false)?.call(&Request::List)?.keys.clone();
            match format {
                ListFormat::Json => println!("{}", serde_json::to_string_pretty(&keys)?),
                ListFormat::Human if keys.is_empty() => eprintln!("the vault holds no values"),
                ListFormat::Human => {
                    for k in keys {
                        println!("{k}");
                    }
                }
            }
        }
        SecretsCommand::Rm { name } => {
            unlocked_client(false)?.call(&Request::Remove { key: name.clone() })?;
            eprintln!("removed {name}");
        }
        SecretsCommand::Unlock { passphrase_stdin } => {
            let mut c = Client::connect(&socket())?;
            unlock(&mut c, passphrase_stdin)?;
            let status = c.status()?;
            eprintln!(
                "unlocked {}: {} value(s), forgotten in {}",
                status.vault,
                status.values,
                humantime::format_duration(Duration::from_secs(status.forget_in_secs.unwrap_or(0)))
            );
        }
        SecretsCommand::Lock => {
            Client::connect(&socket())?.call(&Request::Lock)?;
            eprintln!("locked: the agent forgot every value");
        }
        SecretsCommand::Passwd { stdin } => {
            let mut c = Client::connect(&socket())?;
            let (old, new) = if stdin {
                (stdin_line()?, stdin_line()?)
            } else if terminal() {
                let old = prompt("Current passphrase: ")?;
                let new = prompt("New passphrase: ")?;
                if *prompt("Again: ")? != *new {
                    bail!("the two new passphrases differ: nothing was changed");
                }
                (old, new)
            } else {
                bail!("no terminal: pass --stdin with the old and the new passphrase on two lines");
            };
            if new.is_empty() {
                bail!("an empty passphrase protects nothing: nothing was changed");
            }
            c.call(&Request::Passwd { old, new })?;
            eprintln!("the vault is now encrypted with the new passphrase");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The values of `inputs` for `deployment`, by input path: from
/// `CVL_SECRET_…` (or the descriptor `CVL_SECRET_…_FD` names), then from
/// the agent; where a terminal is attached, what both lack is asked for
/// (and kept in the agent when one runs). What stays missing is left out:
/// the plan lists it with the ways to supply it.
pub fn supply(deployment: &str, inputs: &[SensitiveInput]) -> Result<BTreeMap<String, Secret>> {
    let mut values = BTreeMap::new();
    for input in inputs {
        if let Some(v) = from_env(&input.env)? {
            values.insert(input.path.clone(), v);
        }
    }
    let missing: Vec<&SensitiveInput> = inputs
        .iter()
        .filter(|i| !values.contains_key(&i.path))
        .collect();
    if missing.is_empty() {
        return Ok(values);
    }
    let ask = terminal();
    let mut agent = match Client::connect(&socket()) {
        Ok(c) => Some(c),
        Err(Error::NotRunning(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(c) = agent.as_mut() {
        if c.status()?.locked {
            if ask {
                unlock(c, false)?;
            } else {
                eprintln!(
                    "note: the agent is locked and no terminal is attached: its values were not \
                     used (`cvl secrets unlock`)"
                );
                agent = None;
            }
        }
    }
    if let Some(c) = agent.as_mut() {
        let keys: Vec<String> = missing
            .iter()
            .map(|i| cvl_secrets::key(deployment, &i.path))
            .collect();
        let mut got = c.get(&keys)?;
        for (input, key) in missing.iter().zip(&keys) {
            if let Some(v) = got.remove(key) {
                values.insert(input.path.clone(), v);
            }
        }
    }
    if !ask {
        return Ok(values);
    }
    for input in inputs {
        if values.contains_key(&input.path) {
            continue;
        }
        let key = cvl_secrets::key(deployment, &input.path);
        let value = prompt(&format!("Sensitive value {key}: "))?;
        if value.is_empty() {
            continue;
        }
        match agent.as_mut() {
            Some(c) => {
                c.call(&Request::Set {
                    key: key.clone(),
                    value: value.clone(),
                })?;
            }
            None => eprintln!(
                "note: used for this run only; start `cvl agent` to keep values (encrypted) \
                 across runs"
            ),
        }
        values.insert(input.path.clone(), value);
    }
    Ok(values)
}

/// `NAME` from the environment, or the descriptor `NAME_FD` names (read to
/// its end; one trailing newline dropped).
fn from_env(name: &str) -> Result<Option<Secret>> {
    if let Some(v) = std::env::var_os(name) {
        let v = v
            .into_string()
            .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))?;
        return Ok(Some(Secret::new(v)));
    }
    let fd_var = format!("{name}_FD");
    let Ok(fd) = std::env::var(&fd_var) else {
        return Ok(None);
    };
    let fd: i32 = fd
        .trim()
        .parse()
        .ok()
        .filter(|fd| *fd > 2)
        .with_context(|| format!("{fd_var}={fd} is not a file descriptor number above 2"))?;
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("{fd_var}={fd}: no such open file descriptor");
    }
    // SAFETY: the descriptor is open and was handed to us by the caller for
    // this purpose; we take ownership and close it after reading.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut bytes = Vec::new();
    std::io::Read::take(&mut file, 1 << 20)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read descriptor {fd} named by {fd_var}"))?;
    let mut value = String::from_utf8(bytes).with_context(|| format!("{fd_var}: not UTF-8"))?;
    if value.ends_with('\n') {
        value.pop();
    }
    Ok(Some(Secret::new(value)))
}
