//! Reads the payload of a compact JWS without verifying it: the page only needs the `sub` and
//! `email` it was given, to match a cached ticket; the relay verifies.

use alloc::string::String;
use alloc::vec::Vec;
/// Decodes base64url without padding (RFC 7515). `None` on any invalid character.
pub fn base64url(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The payload (second part) of a compact JWS, as text.
pub fn payload(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    String::from_utf8(base64url(p)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64url_and_jws_payloads() {
        assert_eq!(base64url("aGk").unwrap(), b"hi");
        assert_eq!(base64url("eyJzdWIiOiJ1XzQyIn0").unwrap(), br#"{"sub":"u_42"}"#);
        assert_eq!(base64url("a+b"), None);
        assert_eq!(payload("x.eyJzdWIiOiJ1XzQyIn0.sig").unwrap(), r#"{"sub":"u_42"}"#);
        assert_eq!(payload("only.two"), None);
        assert_eq!(payload("a.b.c.d"), None);
    }
}
