//! Publishers' signing keys: ed25519 key pairs made by `aws-lc-rs` (the
//! library `tough` signs with), at rest in the vault's own format
//! (`cvl-secrets`: argon2id from a passphrase, XChaCha20-Poly1305, written
//! crash-safely with mode 0600), one entry holding the PKCS#8 document. A
//! key file is never written in the clear, and never twice over.

use std::path::Path;

use cvl_secrets::vault::{Cost, Key, Values, Vault};
use zeroize::Zeroizing;

/// The vault entry holding the key.
const ENTRY: &str = "tuf/ed25519-pkcs8";

/// A publisher's key, decrypted in memory (zeroized on drop).
pub struct SigningKey {
    pkcs8: Zeroizing<Vec<u8>>,
    /// Its TUF key id (the SHA-256 of its public key, canonical JSON).
    pub keyid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, private part not shown)", self.keyid)
    }
}

/// Makes a new ed25519 key, writes it to `path` encrypted with
/// `passphrase`, and returns it (its key id to print).
pub fn generate(path: &Path, passphrase: &[u8]) -> Result<SigningKey, String> {
    if passphrase.is_empty() {
        return Err("an empty passphrase protects nothing: choose one".to_string());
    }
    if path.exists() {
        return Err(format!(
            "{} exists: a key is never written over (choose another file, or remove it \
             yourself if you are sure it is not in use)",
            path.display()
        ));
    }
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let document = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| format!("cannot make a key: {e}"))?;
    let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
    let key = SigningKey::from_pkcs8(pkcs8)?;
    let mut values = Values::default();
    values
        .0
        .insert(ENTRY.to_string(), Zeroizing::new(hex(&key.pkcs8)));
    let vault_key = Key::new(passphrase, Cost::default()).map_err(|e| e.to_string())?;
    let path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Vault::new(&path)
        .write(&values, &vault_key)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

/// Reads the key at `path` with `passphrase`.
pub fn load(path: &Path, passphrase: &[u8]) -> Result<SigningKey, String> {
    let vault = Vault::new(path);
    if !vault.exists() {
        return Err(format!(
            "no key at {} (make one with `cvl key generate {}`)",
            path.display(),
            path.display()
        ));
    }
    let (values, _) = vault.open(passphrase).map_err(|e| match e {
        cvl_secrets::Error::WrongPassphrase(_) => format!(
            "{}: the passphrase does not open this key ($CVL_KEY_PASSPHRASE, or the one typed)",
            path.display()
        ),
        other => format!("{}: {other}", path.display()),
    })?;
    let text = values
        .0
        .get(ENTRY)
        .ok_or_else(|| format!("{} is a vault, but not a cvl signing key", path.display()))?;
    let pkcs8 = Zeroizing::new(
        unhex(text).ok_or_else(|| format!("{}: its key is damaged", path.display()))?,
    );
    SigningKey::from_pkcs8(pkcs8)
}

impl SigningKey {
    fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<SigningKey, String> {
        let sign = tough::sign::parse_keypair(&pkcs8).map_err(|e| e.to_string())?;
        let keyid = tough::sign::Sign::tuf_key(&sign)
            .key_id()
            .map_err(|e| e.to_string())?;
        Ok(SigningKey {
            pkcs8,
            keyid: hex(keyid.as_ref()),
        })
    }

    /// As `tough`'s editor takes keys.
    pub fn source(&self) -> Box<dyn tough::key_source::KeySource> {
        Box::new(Source {
            pkcs8: self.pkcs8.clone(),
        })
    }

    /// Its public half, as TUF metadata lists it.
    pub fn tuf_key(&self) -> Result<tough::schema::key::Key, String> {
        let sign = tough::sign::parse_keypair(&self.pkcs8).map_err(|e| e.to_string())?;
        Ok(tough::sign::Sign::tuf_key(&sign))
    }
}

/// A key source over a decrypted key (tough asks it to sign).
struct Source {
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cvl signing key (not shown)")
    }
}

#[async_trait::async_trait]
impl tough::key_source::KeySource for Source {
    async fn as_sign(
        &self,
    ) -> Result<Box<dyn tough::sign::Sign>, Box<dyn std::error::Error + Send + Sync + 'static>>
    {
        let sign = tough::sign::parse_keypair(&self.pkcs8)?;
        Ok(Box::new(sign))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err("a cvl signing key is written only by `cvl key generate`".into())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_written_encrypted_and_read_back_with_its_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.key");
        let made = generate(&path, b"correct horse").unwrap();
        assert_eq!(made.keyid.len(), 64);
        let bytes = std::fs::read(&path).unwrap();
        // Nothing of the key in the clear.
        let der_hex = hex(&made.pkcs8);
        assert!(!String::from_utf8_lossy(&bytes).contains(&der_hex[..32]));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let read = load(&path, b"correct horse").unwrap();
        assert_eq!(read.keyid, made.keyid);
        assert!(load(&path, b"wrong").unwrap_err().contains("passphrase"));
        assert!(generate(&path, b"again")
            .unwrap_err()
            .contains("never written over"));
    }
}
