//! `cvl exec`: a command run in a running appliance through its QEMU guest
//! agent (no network, no SSH into the guest), its output streamed back as
//! it comes and its exit code cvl's own, as `docker exec` and `kubectl
//! exec` do (`cvl_ops::exec` runs it).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cvl_ops::exec::INPUT_LIMIT;

/// What `cvl exec` exits with when it cannot run the command at all (as
/// `docker exec` does): the command's own codes stay unambiguous.
pub const CANNOT_RUN: u8 = 125;

#[derive(clap::Args)]
pub struct ExecArgs {
    /// The CVL file of the deployment (its only object is the deployment,
    /// or the one --deploy names).
    pub file: PathBuf,
    /// The appliance to run in: its component path in the deployment (`d`,
    /// `g.f`), or `.` for a deployed VM appliance itself.
    pub component: String,
    /// The deployed object of FILE, when it declares several.
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Pass standard input to the command (read whole first, at most 16 MiB).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give up waiting after this long (`30s`, `5m`); the command goes on
    /// in the guest. Default: wait as long as it runs.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<humantime::Duration>,
    /// The command and its arguments, after `--`: passed as they are, never
    /// parsed by a shell (run `sh -c '...'` for one).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(args: ExecArgs) -> Result<ExitCode> {
    match exec(&args) {
        Ok(code) => Ok(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(ExitCode::from(CANNOT_RUN))
        }
    }
}

fn exec(args: &ExecArgs) -> Result<ExitCode> {
    let deployment = cvl_ops::plan::deployment_of(&args.file, args.deploy.as_deref())?;
    let state = cvl_ops::state::open()?.load()?;
    if !state.deployments.contains_key(&deployment) {
        bail!(
            "{deployment} is not deployed (nothing in the state): run `cvl apply {}` first",
            args.file.display()
        );
    }
    let input = if args.stdin {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(INPUT_LIMIT as u64 + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        Some(bytes)
    } else {
        None
    };
    let command = cvl_ops::exec::Command {
        deployment: &deployment,
        component: if args.component == "." {
            ""
        } else {
            &args.component
        },
        argv: &args.command,
        input: input.as_deref(),
        timeout: args.timeout.map(Duration::from),
    };
    let code = cvl_ops::exec::run(&state, &command, &mut |stdout, stderr| {
        if !stdout.is_empty() {
            let mut out = std::io::stdout().lock();
            out.write_all(stdout)?;
            out.flush()?;
        }
        std::io::stderr().write_all(stderr)?;
        Ok(())
    })?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(CANNOT_RUN)))
}
