//! DingTalk robot request signing ("加签").
//!
//! A robot created with a secret (`SEC...`) only accepts requests that carry
//! `timestamp` (milliseconds since the Unix epoch) and `sign` query
//! parameters, where
//!
//! ```text
//! sign = urlencode(base64(HMAC-SHA256(key = secret, msg = timestamp + "\n" + secret)))
//! ```
//!
//! and the timestamp is within one hour of the server's wall clock.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far the request timestamp may be from the server's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(60 * 60);

/// Computes the (not yet url-encoded) base64 signature for `timestamp_ms`.
///
/// `timestamp_ms` is the decimal string exactly as sent in the `timestamp`
/// query parameter. HMAC accepts keys of any length, so this cannot fail in
/// practice; should the MAC refuse the key anyway, the result is an empty
/// string, which never matches a real signature.
pub fn compute_sign(secret: &str, timestamp_ms: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp_ms.as_bytes());
    mac.update(b"\n");
    mac.update(secret.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Returns the `&timestamp=...&sign=...` query suffix a real client appends
/// to the webhook URL, signed for `timestamp_ms` (the sign percent-encoded).
#[cfg(test)]
pub fn signed_query(secret: &str, timestamp_ms: u128) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let ts = timestamp_ms.to_string();
    let sign = compute_sign(secret, &ts);
    format!(
        "&timestamp={ts}&sign={}",
        utf8_percent_encode(&sign, NON_ALPHANUMERIC)
    )
}

/// Milliseconds since the Unix epoch for `t` (0 for times before the epoch).
pub fn unix_millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Why a signed request was refused. Both map to errcode 310000.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    /// `sign` or `timestamp` is missing, or the signature is wrong.
    Mismatch,
    /// `timestamp` is not a number or is more than an hour from now.
    BadTimestamp(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Mismatch => f.write_str("sign not match"),
            SignError::BadTimestamp(ts) => write!(
                f,
                "timestamp {ts} is invalid: it must be epoch milliseconds within one hour of server time"
            ),
        }
    }
}

impl std::error::Error for SignError {}

/// Checks the `timestamp` and `sign` query values of a request to a robot
/// that has `secret`, against the wall-clock time `now`.
///
/// `sign` must already be percent-decoded (as any query parser does), so a
/// client that forgot to url-encode its signature — turning `+` into a space
/// — is refused, as DingTalk does.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    sign: Option<&str>,
    now: SystemTime,
) -> Result<(), SignError> {
    let (Some(ts), Some(sign)) = (timestamp, sign) else {
        return Err(SignError::Mismatch);
    };
    let ts_ms: u128 = ts
        .parse()
        .map_err(|_| SignError::BadTimestamp(ts.to_owned()))?;
    let now_ms = unix_millis(now);
    if now_ms.abs_diff(ts_ms) > MAX_SKEW.as_millis() {
        return Err(SignError::BadTimestamp(ts.to_owned()));
    }
    if compute_sign(secret, ts) == sign {
        Ok(())
    } else {
        Err(SignError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SIGN: &str = "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM=";

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn reference_vector() {
        assert_eq!(compute_sign("SECabc", "1700000000000"), VECTOR_SIGN);
    }

    #[test]
    fn signed_query_is_percent_encoded() {
        let q = signed_query("SECabc", 1_700_000_000_000);
        assert_eq!(
            q,
            "&timestamp=1700000000000&sign=jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM%3D"
        );
    }

    #[test]
    fn verify_accepts_the_right_sign() {
        let now = at_ms(1_700_000_000_000 + 30_000);
        assert_eq!(
            verify("SECabc", Some("1700000000000"), Some(VECTOR_SIGN), now),
            Ok(())
        );
    }

    #[test]
    fn verify_refuses_missing_parts_and_wrong_sign() {
        let now = at_ms(1_700_000_000_000);
        assert_eq!(
            verify("SECabc", None, Some(VECTOR_SIGN), now),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify("SECabc", Some("1700000000000"), None, now),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify("SECother", Some("1700000000000"), Some(VECTOR_SIGN), now),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify("SECabc", Some("1700000000000"), Some("jcUpW0Qm"), now),
            Err(SignError::Mismatch)
        );
    }

    #[test]
    fn verify_refuses_timestamps_out_of_range() {
        let ts = 1_700_000_000_000u64;
        let hour = 3_600_000u64;
        let ok_late = at_ms(ts + hour);
        assert!(verify("SECabc", Some("1700000000000"), Some(VECTOR_SIGN), ok_late).is_ok());
        for now in [at_ms(ts + hour + 1), at_ms(ts - hour - 1)] {
            let err = verify("SECabc", Some("1700000000000"), Some(VECTOR_SIGN), now).unwrap_err();
            assert!(matches!(err, SignError::BadTimestamp(_)));
            let msg = err.to_string();
            assert!(
                msg.contains("timestamp") && msg.contains("invalid"),
                "{msg}"
            );
        }
        let err = verify("SECabc", Some("soon"), Some(VECTOR_SIGN), at_ms(ts)).unwrap_err();
        assert!(matches!(err, SignError::BadTimestamp(_)));
    }

    #[test]
    fn mismatch_message_mentions_sign_not_match() {
        assert!(SignError::Mismatch.to_string().contains("sign not match"));
    }
}
