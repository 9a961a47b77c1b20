//! Bounded outbound HTTP (issue 14): every call the bridge makes to Dataphin, DingTalk or the company
//! BPM goes through a client built here, so no caller can forget a bound.
//!
//! - https only, except plain http to `127.0.0.1`/`localhost` (local stacks and tests), checked when
//!   the configuration is read ([`check_url`]);
//! - redirects are never followed: a 3xx could carry an access token or a signed body to another host;
//! - connect and total timeouts on every request;
//! - responses are read up to [`MAX_RESPONSE`] bytes ([`read_capped`]); a longer answer is an error,
//!   not an allocation of whatever size the peer chose.

use std::time::Duration;

use thiserror::Error;
use url::Url;

/// The largest response body the bridge reads from any party.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// Why a URL is refused as an outbound target.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("is not an absolute URL")]
    NotAUrl,
    #[error("must use https (plain http only to 127.0.0.1 or localhost)")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Credentials,
}

/// `https://…`, or `http://127.0.0.1…`/`http://localhost…` for local settings.
pub fn check_url(raw: &str) -> Result<Url, UrlError> {
    let url = Url::parse(raw.trim()).map_err(|_| UrlError::NotAUrl)?;
    if !url.has_host() {
        return Err(UrlError::NotAUrl);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_name(&url) => Ok(url),
        "http" => Err(UrlError::NotHttps),
        _ => Err(UrlError::NotAUrl),
    }
}

fn is_loopback_name(url: &Url) -> bool {
    matches!(
        url.host(),
        Some(url::Host::Domain("localhost")) | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
    )
}

/// A client with the bridge's bounds: no redirects, `connect` and `total` timeouts, no proxy taken
/// from the environment (a stray `HTTPS_PROXY` must not see the tokens).
pub fn client(connect: Duration, total: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

/// Why a response body could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("response exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// The body of `response`, read chunk by chunk and refused once it passes [`MAX_RESPONSE`]
/// (whatever `Content-Length` claims).
pub async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    read_capped_to(response, MAX_RESPONSE).await
}

/// [`read_capped`] with another limit.
pub async fn read_capped_to(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_capped`] as text (lossy: an excerpt of a refusal is all callers want from it).
pub async fn read_capped_text(response: reqwest::Response) -> Result<String, ReadError> {
    let bytes = read_capped(response).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://api.dingtalk.com").is_ok());
        assert!(check_url("http://127.0.0.1:9100/bpm").is_ok());
        assert!(check_url("http://localhost:9100/bpm").is_ok());
        assert_eq!(
            check_url("http://api.dingtalk.com"),
            Err(UrlError::NotHttps)
        );
        assert_eq!(check_url("http://127.0.0.2/x"), Err(UrlError::NotHttps));
        assert_eq!(
            check_url("http://localhost.evil.com/x"),
            Err(UrlError::NotHttps)
        );
        assert_eq!(check_url("ftp://example.com"), Err(UrlError::NotAUrl));
        assert_eq!(check_url("not a url"), Err(UrlError::NotAUrl));
        assert_eq!(
            check_url("https://u:p@example.com"),
            Err(UrlError::Credentials)
        );
    }

    /// A one-shot server answering `response` to the first request.
    async fn serve_once(response: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let url = serve_once(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/steal\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let http = client(Duration::from_secs(1), Duration::from_secs(2)).unwrap();
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 302);
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_refused_even_without_a_length() {
        let mut raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'x', MAX_RESPONSE + 1));
        let url = serve_once(raw).await;
        let http = client(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
        let resp = http.get(url).send().await.unwrap();
        let err = read_capped(resp).await.unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::TooLarge {
                    limit: MAX_RESPONSE
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bodies_at_the_cap_are_read() {
        let mut raw =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {MAX_RESPONSE}\r\n\r\n").into_bytes();
        raw.extend(std::iter::repeat_n(b'y', MAX_RESPONSE));
        let url = serve_once(raw).await;
        let http = client(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(read_capped(resp).await.unwrap().len(), MAX_RESPONSE);
    }

    #[tokio::test]
    async fn a_hanging_peer_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let http = client(Duration::from_secs(1), Duration::from_millis(300)).unwrap();
        let started = std::time::Instant::now();
        let err = http
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
