//! The agent's wire: one JSON object per line each way. Fields that carry a
//! passphrase or a value are [`Secret`]s, zeroized when the message is dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A passphrase or value: zeroized when dropped.
pub type Secret = Zeroizing<String>;

/// The longest line either side reads: values are passwords and keys.
pub const MAX_LINE: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Decrypts the vault (creates it when `create` and there is none).
    Unlock {
        passphrase: Secret,
        #[serde(default)]
        create: bool,
    },
    /// Forgets every decrypted value and the key.
    Lock,
    /// The values of those `keys` the vault has.
    Get {
        keys: Vec<String>,
    },
    /// Sets one value and writes the vault.
    Set {
        key: String,
        value: Secret,
    },
    Remove {
        key: String,
    },
    List,
    /// Re-encrypts the vault under a new passphrase.
    Passwd {
        old: Secret,
        new: Secret,
    },
    /// Ends the agent.
    Stop,
}

/// Why a request failed, for the client to map back onto [`crate::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    Locked,
    NoVault,
    WrongPassphrase,
    Damaged,
    Newer,
    Io,
    BadRequest,
}

#[derive(Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, Secret>,
}

/// What `cvl agent status` and `cvl secrets list` show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub locked: bool,
    /// The vault file's path.
    pub vault: String,
    /// Whether the vault file exists.
    pub vault_exists: bool,
    /// Seconds until the values are forgotten (while unlocked).
    pub forget_in_secs: Option<u64>,
    /// Whether the agent's memory is locked against swapping.
    pub memory_locked: bool,
    pub values: usize,
    /// Raised whenever the values it answers with may have changed.
    #[serde(default)]
    pub generation: u64,
}
