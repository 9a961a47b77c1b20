//! Authentication of inbound calls, party by party, with one re-read of the party's secret after a
//! failure (a rotation the container has not seen yet; see [`crate::secrets`]).

use std::collections::HashMap;

use lambda_http::Request;

use crate::secrets::{is_auth_failure, Party};
use crate::{http, App, AppResult};

/// Runs `check`; when it fails authentication, re-reads `party`'s secret (rate limited) and runs
/// it once more with whatever value is current.
pub async fn checked<T>(app: &App, party: Party, check: impl Fn() -> AppResult<T>) -> AppResult<T> {
    match check() {
        Err(e) if is_auth_failure(&e) && app.secrets.is_some() => {
            app.reread_secret(party).await;
            check()
        }
        other => other,
    }
}

/// Dataphin's access token and timestamp ([`http::check_access_token`]).
pub async fn dataphin(app: &App, query: &HashMap<String, String>, now: i64) -> AppResult<()> {
    checked(app, Party::Dataphin, || {
        http::check_access_token(&app.config, query, now)
    })
    .await
}

/// The ops API's bearer ([`http::check_admin`]).
pub async fn admin(app: &App, req: &Request) -> AppResult<()> {
    checked(app, Party::Admin, || {
        http::check_admin(req, &app.config.admin_token)
    })
    .await
}
