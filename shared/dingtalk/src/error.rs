//! The one error type of the crate, short enough to be stored as a ticket's dispatch error.

/// Longest message kept from DingTalk or the transport, so a stored dispatch error stays readable.
const MAX_MESSAGE_CHARS: usize = 200;

/// Why a DingTalk call failed. The display never contains the app secret or the access token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DingTalkError {
    /// DingTalk answered with an error (`{"code", "message"}`), or with a reply the bridge cannot use
    /// (code `malformedReply`, `terminateNotConfirmed`).
    #[error("dingtalk {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// DingTalk could not be reached, or the connection broke before a full reply.
    #[error("dingtalk unreachable: {0}")]
    Transport(String),
    /// No complete reply within the time limit.
    #[error("dingtalk timed out")]
    Timeout,
    /// The request was refused here, before anything was sent.
    #[error("invalid dingtalk request: {0}")]
    Invalid(String),
}

impl DingTalkError {
    /// Whether the same call may succeed later: DingTalk's server errors and throttling, transport
    /// failures and timeouts. Client errors (bad parameters, unknown process code) will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            DingTalkError::Api { status, .. } => {
                *status >= 500 || self.is_throttled() || self.is_quota_exhausted()
            }
            DingTalkError::Transport(_) | DingTalkError::Timeout => true,
            DingTalkError::Invalid(_) => false,
        }
    }

    /// DingTalk asks to slow down (per-app or per-API rate limits, busy): wait at least a second
    /// and repeat. DingTalk did nothing with a throttled call, so repeating a create is safe.
    pub fn is_throttled(&self) -> bool {
        let DingTalkError::Api { status, code, .. } = self else {
            return false;
        };
        *status == 429
            || code.starts_with("Forbidden.AccessDenied.Qps")
            || code.starts_with("Forbidden.AccessDenied.Qpm")
            || code.starts_with("Throttling")
            || matches!(
                code.as_str(),
                "systemBusy" | "ServiceUnavailable" | "90002" | "90018" | "88" | "-1"
            )
    }

    /// The organisation's monthly API budget is spent (`ApiCountLimitForOrg`, legacy 90020): every
    /// metered call fails until it returns, so the bridge stops calling instead of spinning.
    pub fn is_quota_exhausted(&self) -> bool {
        matches!(self, DingTalkError::Api { code, .. }
            if code.ends_with("ApiCountLimitForOrg") || code == "90020")
    }

    /// DingTalk's error code, when DingTalk answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            DingTalkError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn api(status: u16, code: impl Into<String>, message: impl AsRef<str>) -> Self {
        DingTalkError::Api {
            status,
            code: shorten(&code.into()),
            message: shorten(message.as_ref()),
        }
    }

    pub(crate) fn malformed(status: u16, what: &str) -> Self {
        DingTalkError::api(status, "malformedReply", what)
    }

    /// DingTalk refused the AppKey/AppSecret pair of a token request.
    pub(crate) fn is_refused_secret(&self) -> bool {
        matches!(self, DingTalkError::Api { code, .. } if code == "invalidClientIdOrSecret")
    }

    pub(crate) fn is_invalid_authentication(&self) -> bool {
        matches!(self, DingTalkError::Api { status: 400 | 401, code, .. } if code == "InvalidAuthentication")
    }
}

impl From<reqwest::Error> for DingTalkError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return DingTalkError::Timeout;
        }
        // The URL carries no secret, but it is noise in a stored error: keep the cause chain only.
        let e = e.without_url();
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let part = cause.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = cause.source();
        }
        DingTalkError::Transport(shorten(&text))
    }
}

/// Cuts `s` to [`MAX_MESSAGE_CHARS`] characters (on a character boundary) and flattens newlines.
pub(crate) fn shorten(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    match flat.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_only_for_server_side_and_transport_failures() {
        assert!(DingTalkError::api(500, "systemError", "x").is_retryable());
        assert!(DingTalkError::api(503, "", "x").is_retryable());
        assert!(DingTalkError::api(429, "", "x").is_retryable());
        assert!(DingTalkError::api(403, "Throttling.Api", "x").is_retryable());
        for code in [
            "Forbidden.AccessDenied.QpsLimitForApi",
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
            "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi",
            "90018",
            "88",
        ] {
            let e = DingTalkError::api(403, code, "x");
            assert!(e.is_retryable() && e.is_throttled(), "{code}");
        }
        let quota = DingTalkError::api(403, "Forbidden.AccessDenied.ApiCountLimitForOrg", "x");
        assert!(quota.is_quota_exhausted() && !quota.is_throttled());
        assert!(DingTalkError::api(200, "90020", "x").is_quota_exhausted());
        assert!(!DingTalkError::api(403, "Forbidden.AccessDenied", "x").is_retryable());
        assert!(DingTalkError::Transport("refused".into()).is_retryable());
        assert!(DingTalkError::Timeout.is_retryable());
        assert!(!DingTalkError::api(400, "processCodeError", "x").is_retryable());
        assert!(!DingTalkError::Invalid("x".into()).is_retryable());
    }

    #[test]
    fn display_is_short_and_single_line() {
        let e = DingTalkError::api(
            400,
            "invalidParameter",
            format!("line1\nline2 {}", "y".repeat(500)),
        );
        let shown = e.to_string();
        assert!(!shown.contains('\n'));
        assert!(shown.chars().count() < 260, "{shown}");
        assert!(shown.starts_with("dingtalk 400 invalidParameter: line1 line2 y"));
    }

    #[test]
    fn shorten_respects_char_boundaries() {
        let s = "审".repeat(300);
        let cut = shorten(&s);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
