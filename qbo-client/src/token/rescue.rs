//! The last resort for a rotated refresh token the store could not save: a 0600 file
//! `qb-backfill-rescued-refresh-token-<realm>.json` in the first writable of the store's rescue
//! directory, the working directory and the temporary directory. The next start looks in the
//! same places, uses the newest rescued token first, and removes the files once the token is
//! in the store.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::TokenStoreError;
use super::cipher::{self, TokenCipher};
use super::store::write_private;

/// The rescue file name of a realm (realm ids are letters, digits, `-` and `_`).
pub(crate) fn file_name(realm_id: &str) -> String {
    format!("qb-backfill-rescued-refresh-token-{realm_id}.json")
}

#[derive(Serialize, Deserialize)]
struct RescueFile {
    realm_id: String,
    /// The stored form (encrypted when the store has a key).
    refresh_token: String,
    /// Unix seconds (nanoseconds in the fraction) when it was written.
    rescued_at: f64,
}

/// Where rescue files are written and looked for, in order, without duplicates.
#[derive(Debug, Clone)]
pub(crate) struct RescuePlaces {
    dirs: Vec<PathBuf>,
    cipher: Option<TokenCipher>,
}

/// A rescued token found at start.
pub(crate) struct Rescued {
    pub(crate) path: PathBuf,
    pub(crate) token: SecretString,
}

impl RescuePlaces {
    pub(crate) fn new(first: Option<PathBuf>, cipher: Option<TokenCipher>) -> RescuePlaces {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let candidates = first
            .into_iter()
            .chain(std::env::current_dir().ok())
            .chain(std::iter::once(std::env::temp_dir()));
        for d in candidates {
            let canonical = std::fs::canonicalize(&d).unwrap_or_else(|_| d.clone());
            if !dirs
                .iter()
                .any(|x| std::fs::canonicalize(x).unwrap_or_else(|_| x.clone()) == canonical)
            {
                dirs.push(d);
            }
        }
        RescuePlaces { dirs, cipher }
    }

    /// Writes the token to the first directory that takes it; every failure if none does.
    pub(crate) fn write(
        &self,
        realm_id: &str,
        token: &SecretString,
    ) -> Result<PathBuf, Vec<TokenStoreError>> {
        let stored = match cipher::seal(self.cipher.as_ref(), realm_id, token) {
            Ok(s) => s,
            Err(e) => return Err(vec![e]),
        };
        let rescued_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let body = serde_json::to_vec_pretty(&RescueFile {
            realm_id: realm_id.to_owned(),
            refresh_token: stored.expose_secret().to_owned(),
            rescued_at,
        })
        .unwrap_or_default();
        let mut failures = Vec::new();
        for dir in &self.dirs {
            let path = dir.join(file_name(realm_id));
            match write_private(&path, &body) {
                Ok(()) => return Ok(path),
                Err(e) => failures.push(e),
            }
        }
        Err(failures)
    }

    /// The newest rescued token of `realm_id`, if any file holds one.
    ///
    /// # Errors
    /// A rescue file that is encrypted and cannot be decrypted with the store's key.
    pub(crate) fn find(&self, realm_id: &str) -> Result<Option<Rescued>, TokenStoreError> {
        let mut best: Option<(f64, Rescued)> = None;
        for dir in &self.dirs {
            let path = dir.join(file_name(realm_id));
            let Some(file) = read(&path) else { continue };
            if file.realm_id != realm_id {
                continue;
            }
            let token = cipher::open(self.cipher.as_ref(), realm_id, &file.refresh_token).map_err(
                |why| {
                    cipher::unreadable_error(
                        why,
                        realm_id,
                        format!("the rescue file `{}`", path.display()),
                    )
                },
            )?;
            if best.as_ref().is_none_or(|(at, _)| file.rescued_at > *at) {
                best = Some((file.rescued_at, Rescued { path, token }));
            }
        }
        Ok(best.map(|(_, r)| r))
    }

    /// Removes every rescue file of `realm_id` (once its token is in the store).
    pub(crate) fn remove(&self, realm_id: &str) {
        for dir in &self.dirs {
            let path = dir.join(file_name(realm_id));
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(realm = realm_id, path = %path.display(), "token_rescue_file_removed");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(realm = realm_id, path = %path.display(), error = %e, "token_rescue_file_not_removed");
                }
            }
        }
    }

    /// Whether any rescue file of `realm_id` exists.
    pub(crate) fn any(&self, realm_id: &str) -> bool {
        self.dirs
            .iter()
            .any(|d| d.join(file_name(realm_id)).exists())
    }
}

fn read(path: &Path) -> Option<RescueFile> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    // Only a private file is trusted (the temporary directory is shared with other users).
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "token_rescue_file_ignored: not a private (0600) file");
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(f) => Some(f),
        Err(_) => {
            tracing::warn!(path = %path.display(), "token_rescue_file_unreadable");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn write_find_and_remove_prefer_the_first_writable_place_and_the_newest_file() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let missing = a.path().join("no/such/dir");
        let places = RescuePlaces {
            dirs: vec![missing, a.path().to_owned(), b.path().to_owned()],
            cipher: None,
        };
        assert!(places.find("77").unwrap().is_none());
        let path = places.write("77", &SecretString::from("older")).unwrap();
        assert_eq!(path, a.path().join(file_name("77")));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A newer rescue elsewhere wins.
        let only_b = RescuePlaces {
            dirs: vec![b.path().to_owned()],
            cipher: None,
        };
        only_b.write("77", &SecretString::from("newer")).unwrap();
        let found = places.find("77").unwrap().unwrap();
        assert_eq!(found.token.expose_secret(), "newer");
        assert_eq!(found.path, b.path().join(file_name("77")));
        assert!(places.any("77") && !places.any("78"));
        // A file others may read (or write) is not trusted.
        std::fs::set_permissions(&found.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            places.find("77").unwrap().unwrap().token.expose_secret(),
            "older"
        );
        places.remove("77");
        assert!(places.find("77").unwrap().is_none() && !places.any("77"));
    }

    #[test]
    fn an_encrypted_rescue_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = TokenCipher::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let sealed = RescuePlaces {
            dirs: vec![dir.path().to_owned()],
            cipher: Some(key),
        };
        let path = sealed
            .write("5", &SecretString::from("tok-secret-1"))
            .unwrap();
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .contains("tok-secret-1")
        );
        assert_eq!(
            sealed.find("5").unwrap().unwrap().token.expose_secret(),
            "tok-secret-1"
        );
        let plain = RescuePlaces {
            dirs: vec![dir.path().to_owned()],
            cipher: None,
        };
        let err = plain.find("5").err().unwrap().to_string();
        assert!(
            err.contains("QBO_TOKEN_KEY") && err.contains("rescue file"),
            "{err}"
        );
    }

    #[test]
    fn nowhere_writable_reports_every_place() {
        let places = RescuePlaces {
            dirs: vec![
                PathBuf::from("/nonexistent/a"),
                PathBuf::from("/nonexistent/b"),
            ],
            cipher: None,
        };
        let errs = places.write("1", &SecretString::from("t")).unwrap_err();
        assert_eq!(errs.len(), 2);
    }
}
