//! The identify queue's secret: made at each start, given to the clusters
//! inside `MEWLD_IDENTIFY_URL`, and asked of every request, so nobody else
//! on the machine can spend the bot's session starts (docs/protocol.md §9).

use std::fmt;

use rand::Rng;

/// Random bytes in a secret: 256 bits, as 64 hex digits (URL-safe).
const BYTES: usize = 32;

/// A secret that never shows in a log or a `Debug`.
pub struct Secret(String);

impl Secret {
    /// A new secret from the thread's CSPRNG (ChaCha, seeded by the OS).
    pub fn new() -> Secret {
        let bytes: [u8; BYTES] = rand::rng().random();
        Secret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The secret itself, for the URL the clusters get and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the secret, in time that does not depend on
    /// where they differ (only on the length, which is public).
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        // Keeps the compiler from stopping at the first difference.
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_secret_is_new_long_and_url_safe() {
        let (a, b) = (Secret::new(), Secret::new());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 2 * BYTES, "{}", a.expose().len());
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(format!("{a:?}"), "Secret(…)");
    }

    #[test]
    fn only_the_secret_itself_matches() {
        let s = Secret::new();
        assert!(s.matches(s.expose()));
        let mut other = s.expose().to_string();
        other.replace_range(63.., if other.ends_with('0') { "1" } else { "0" });
        for wrong in [
            "",
            "x",
            &other,
            &s.expose()[1..],
            &format!("{}0", s.expose()),
        ] {
            assert!(!s.matches(wrong), "{wrong:?}");
        }
    }
}
