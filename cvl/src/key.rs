//! `cvl key generate` and `cvl key show`, and the signing keys every
//! signing command reads:
//! a publisher's ed25519 key, encrypted at rest with a passphrase asked on
//! the terminal (or `$CVL_KEY_PASSPHRASE`, for scripts and CI).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cvl_repo::trust::keys::{self, SigningKey};
use zeroize::Zeroizing;

use crate::render::ListFormat;

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Make a new ed25519 signing key, encrypted with a passphrase, and
    /// print its key id.
    #[command(after_help = "The key file is in the vault's format (argon2id, \
        XChaCha20-Poly1305), mode 600, and is never written over. The passphrase is asked on \
        the terminal (twice), or read from $CVL_KEY_PASSPHRASE. Keep the file and its \
        passphrase apart, and a copy of both offline: whoever holds them can publish \
        anything your subscribers install.\n\n\
        Examples:\n  cvl key generate publisher.key\n  \
        cvl repo create repos/DNS --key publisher.key")]
    Generate {
        /// Where to write the key (refused if it exists).
        file: PathBuf,
    },
    /// Print a key's id and public key (what a repository's root lists,
    /// what `cvl check` and the editor name as a repository's signer).
    #[command(after_help = "The key is opened with its passphrase (asked, or \
        $CVL_KEY_PASSPHRASE): a file that opens is the key, not a look-alike.\n\n\
        Examples:\n  cvl key show publisher.key\n  cvl key show publisher.key --format json")]
    Show {
        /// The key file.
        file: PathBuf,
        /// Output: for people, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
}

pub fn run(command: KeyCommand) -> Result<ExitCode> {
    let file = match command {
        KeyCommand::Generate { file } => file,
        KeyCommand::Show { file, format } => return show(&file, format),
    };
    let passphrase = passphrase(
        &format!("Passphrase for the new key {}: ", file.display()),
        true,
    )?;
    let key = keys::generate(&file, passphrase.as_bytes()).map_err(anyhow::Error::msg)?;
    eprintln!("wrote {} (encrypted, mode 600)", file.display());
    println!("{}", key.keyid);
    Ok(ExitCode::SUCCESS)
}

fn show(file: &Path, format: ListFormat) -> Result<ExitCode> {
    let key = load(&[file.to_path_buf()])?.remove(0);
    let public = key.tuf_key().map_err(anyhow::Error::msg)?;
    let public = serde_json::to_value(&public)?;
    let hex = public["keyval"]["public"].as_str().unwrap_or_default();
    match format {
        ListFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": file.display().to_string(),
                "keyid": key.keyid,
                "scheme": "ed25519",
                "public": hex,
            }))?
        ),
        ListFormat::Human => {
            println!("{}", file.display());
            println!("  key id      {}", key.keyid);
            println!("  public key  ed25519 {hex}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A key's passphrase: `$CVL_KEY_PASSPHRASE`, else asked on the terminal
/// (twice for a new key).
fn passphrase(prompt: &str, twice: bool) -> Result<Zeroizing<String>> {
    if let Ok(value) = std::env::var("CVL_KEY_PASSPHRASE") {
        return Ok(Zeroizing::new(value));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask the key's passphrase on: set $CVL_KEY_PASSPHRASE");
    }
    let first =
        Zeroizing::new(rpassword::prompt_password(prompt).context("cannot read the terminal")?);
    if twice {
        let again = Zeroizing::new(
            rpassword::prompt_password("Again: ").context("cannot read the terminal")?,
        );
        if *again != *first {
            bail!("the two passphrases differ: nothing was written");
        }
    }
    Ok(first)
}

/// The signing keys at `paths`, decrypted.
pub fn load(paths: &[PathBuf]) -> Result<Vec<SigningKey>> {
    paths
        .iter()
        .map(|path| {
            let passphrase = passphrase(&format!("Passphrase for {}: ", path.display()), false)?;
            keys::load(Path::new(path), passphrase.as_bytes()).map_err(anyhow::Error::msg)
        })
        .collect()
}
