//! The vault: the file that keeps sensitive values at rest, encrypted with a
//! key derived from the user's passphrase (argon2id), sealed with
//! XChaCha20-Poly1305. Nothing here is home-made crypto: the layout is a
//! header (authenticated as associated data) and one AEAD message.
//!
//! ```text
//! 0  "CVLVAULT"                       magic
//! 8  u16 LE format                    FORMAT; a newer one is refused unread
//! 10 u32 LE m_cost (KiB), t_cost, p_cost   argon2id parameters
//! 22 16-byte salt
//! 38 24-byte nonce                    fresh for every write
//! 62 ciphertext + 16-byte tag         JSON {"values": {"Deployment/param": "value"}}
//! ```
//!
//! Written like every state file: a temp file in the same folder, mode 0600
//! from creation, fsync, rename, fsync of the folder.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

use crate::Error;

const MAGIC: &[u8; 8] = b"CVLVAULT";
/// The vault format this build writes and reads.
pub const FORMAT: u16 = 1;
const HEADER: usize = 62;
/// A vault is a handful of passwords; anything larger is not ours.
const MAX_SIZE: u64 = 16 << 20;

/// argon2id cost: 64 MiB, 3 passes (OWASP's recommendation for argon2id
/// is at least 19 MiB and 2 passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for Cost {
    fn default() -> Self {
        Cost {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

impl Cost {
    /// Costs a vault may ask for: bounded, so that a planted file cannot make
    /// the agent allocate gigabytes or spin for minutes.
    fn check(self) -> Result<Cost, String> {
        if !(8..=1024 * 1024).contains(&self.m_kib)
            || !(1..=16).contains(&self.t)
            || !(1..=8).contains(&self.p)
        {
            return Err(format!(
                "its key derivation asks for m={} KiB, t={}, p={}, outside what cvl accepts",
                self.m_kib, self.t, self.p
            ));
        }
        Ok(self)
    }
}

/// The derived key and what it was derived with: kept by the agent while
/// unlocked so that a change is written without asking for the passphrase
/// again. Zeroized on drop.
pub struct Key {
    key: Zeroizing<[u8; 32]>,
    salt: [u8; 16],
    cost: Cost,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, not shown)", self.cost)
    }
}

impl Key {
    /// Derives a key from `passphrase` with a fresh salt (a new vault, or a
    /// new passphrase).
    pub fn new(passphrase: &[u8], cost: Cost) -> Result<Key, Error> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| Error::Io(format!("no randomness: {e}")))?;
        derive(passphrase, salt, cost)
    }
}

fn derive(passphrase: &[u8], salt: [u8; 16], cost: Cost) -> Result<Key, Error> {
    let params = argon2::Params::new(cost.m_kib, cost.t, cost.p, Some(32))
        .map_err(|e| Error::Damaged(format!("argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, &salt, key.as_mut())
        .map_err(|e| Error::Damaged(format!("argon2: {e}")))?;
    Ok(Key { key, salt, cost })
}

/// The values a vault holds, by `Deployment/param`. Zeroized on drop.
#[derive(Default)]
pub struct Values(pub BTreeMap<String, Zeroizing<String>>);

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Values({:?}, values not shown)",
            self.0.keys().collect::<Vec<_>>()
        )
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Body {
    values: BTreeMap<String, String>,
}

impl Drop for Body {
    fn drop(&mut self) {
        for v in self.values.values_mut() {
            v.zeroize();
        }
    }
}

/// The vault file at `path`.
#[derive(Debug, Clone)]
pub struct Vault {
    pub path: PathBuf,
}

impl Vault {
    pub fn new(path: impl Into<PathBuf>) -> Vault {
        Vault { path: path.into() }
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Reads and decrypts the vault: the values and the key to write it
    /// back with.
    pub fn open(&self, passphrase: &[u8]) -> Result<(Values, Key), Error> {
        let bytes = self.read()?;
        let (cost, salt, nonce) = self.header(&bytes)?;
        let key = derive(passphrase, salt, cost)?;
        let values = self.decrypt(&bytes, &key, nonce)?;
        Ok((values, key))
    }

    /// Checks that the file is a vault this build can read, without the
    /// passphrase (for a clear error before asking for one).
    pub fn check_header(&self) -> Result<(), Error> {
        let bytes = self.read()?;
        self.header(&bytes).map(|_| ())
    }

    fn read(&self) -> Result<Vec<u8>, Error> {
        let file = std::fs::File::open(&self.path).map_err(|e| {
            Error::Io(format!(
                "cannot read the vault {}: {e}",
                self.path.display()
            ))
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > MAX_SIZE {
            return Err(self.damaged(format!("it is {len} bytes, more than a vault holds")));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_SIZE + 1), &mut bytes)
            .map_err(|e| {
                Error::Io(format!(
                    "cannot read the vault {}: {e}",
                    self.path.display()
                ))
            })?;
        Ok(bytes)
    }

    fn damaged(&self, why: String) -> Error {
        Error::Damaged(format!(
            "the vault {} is damaged or not a vault: {why}; it was left as it is (move it \
             away and set the values again, or restore it from a backup)",
            self.path.display()
        ))
    }

    fn header(&self, bytes: &[u8]) -> Result<(Cost, [u8; 16], [u8; 24]), Error> {
        if bytes.len() < 10 || &bytes[..8] != MAGIC {
            return Err(self.damaged("it does not start with a vault's header".into()));
        }
        let format = u16::from_le_bytes([bytes[8], bytes[9]]);
        if format > FORMAT {
            return Err(Error::Newer(format!(
                "the vault {} was written by a newer cvl (format {format}; this cvl reads \
                 format {FORMAT}): upgrade cvl; the vault was left as it is",
                self.path.display()
            )));
        }
        if format != FORMAT || bytes.len() < HEADER + 16 {
            return Err(self.damaged(format!("it is truncated or of unknown format {format}")));
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let cost = Cost {
            m_kib: u32_at(10),
            t: u32_at(14),
            p: u32_at(18),
        }
        .check()
        .map_err(|e| self.damaged(e))?;
        let salt = bytes[22..38].try_into().unwrap();
        let nonce = bytes[38..62].try_into().unwrap();
        Ok((cost, salt, nonce))
    }

    fn decrypt(&self, bytes: &[u8], key: &Key, nonce: [u8; 24]) -> Result<Values, Error> {
        let cipher = XChaCha20Poly1305::new(key.key.as_ref().into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &bytes[HEADER..],
                        aad: &bytes[..HEADER],
                    },
                )
                .map_err(|_| {
                    Error::WrongPassphrase(format!(
                        "wrong passphrase for the vault {} (or the file was altered); nothing \
                         was changed",
                        self.path.display()
                    ))
                })?,
        );
        let mut body: Body = serde_json::from_slice(&plain)
            .map_err(|e| self.damaged(format!("its contents do not parse: {e}")))?;
        let values = std::mem::take(&mut body.values)
            .into_iter()
            .map(|(k, v)| (k, Zeroizing::new(v)))
            .collect();
        Ok(Values(values))
    }

    /// Encrypts `values` under `key` and replaces the vault crash-safely.
    pub fn write(&self, values: &Values, key: &Key) -> Result<(), Error> {
        let body = Body {
            values: values
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().to_string()))
                .collect(),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&body).expect("strings serialize"));
        drop(body);
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| Error::Io(format!("no randomness: {e}")))?;
        let mut out = Vec::with_capacity(HEADER + plain.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        for n in [key.cost.m_kib, key.cost.t, key.cost.p] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&key.salt);
        out.extend_from_slice(&nonce);
        let cipher = XChaCha20Poly1305::new(key.key.as_ref().into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &out[..HEADER],
                },
            )
            .map_err(|_| Error::Io("encryption failed".into()))?;
        out.extend_from_slice(&sealed);
        write_atomic(&self.path, &out).map_err(|e| {
            Error::Io(format!(
                "cannot write the vault {}: {e}",
                self.path.display()
            ))
        })
    }
}

/// Temp file (0600 from creation) + fsync + rename + fsync of the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("vault");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Cost {
        Cost {
            m_kib: 64,
            t: 1,
            p: 1,
        }
    }

    fn values(pairs: &[(&str, &str)]) -> Values {
        Values(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Zeroizing::new(v.to_string())))
                .collect(),
        )
    }

    #[test]
    fn round_trips_and_hides_values() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path().join("vault"));
        let key = Key::new(b"correct horse", cheap()).unwrap();
        vault
            .write(&values(&[("D/rootpw", "Canary-1")]), &key)
            .unwrap();
        let bytes = std::fs::read(&vault.path).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"Canary-1"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&vault.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (read, _) = vault.open(b"correct horse").unwrap();
        assert_eq!(read.0["D/rootpw"].as_str(), "Canary-1");
        assert!(matches!(
            vault.open(b"wrong"),
            Err(Error::WrongPassphrase(_))
        ));
    }

    #[test]
    fn damaged_truncated_newer_and_costly_vaults_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path().join("vault"));
        let key = Key::new(b"pw", cheap()).unwrap();
        vault.write(&values(&[("D/a", "x")]), &key).unwrap();
        let good = std::fs::read(&vault.path).unwrap();
        let open = |bytes: &[u8]| {
            std::fs::write(&vault.path, bytes).unwrap();
            vault.open(b"pw").unwrap_err()
        };
        assert!(matches!(
            open(&good[..good.len() - 1]),
            Error::WrongPassphrase(_)
        ));
        assert!(matches!(open(&good[..40]), Error::Damaged(_)));
        assert!(matches!(open(b"hello"), Error::Damaged(_)));
        let mut flipped = good.clone();
        flipped[HEADER + 2] ^= 1;
        assert!(matches!(open(&flipped), Error::WrongPassphrase(_)));
        let mut newer = good.clone();
        newer[8] = 2;
        assert!(matches!(open(&newer), Error::Newer(_)));
        let mut costly = good.clone();
        costly[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(open(&costly), Error::Damaged(_)));
        // A header altered within bounds fails authentication.
        let mut salted = good;
        salted[30] ^= 1;
        assert!(matches!(open(&salted), Error::WrongPassphrase(_)));
    }
}
