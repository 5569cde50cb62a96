//! What a package and a shell need from `cvl`, generated from its own
//! command tree so that they never drift from it: completion scripts
//! (`cvl completions SHELL`) and one manual page per command (`cvl man`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

/// Prints the completion script of `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut command = crate::Cli::command();
    clap_complete::generate(shell, &mut command, "cvl", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Writes `cvl.1` and a page per command and subcommand (`cvl-apply.1`,
/// `cvl-host-add.1`, ...) into `out`, and lists them.
pub fn man(out: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    clap_mangen::generate_to(crate::Cli::command(), out)
        .with_context(|| format!("cannot write the manual pages into {}", out.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(out)
        .with_context(|| format!("cannot list {}", out.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cvl") && n.ends_with(".1"))
        .collect();
    pages.sort();
    eprintln!("wrote {} manual pages into {}", pages.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// The page name of every command: `cvl`, `cvl-apply`, `cvl-host-add`, ...
#[cfg(test)]
pub fn page_names() -> Vec<String> {
    fn walk(command: &clap::Command, name: &str, out: &mut Vec<String>) {
        out.push(name.to_string());
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" && !sub.is_hide_set() {
                walk(sub, &format!("{name}-{}", sub.get_name()), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&crate::Cli::command(), "cvl", &mut out);
    out
}

#[cfg(test)]
mod tests {
    /// Every command has its page, and each page names its command and
    /// shows the examples its `--help` shows.
    #[test]
    fn every_command_has_its_manual_page() {
        let dir = tempfile::tempdir().unwrap();
        super::man(dir.path()).unwrap();
        for name in super::page_names() {
            let page = dir.path().join(format!("{name}.1"));
            let text = std::fs::read_to_string(&page)
                .unwrap_or_else(|e| panic!("no page for {name}: {e}"));
            assert!(text.contains(".TH"), "{name}.1 is not a manual page");
        }
        let apply = std::fs::read_to_string(dir.path().join("cvl.1")).unwrap();
        assert!(
            apply.contains("cvl fmt \\-\\-check"),
            "cvl.1 lacks the examples"
        );
    }

    #[test]
    fn completions_name_every_command() {
        let mut command = crate::Cli::command();
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "cvl", &mut script);
            let script = String::from_utf8(script).unwrap();
            for sub in ["apply", "plan", "completions", "utility"] {
                assert!(script.contains(sub), "{shell} completions lack {sub}");
            }
        }
    }
    use clap::CommandFactory;
}
