//! DingTalk's request signature, for a robot secured by a secret (`SEC...`):
//! `sign = base64(HMAC-SHA256(key = secret, timestamp_ms + "\n" + secret))`,
//! sent with the timestamp as query parameters. DingTalk rejects a timestamp
//! more than an hour off, so every request is signed afresh.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// `sign` for a signed robot at `timestamp_ms`.
pub fn sign(secret: &Secret, timestamp_ms: u128) -> String {
    let secret = secret.expose();
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_reference_vector() {
        let signature = sign(&Secret::new("SECabc"), 1_700_000_000_000);
        assert_eq!(signature, "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM=");
    }
}
