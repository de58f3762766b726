//! Configuration errors name the variable and never print a secret.

use std::collections::HashMap;

use raw_sink::{PgConfig, SinkError, SslMode};

const PASSWORD: &str = "Tr0ub4dor&3-never-print-me";

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn err(pairs: &[(&str, &str)]) -> SinkError {
    let e = PgConfig::from_lookup(lookup(pairs)).unwrap_err();
    let shown = format!("{e} / {e:?}");
    assert!(!shown.contains(PASSWORD), "secret printed: {shown}");
    assert!(e.is_config(), "{e:?}");
    assert!(!e.is_retryable());
    e
}

#[test]
fn nothing_set_names_database_url() {
    let e = err(&[]);
    assert!(
        matches!(
            e,
            SinkError::MissingVar {
                var: "DATABASE_URL",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("PG_HOST"), "{e}");
}

#[test]
fn missing_part_is_named() {
    let e = err(&[
        ("PG_HOST", "db"),
        ("PG_USER", "u"),
        ("PG_PASSWORD", PASSWORD),
    ]);
    assert!(e.to_string().starts_with("PG_DB is not set"), "{e}");
    let e = err(&[("PG_DB", "d"), ("PG_USER", "u"), ("PG_PASSWORD", PASSWORD)]);
    assert!(e.to_string().starts_with("PG_HOST is not set"), "{e}");
    let e = err(&[("PG_HOST", "db"), ("PG_DB", "d"), ("PG_PASSWORD", PASSWORD)]);
    assert!(e.to_string().starts_with("PG_USER is not set"), "{e}");
}

#[test]
fn secret_and_secret_file_together_are_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), PASSWORD).unwrap();
    let path = file.path().to_str().unwrap();
    let e = err(&[
        ("PG_HOST", "db"),
        ("PG_DB", "d"),
        ("PG_USER", "u"),
        ("PG_PASSWORD", PASSWORD),
        ("PG_PASSWORD_FILE", path),
    ]);
    assert_eq!(
        e.to_string(),
        "both PG_PASSWORD and PG_PASSWORD_FILE are set; use only one"
    );
    let url = format!("postgres://u:{PASSWORD}@db/d");
    let e = err(&[("DATABASE_URL", &url), ("DATABASE_URL_FILE", path)]);
    assert_eq!(
        e.to_string(),
        "both DATABASE_URL and DATABASE_URL_FILE are set; use only one"
    );
}

#[test]
fn url_and_parts_together_are_refused() {
    let url = format!("postgres://u:{PASSWORD}@db/d");
    let e = err(&[("DATABASE_URL", &url), ("PG_PASSWORD", PASSWORD)]);
    assert!(
        matches!(
            e,
            SinkError::ConflictingVars {
                first: "DATABASE_URL",
                second: "PG_PASSWORD"
            }
        ),
        "{e:?}"
    );
}

#[test]
fn unreadable_secret_file_names_variable_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-secret");
    let missing = missing.to_str().unwrap();
    let e = err(&[
        ("PG_HOST", "db"),
        ("PG_DB", "d"),
        ("PG_USER", "u"),
        ("PG_PASSWORD_FILE", missing),
    ]);
    let text = e.to_string();
    assert!(
        text.contains("PG_PASSWORD_FILE") && text.contains(missing),
        "{text}"
    );
    assert!(matches!(
        e,
        SinkError::SecretFile {
            var: "PG_PASSWORD_FILE",
            ..
        }
    ));

    // A directory is not a readable secret file either.
    let as_dir = dir.path().to_str().unwrap();
    let e = err(&[("DATABASE_URL_FILE", as_dir)]);
    let text = e.to_string();
    assert!(
        text.contains("DATABASE_URL_FILE") && text.contains(as_dir),
        "{text}"
    );
}

#[test]
fn secret_files_are_used() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!("postgres://loader:{PASSWORD}@db.internal:6432/qb?sslmode=require\n"),
    )
    .unwrap();
    let cfg = PgConfig::from_lookup(lookup(&[(
        "DATABASE_URL_FILE",
        file.path().to_str().unwrap(),
    )]))
    .unwrap();
    assert_eq!(cfg.target(), "db.internal:6432");
    assert_eq!(cfg.dbname(), Some("qb"));
    assert_eq!(cfg.user(), Some("loader"));
    assert_eq!(cfg.ssl_mode(), SslMode::Require);
    let debug = format!("{cfg:?}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(debug.contains("[REDACTED]"), "{debug}");
}

#[test]
fn invalid_values_are_named() {
    let base = [
        ("PG_HOST", "db"),
        ("PG_DB", "d"),
        ("PG_USER", "u"),
        ("PG_PASSWORD", PASSWORD),
    ];
    for (var, value) in [
        ("PG_PORT", "70000"),
        ("PG_SSLMODE", "allow"),
        ("PG_POOL_SIZE", "many"),
        ("PG_CONNECT_TIMEOUT", "-1"),
    ] {
        let mut pairs = base.to_vec();
        pairs.push((var, value));
        let e = err(&pairs);
        assert!(e.to_string().starts_with(var), "{var}: {e}");
    }
    let e = err(&[(
        "DATABASE_URL",
        &format!("postgres://u:{PASSWORD}@db:port/d"),
    )]);
    assert!(e.to_string().starts_with("DATABASE_URL is invalid"), "{e}");
}
