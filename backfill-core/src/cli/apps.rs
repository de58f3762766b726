//! Per-company Intuit apps. A company's refresh token refreshes only with the app (client id
//! and secret) it was connected with, which the token store records (`client_id`, V8). When
//! that app is not `QBO_CLIENT_ID`, its secret is taken from `QBO_APPS_FILE`: a JSON object
//! `{"<client id>": "<client secret>", …}` (mode 0600 advised), read once per command and
//! never printed. Without it the command stops with one line naming the company, both apps
//! and the fix, instead of sending the token to the wrong app and advising a reconnection.

use std::collections::HashMap;

use qbo_client::{ExposeSecret as _, OAuthApp, QboConfig, QboError, SecretString, TokenStore};

use crate::Error;

/// The variable naming the file of further apps' secrets.
pub const APPS_FILE_ENV: &str = "QBO_APPS_FILE";

/// The secrets of `QBO_APPS_FILE`, by client id (empty when it is not set).
fn apps_file() -> Result<HashMap<String, SecretString>, Error> {
    let Some(path) = std::env::var_os(APPS_FILE_ENV).filter(|v| !v.is_empty()) else {
        return Ok(HashMap::new());
    };
    let shown = std::path::Path::new(&path).display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Usage(format!("{APPS_FILE_ENV} {shown} cannot be read: {e}")))?;
    // The parse error is not shown: it could quote a secret.
    let map: HashMap<String, String> = serde_json::from_str(&text).map_err(|_| {
        Error::Usage(format!(
            "{APPS_FILE_ENV} {shown} is not a JSON object of client id to client secret, \
             e.g. {{\"ABc…\": \"…\"}}"
        ))
    })?;
    Ok(map
        .into_iter()
        .map(|(id, secret)| (id.trim().to_owned(), SecretString::from(secret)))
        .collect())
}

/// The app client ids `QBO_APPS_FILE` holds secrets for (for `--all-realms`).
///
/// # Errors
/// [`Error::Usage`] when the file is set but unreadable or malformed.
pub(crate) fn apps_file_ids() -> Result<Vec<String>, Error> {
    Ok(apps_file()?.into_keys().collect())
}

/// `qbo` with the credentials of the app its company was connected with, as `store` records
/// it: unchanged when that is `QBO_CLIENT_ID` (or unknown), else that app's id with its secret
/// from `QBO_APPS_FILE`.
///
/// # Errors
/// [`Error::OtherApp`] (exit 2) when the company's app has no secret in `QBO_APPS_FILE`;
/// [`Error::Usage`] for an unreadable or malformed file.
pub(crate) async fn with_company_app(
    store: &dyn TokenStore,
    mut qbo: QboConfig,
) -> Result<QboConfig, Error> {
    // A store that cannot say which app is not an error: the configured one is tried.
    let connected_with = store
        .metadata(Some(&qbo.realm_id))
        .await
        .ok()
        .and_then(|m| m.into_iter().next())
        .and_then(|m| m.client_id);
    let Some(app) = connected_with.filter(|c| *c != qbo.credentials.client_id) else {
        return Ok(qbo);
    };
    let Some(secret) = apps_file()?.remove(&app) else {
        return Err(Error::OtherApp {
            realm: qbo.realm_id.clone(),
            connected_with: app,
            configured: qbo.credentials.client_id.clone(),
        });
    };
    tracing::info!(
        realm = qbo.realm_id.as_str(),
        client_id = app.as_str(),
        "company_app_from_apps_file"
    );
    qbo.credentials.client_id = app;
    qbo.credentials.client_secret = secret;
    Ok(qbo)
}

/// The Intuit app `auth` works with: `QBO_CLIENT_ID`'s (with its secret, the endpoints of
/// `QBO_ENV` and the URL overrides) when `client_id` is `None` or that app, else app
/// `client_id` with its secret from `QBO_APPS_FILE` and the same endpoints. `realm` is the
/// company whose recorded app it is (revoke, disconnect), `None` for `auth connect --app`.
///
/// # Errors
/// [`Error::OtherApp`] (a company's app) or [`Error::AppNotInAppsFile`] (`--app`), both exit
/// 2, when `QBO_APPS_FILE` has no secret for it; [`Error::QboConfig`] / [`Error::Connect`]
/// for the environment's settings.
pub(crate) fn oauth_app(client_id: Option<&str>, realm: Option<&str>) -> Result<OAuthApp, Error> {
    let env = |name: &str| std::env::var(name).ok();
    let configured = OAuthApp::from_lookup(env).map_err(app_error);
    let wanted = client_id.map(str::trim).filter(|c| !c.is_empty());
    let wanted = match (wanted, &configured) {
        (None, _) => return configured,
        (Some(c), Ok(app)) if c == app.client_id() => return configured,
        (Some(c), _) => c,
    };
    let Some(secret) = apps_file()?.remove(wanted) else {
        return Err(match realm {
            Some(realm) => Error::OtherApp {
                realm: realm.to_owned(),
                connected_with: wanted.to_owned(),
                configured: configured
                    .map(|a| a.client_id().to_owned())
                    .unwrap_or_else(|_| "not set".to_owned()),
            },
            None => Error::AppNotInAppsFile {
                client_id: wanted.to_owned(),
            },
        });
    };
    tracing::info!(client_id = wanted, "oauth_app_from_apps_file");
    // The app's own id and secret; everything else (QBO_ENV, URL overrides) as configured.
    OAuthApp::from_lookup(|name| match name {
        "QBO_CLIENT_ID" => Some(wanted.to_owned()),
        "QBO_CLIENT_SECRET" => Some(secret.expose_secret().to_owned()),
        "QBO_CLIENT_ID_FILE" | "QBO_CLIENT_SECRET_FILE" => None,
        other => env(other),
    })
    .map_err(app_error)
}

fn app_error(e: QboError) -> Error {
    match e {
        QboError::Config(c) => Error::QboConfig(c),
        e => Error::Connect(e),
    }
}
