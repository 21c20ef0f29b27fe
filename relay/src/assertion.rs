//! The app's identity assertion: a compact JWS, HS256 only, verified with `jsonwebtoken`.
//!
//! Claims (DESIGN.md section 4): `sub` (1..=128 chars), `email`, `aud = "hsq-relay"`, `iat`, `exp`
//! with `exp - iat <= 900`, optional `firstname`/`lastname`. 60 s of clock skew is allowed.

use crate::config::Keys;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The audience every assertion must name.
pub const AUDIENCE: &str = "hsq-relay";
/// The longest lifetime an assertion may claim.
pub const MAX_LIFETIME_SECS: i64 = 900;
/// Clock skew allowed on `exp` and `iat`.
pub const SKEW_SECS: i64 = 60;
/// `iat` and `exp` must lie in `0..=MAX_TIME_SECS` (the year 3000), so that no arithmetic on
/// them can overflow (`exp - iat`, `iat * 1000`).
pub const MAX_TIME_SECS: i64 = 32_503_680_000;

/// What a verified assertion vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub firstname: Option<String>,
    #[serde(default)]
    pub lastname: Option<String>,
}

/// Why an assertion was refused; the text is safe to return to the page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(s: impl Into<String>) -> Refused {
    Refused(s.into())
}

/// Verifies assertions against the configured keys.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<(String, DecodingKey)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("kids", &self.keys.iter().map(|(k, _)| k).collect::<Vec<_>>()).finish()
    }
}

/// A plain shape check of an email: local@domain.tld, no spaces, at most 254 bytes.
pub fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.len() <= 254
}

impl Verifier {
    pub fn new(keys: &Keys) -> Self {
        Verifier {
            keys: keys.0.iter().map(|(kid, s)| (kid.clone(), DecodingKey::from_secret(s.expose().as_bytes()))).collect(),
        }
    }

    /// Verifies `token` at time `now` (seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, Refused> {
        if token.is_empty() || token.len() > 8192 {
            return Err(refused("assertion must be a compact JWS of at most 8192 bytes"));
        }
        // The header is read first so that `alg` and `kid` are checked before anything else;
        // an `alg` that is not a known algorithm (`none`) fails to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|e| refused(format!("assertion header is invalid: {e}")))?;
        if header.alg != Algorithm::HS256 {
            return Err(refused(format!("assertion alg must be HS256, not {:?}", header.alg)));
        }
        // RFC 7515 section 4.1.11: extensions named in `crit` must be understood; the relay
        // understands none, so any `crit` is refused.
        if let Some(crit) = &header.crit {
            return Err(refused(format!("assertion header crit names extensions this relay does not understand: {crit:?}")));
        }
        // `kid` is required even with one key configured, so adding a second key (rotation)
        // never starts refusing the tokens an app already signs.
        let key = match header.kid.as_deref() {
            Some(kid) => self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key).ok_or_else(|| refused(format!("unknown assertion kid {kid:?}")))?,
            None => return Err(refused("assertion header has no kid; sign with the kid of one of HSQ_ASSERTION_SECRETS")),
        };
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iat", "aud", "sub"]);
        v.leeway = SKEW_SECS as u64;
        // `exp` is checked below against the caller's clock, so one clock decides.
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            refused(match e.kind() {
                K::ExpiredSignature => "assertion has expired".to_string(),
                K::InvalidAudience => format!("assertion aud must be {AUDIENCE:?}"),
                K::InvalidSignature => "assertion signature does not verify".to_string(),
                K::MissingRequiredClaim(c) => format!("assertion is missing the {c} claim"),
                _ => format!("assertion is invalid: {e}"),
            })
        })?;
        let c = data.claims;
        for (name, t) in [("iat", c.iat), ("exp", c.exp)] {
            if !(0..=MAX_TIME_SECS).contains(&t) {
                return Err(refused(format!("assertion {name} must be seconds since 1970 between 0 and {MAX_TIME_SECS}, got {t}")));
            }
        }
        // In range, none of the sums below can overflow.
        if c.exp + SKEW_SECS < now {
            return Err(refused("assertion has expired"));
        }
        if c.iat > now + SKEW_SECS {
            return Err(refused("assertion iat is in the future"));
        }
        if c.exp - c.iat > MAX_LIFETIME_SECS {
            return Err(refused(format!("assertion lifetime exp - iat is {} s; at most {MAX_LIFETIME_SECS} s", c.exp - c.iat)));
        }
        if c.exp <= c.iat {
            return Err(refused("assertion exp must be after iat"));
        }
        let n = c.sub.chars().count();
        if n == 0 || n > 128 {
            return Err(refused(format!("assertion sub must be 1 to 128 characters, got {n}")));
        }
        if !valid_email(&c.email) {
            return Err(refused("assertion email is not a valid email address"));
        }
        Ok(Claims { email: c.email.trim().to_ascii_lowercase(), ..c })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::parse_keys;
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::json;

    pub const SECRET: &str = "0123456789abcdef0123456789abcdef";

    pub fn mint(kid: Option<&str>, secret: &str, claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::new(&parse_keys(&format!("k1:{SECRET},k2:{SECRET}-two")).unwrap())
    }

    fn claims(now: i64) -> serde_json::Value {
        json!({"sub": "u_42", "email": "Ann@Example.com", "aud": "hsq-relay", "iat": now, "exp": now + 300, "firstname": "Ann"})
    }

    fn b64(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (*x as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn a_good_assertion_verifies_with_its_kid() {
        let now = 1_790_000_000;
        let c = verifier().verify(&mint(Some("k1"), SECRET, claims(now)), now).unwrap();
        assert_eq!((c.sub.as_str(), c.email.as_str(), c.firstname.as_deref()), ("u_42", "ann@example.com", Some("Ann")));
        let two = format!("{SECRET}-two");
        assert!(verifier().verify(&mint(Some("k2"), &two, claims(now)), now).is_ok(), "rotated key");
    }

    #[test]
    fn tampered_expired_wrong_audience_unknown_kid_and_long_lived_assertions_are_refused() {
        let now = 1_790_000_000;
        let v = verifier();
        let good = mint(Some("k1"), SECRET, claims(now));
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        parts[1] = b64(&json!({"sub": "admin", "email": "a@x.io", "aud": "hsq-relay", "iat": now, "exp": now + 300}).to_string());
        assert!(v.verify(&parts.join("."), now).unwrap_err().0.contains("signature"));
        assert!(v.verify(&good, now + 300 + SKEW_SECS + 1).unwrap_err().0.contains("expired"));
        let mut c = claims(now);
        c["aud"] = json!("someone-else");
        assert!(v.verify(&mint(Some("k1"), SECRET, c), now).unwrap_err().0.contains("aud"));
        assert!(v.verify(&mint(Some("k9"), SECRET, claims(now)), now).unwrap_err().0.contains("unknown assertion kid"));
        assert!(v.verify(&mint(None, SECRET, claims(now)), now).unwrap_err().0.contains("no kid"));
        let mut c = claims(now);
        c["exp"] = json!(now + 901);
        assert!(v.verify(&mint(Some("k1"), SECRET, c), now).unwrap_err().0.contains("lifetime"));
        let mut c = claims(now);
        c["iat"] = json!(now + 120);
        c["exp"] = json!(now + 400);
        assert!(v.verify(&mint(Some("k1"), SECRET, c), now).unwrap_err().0.contains("future"));
        let mut c = claims(now);
        c["sub"] = json!("x".repeat(129));
        assert!(v.verify(&mint(Some("k1"), SECRET, c), now).unwrap_err().0.contains("sub"));
        let mut c = claims(now);
        c["email"] = json!("not-an-email");
        assert!(v.verify(&mint(Some("k1"), SECRET, c), now).unwrap_err().0.contains("email"));
        let mut c = claims(now);
        c.as_object_mut().unwrap().remove("iat");
        assert!(v.verify(&mint(Some("k1"), SECRET, c), now).unwrap_err().0.contains("iat"));
    }

    #[test]
    fn alg_none_and_rs256_are_refused() {
        let now = 1_790_000_000;
        let body = b64(&claims(now).to_string());
        for header in [json!({"alg": "none", "typ": "JWT", "kid": "k1"}), json!({"alg": "RS256", "kid": "k1"}), json!({"alg": "HS512", "kid": "k1"})] {
            let token = format!("{}.{}.", b64(&header.to_string()), body);
            let e = verifier().verify(&token, now).unwrap_err();
            assert!(e.0.contains("alg") || e.0.contains("header"), "{header}: {e}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_input_is_refused_or_verified_without_panicking(s in ".{0,400}") {
            let _ = verifier().verify(&s, 1_790_000_000);
        }

        #[test]
        fn any_three_part_token_with_random_parts_is_refused(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,60}") {
            let token = [a, b, c].join(".");
            let refused = verifier().verify(&token, 1_790_000_000).is_err();
            prop_assert!(refused);
        }
    }
}
