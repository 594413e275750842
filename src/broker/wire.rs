//! What crosses the wire: messages as named fields, and their authentication.
//!
//! With an authkey, a message carries `mac`: HMAC-SHA256 over the run id and every other
//! field, each length-prefixed (so `"ab" + "c"` never signs like `"a" + "bc"`), checked
//! in constant time. Without one, messages carry no MAC and anyone who can write to the
//! broker can write tasks: the documentation says to use an authkey on a shared broker.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A message: field names and values, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Message {
    pub fn new() -> Message {
        Message::default()
    }

    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Message {
        self.fields
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.text(name).and_then(|t| t.parse().ok())
    }

    fn digest(&self, key: &[u8], run_id: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        let mut feed = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        feed(run_id.as_bytes());
        for (name, value) in self.fields.iter().filter(|(n, _)| n != "mac") {
            feed(name.as_bytes());
            feed(value);
        }
        mac
    }

    /// Adds the `mac` field when there is a key.
    pub fn sign(self, key: Option<&[u8]>, run_id: &str) -> Message {
        match key {
            Some(key) => {
                let mac = self.digest(key, run_id).finalize().into_bytes();
                self.with("mac", hex::encode(mac))
            }
            None => self,
        }
    }

    /// Without a key every message passes; with one, only a message whose MAC matches.
    pub fn verify(&self, key: Option<&[u8]>, run_id: &str) -> bool {
        let Some(key) = key else { return true };
        let Some(mac) = self.get("mac").and_then(|m| hex::decode(m).ok()) else {
            return false;
        };
        self.digest(key, run_id).verify_slice(&mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_message_verifies_and_any_change_breaks_it() {
        let key = Some(b"secret".as_slice());
        let m = Message::new()
            .with("job", "a")
            .with("item", "bc")
            .sign(key, "run1");
        assert!(m.verify(key, "run1"));
        assert!(!m.verify(Some(b"other"), "run1"), "wrong key");
        assert!(!m.verify(key, "run2"), "another run");
        let mut tampered = m.clone();
        tampered.fields[1].1 = b"bd".to_vec();
        assert!(!tampered.verify(key, "run1"));
        let unsigned = Message::new().with("job", "a");
        assert!(
            !unsigned.verify(key, "run1"),
            "a forged message without MAC"
        );
        assert!(unsigned.verify(None, "run1"), "no key, no check");
    }

    #[test]
    fn fields_are_length_prefixed() {
        let key = Some(b"k".as_slice());
        let a = Message::new().with("x", "ab").with("y", "c").sign(key, "r");
        let b = Message::new().with("x", "a").with("y", "bc").sign(key, "r");
        assert_ne!(a.get("mac"), b.get("mac"));
    }
}
