//! Keyed fingerprints of sensitive values: an HMAC-SHA256 under the
//! utility's own secret key, so that the state and plans can tell that a
//! value changed without holding anything that reveals it (a plain hash of
//! a short password is guessed offline; a keyed one is not, without the key).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The fingerprint of `values` as the parameter `param` of `deployment`:
/// the parameter is part of the message, so two parameters with one value
/// do not show that they share it.
pub fn fingerprint(key: &[u8], deployment: &str, param: &str, values: &[String]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [deployment, param] {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part.as_bytes());
    }
    for value in values {
        mac.update(&(value.len() as u64).to_le_bytes());
        mac.update(value.as_bytes());
    }
    let tag = mac.finalize().into_bytes();
    format!("hmac-sha256:{}", crate::lower::hex(&tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_change_with_value_key_and_parameter_and_hide_the_value() {
        let v = |s: &str| vec![s.to_string()];
        let a = fingerprint(b"k1", "D", "rootpw", &v("hunter2"));
        assert_eq!(a, fingerprint(b"k1", "D", "rootpw", &v("hunter2")));
        assert_ne!(a, fingerprint(b"k1", "D", "rootpw", &v("hunter3")));
        assert_ne!(a, fingerprint(b"k2", "D", "rootpw", &v("hunter2")));
        assert_ne!(a, fingerprint(b"k1", "D", "l.rootpw", &v("hunter2")));
        assert!(!a.contains("hunter2"));
    }
}
