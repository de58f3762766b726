//! Refresh tokens at rest: XChaCha20-Poly1305 with a 32-byte key, the realm id bound as
//! associated data (a row copied to another realm does not decrypt).
//!
//! Stored form: `enc:v1:` followed by base64 (standard alphabet, padded) of the 24-byte random
//! nonce and the ciphertext with its 16-byte tag. Anything without the prefix is a token stored
//! in plain text (a store written before a key was set), read as it is.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, read_secret_env};
use crate::token::TokenStoreError;

/// The environment variable holding the key (base64 of 32 bytes); `QBO_TOKEN_KEY_FILE` names
/// a file holding it instead.
pub const TOKEN_KEY_ENV: &str = "QBO_TOKEN_KEY";

/// The prefix of an encrypted stored token.
const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

/// The key that encrypts refresh tokens at rest (never printed; `Debug` shows nothing of it).
#[derive(Clone)]
pub struct TokenCipher {
    aead: Arc<XChaCha20Poly1305>,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher([redacted])")
    }
}

/// Why a stored token could not be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// The value is encrypted and no key is set.
    NoKey,
    /// The key does not open it (another key, another realm, or a damaged value).
    WrongKey,
}

impl TokenCipher {
    /// A cipher from the key's text: base64 (standard or URL-safe alphabet, padding optional)
    /// of exactly 32 bytes, e.g. the output of `openssl rand -base64 32`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `QBO_TOKEN_KEY` when the text is not such a key (the
    /// message never quotes it).
    pub fn from_base64(key: &str) -> Result<TokenCipher, ConfigError> {
        let text = key.trim();
        let decoded = STANDARD
            .decode(text)
            .or_else(|_| STANDARD_NO_PAD.decode(text))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text));
        let bytes = decoded.map_err(|_| invalid_key("it is not base64"))?;
        if bytes.len() != 32 {
            return Err(invalid_key("it must decode to exactly 32 bytes"));
        }
        let aead = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| invalid_key("it must decode to exactly 32 bytes"))?;
        Ok(TokenCipher {
            aead: Arc::new(aead),
        })
    }

    /// The key from `QBO_TOKEN_KEY` or `QBO_TOKEN_KEY_FILE` (giving both is an error);
    /// `None` when neither is set.
    ///
    /// # Errors
    /// [`ConfigError`] when both are set, the file cannot be read, or the key is malformed.
    pub fn from_env() -> Result<Option<TokenCipher>, ConfigError> {
        match read_secret_env(TOKEN_KEY_ENV)? {
            Some(key) => TokenCipher::from_base64(key.expose_secret()).map(Some),
            None => Ok(None),
        }
    }

    /// The stored form of `token` for `realm_id` (a fresh random nonce every time).
    ///
    /// # Errors
    /// [`TokenStoreError::Backend`] if encryption fails (it cannot for a token-sized value).
    pub fn seal(
        &self,
        realm_id: &str,
        token: &SecretString,
    ) -> Result<SecretString, TokenStoreError> {
        let nonce = XNonce::generate();
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: realm_id.as_bytes(),
                },
            )
            .map_err(|_| TokenStoreError::backend(false, "encrypting the refresh token failed"))?;
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(nonce.as_slice());
        raw.extend_from_slice(&sealed);
        Ok(SecretString::from(format!(
            "{PREFIX}{}",
            STANDARD.encode(raw)
        )))
    }

    fn open_sealed(&self, realm_id: &str, body: &str) -> Result<SecretString, Unreadable> {
        let raw = STANDARD.decode(body).map_err(|_| Unreadable::WrongKey)?;
        if raw.len() <= NONCE_LEN {
            return Err(Unreadable::WrongKey);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| Unreadable::WrongKey)?;
        let plain = self
            .aead
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: realm_id.as_bytes(),
                },
            )
            .map_err(|_| Unreadable::WrongKey)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| Unreadable::WrongKey)
    }
}

/// Whether a stored value is encrypted (`enc:v1:…`), e.g. to re-save a plain token once a key
/// is set.
#[must_use]
pub fn is_encrypted(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The form in which a store keeps `token` of `realm_id`: encrypted with `cipher`, or as it is
/// without one. For [`crate::TokenStore`] implementations.
///
/// # Errors
/// As [`TokenCipher::seal`].
pub fn stored_form(
    cipher: Option<&TokenCipher>,
    realm_id: &str,
    token: &SecretString,
) -> Result<SecretString, TokenStoreError> {
    seal(cipher, realm_id, token)
}

/// The token a store's value holds (decrypted if encrypted). `location` names the store in the
/// error (e.g. `backfill.oauth_tokens`).
///
/// # Errors
/// [`TokenStoreError::Unreadable`] when the value is encrypted and `cipher` is `None` or not
/// the key it was stored with.
pub fn token_from_stored(
    cipher: Option<&TokenCipher>,
    realm_id: &str,
    stored: &str,
    location: &str,
) -> Result<SecretString, TokenStoreError> {
    open(cipher, realm_id, stored)
        .map_err(|why| unreadable_error(why, realm_id, location.to_owned()))
}

/// The token a stored value holds: decrypted when it is encrypted, as it is otherwise.
pub(crate) fn open(
    cipher: Option<&TokenCipher>,
    realm_id: &str,
    stored: &str,
) -> Result<SecretString, Unreadable> {
    match stored.strip_prefix(PREFIX) {
        None => Ok(SecretString::from(stored.to_owned())),
        Some(body) => match cipher {
            None => Err(Unreadable::NoKey),
            Some(c) => c.open_sealed(realm_id, body),
        },
    }
}

/// The stored form of `token`: encrypted with `cipher` when there is one.
pub(crate) fn seal(
    cipher: Option<&TokenCipher>,
    realm_id: &str,
    token: &SecretString,
) -> Result<SecretString, TokenStoreError> {
    match cipher {
        Some(c) => c.seal(realm_id, token),
        None => Ok(token.clone()),
    }
}

fn invalid_key(reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: TOKEN_KEY_ENV.to_owned(),
        reason: format!(
            "{reason}; generate one with `openssl rand -base64 32` (QBO_TOKEN_KEY or QBO_TOKEN_KEY_FILE)"
        ),
    }
}

/// The error for a stored value that cannot be decrypted; `location` says where it is.
pub(crate) fn unreadable_error(
    why: Unreadable,
    realm_id: &str,
    location: String,
) -> TokenStoreError {
    TokenStoreError::Unreadable {
        realm_id: realm_id.to_owned(),
        location,
        key_missing: why == Unreadable::NoKey,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn seal_and_open_round_trip_bound_to_the_realm() {
        let c = TokenCipher::from_base64(KEY).unwrap();
        let token = SecretString::from("AB11-refresh-token-value");
        let sealed = c.seal("123", &token).unwrap();
        let text = sealed.expose_secret();
        assert!(text.starts_with("enc:v1:") && !text.contains("AB11"));
        // A fresh nonce each time.
        assert_ne!(text, c.seal("123", &token).unwrap().expose_secret());
        let opened = open(Some(&c), "123", text).unwrap();
        assert_eq!(opened.expose_secret(), "AB11-refresh-token-value");
        // Another realm, another key, no key, a damaged value.
        assert_eq!(
            open(Some(&c), "456", text).unwrap_err(),
            Unreadable::WrongKey
        );
        let other = TokenCipher::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(
            open(Some(&other), "123", text).unwrap_err(),
            Unreadable::WrongKey
        );
        assert_eq!(open(None, "123", text).unwrap_err(), Unreadable::NoKey);
        assert_eq!(
            open(Some(&c), "123", "enc:v1:AAAA").unwrap_err(),
            Unreadable::WrongKey
        );
        // A plain value reads as it is, with or without a key.
        assert_eq!(
            open(Some(&c), "1", "plain").unwrap().expose_secret(),
            "plain"
        );
        assert_eq!(open(None, "1", "plain").unwrap().expose_secret(), "plain");
        assert!(!format!("{c:?}").contains(KEY));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(TokenCipher::from_base64(KEY).is_ok());
        assert!(TokenCipher::from_base64(KEY.trim_end_matches('=')).is_ok());
        assert!(TokenCipher::from_base64(&format!("  {KEY}\n")).is_ok());
        for bad in [
            "",
            "not base64!",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
        ] {
            let err = TokenCipher::from_base64(bad).unwrap_err().to_string();
            assert!(err.contains("QBO_TOKEN_KEY"), "{err}");
            assert!(err.contains("openssl rand -base64 32"), "{err}");
        }
    }
}
