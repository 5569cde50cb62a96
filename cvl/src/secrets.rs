//! Sensitive values for `cvl plan` and `cvl apply`, and the commands that
//! manage them: `cvl agent` (start, stop, status of the user agent) and
//! `cvl secrets set|list|rm|lock|unlock|passwd`. Values come from the
//! environment first (CI), then from the agent; where both lack one and a
//! terminal is attached, the user is asked without echo.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cvl_secrets::client::Client;
use cvl_secrets::protocol::{Request, Secret};
use cvl_secrets::Error;

use crate::render::ListFormat;

fn home() -> PathBuf {
    cvl_repo::settings::default_home()
}

fn socket() -> PathBuf {
    cvl_ops::secrets::socket()
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

/// A person at this terminal, asked for what the environment and the
/// agent lack (`cvl plan`, `cvl apply`); without a terminal, nobody is.
pub struct Terminal;

impl cvl_ops::secrets::Ask for Terminal {
    fn can_ask(&self) -> bool {
        terminal()
    }

    fn unlock(&mut self, client: &mut Client) -> Result<()> {
        unlock(client, false)
    }

    fn value(&mut self, key: &str) -> Result<Secret> {
        let value = prompt(&format!("Sensitive value {key}: "))?;
        if !value.is_empty() && Client::connect(&socket()).is_err() {
            eprintln!(
                "note: used for this run only; start `cvl agent` to keep values (encrypted) \
                 across runs"
            );
        }
        Ok(value)
    }
}
