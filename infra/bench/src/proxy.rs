//! A counting TCP proxy in front of dynalite: forwards bytes unchanged both ways and counts the
//! HTTP requests the client sends, by DynamoDB operation (`X-Amz-Target`).
//!
//! Counting happens before the request bytes are forwarded, so once a caller has its answer every
//! request that produced it is already counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::BenchError;

/// Requests per DynamoDB operation (`GetItem`, `Query`, ...).
pub type Counts = BTreeMap<String, u64>;

/// Operation name recorded when a request carries no `X-Amz-Target`.
const UNTARGETED: &str = "(no X-Amz-Target)";
/// Recorded when a request body is not framed by Content-Length: later requests on that
/// connection can no longer be told apart, so the report must not be trusted.
const UNFRAMED: &str = "(unframed body: counts incomplete)";

pub struct CountingProxy {
    addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    /// Bytes DynamoDB sent back (what a request made it read and return).
    response_bytes: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl CountingProxy {
    pub async fn start(upstream: SocketAddr) -> Result<CountingProxy, BenchError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(BenchError::io("bind the counting proxy"))?;
        let addr = listener
            .local_addr()
            .map_err(BenchError::io("counting proxy address"))?;
        let counts = Arc::new(Mutex::new(Counts::new()));
        let response_bytes = Arc::new(AtomicU64::new(0));
        let shared = counts.clone();
        let shared_bytes = response_bytes.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = shared.clone();
                let bytes = shared_bytes.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, counts, bytes).await;
                    }
                });
            }
        });
        Ok(CountingProxy {
            addr,
            counts,
            response_bytes,
            accept,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything counted so far.
    pub fn snapshot(&self) -> Counts {
        self.counts.lock().expect("counts lock").clone()
    }

    /// Bytes sent back by DynamoDB so far.
    pub fn response_bytes(&self) -> u64 {
        self.response_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Requests counted between two snapshots.
pub fn delta(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or_default()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

pub fn total(counts: &Counts) -> u64 {
    counts.values().sum()
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    counts: Arc<Mutex<Counts>>,
    response_bytes: Arc<AtomicU64>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let mut framer = RequestFramer::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let ops = framer.feed(&buf[..n]);
            if !ops.is_empty() {
                let mut counts = counts.lock().expect("counts lock");
                for op in ops {
                    *counts.entry(op).or_default() += 1;
                }
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            response_bytes.fetch_add(n as u64, Ordering::Relaxed);
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// Splits a client's byte stream into HTTP/1.1 requests (head, then a Content-Length body).
#[derive(Default)]
struct RequestFramer {
    pending: Vec<u8>,
    body_left: usize,
    lost: bool,
}

impl RequestFramer {
    /// Feeds received bytes; returns the operation of every request whose head completed.
    fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut ops = Vec::new();
        if self.lost {
            return ops;
        }
        self.pending.extend_from_slice(data);
        let mut at = 0;
        loop {
            if self.body_left > 0 {
                let take = self.body_left.min(self.pending.len() - at);
                self.body_left -= take;
                at += take;
                if self.body_left > 0 {
                    break;
                }
            }
            let Some(end) = find(&self.pending[at..], b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&self.pending[at..at + end]).into_owned();
            at += end + 4;
            let header = |name: &str| {
                head.lines().skip(1).find_map(|line| {
                    let (k, v) = line.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            let op = header("x-amz-target")
                .map(|t| t.rsplit('.').next().unwrap_or_default().to_string())
                .unwrap_or_else(|| UNTARGETED.to_string());
            ops.push(op);
            match header("content-length").map(|v| v.parse::<usize>()) {
                Some(Ok(n)) => self.body_left = n,
                None if header("transfer-encoding").is_none() => self.body_left = 0,
                _ => {
                    ops.push(UNFRAMED.to_string());
                    self.lost = true;
                    self.pending = Vec::new();
                    return ops;
                }
            }
        }
        self.pending.drain(..at);
        ops
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, body: &str) -> String {
        format!(
            "POST / HTTP/1.1\r\nhost: x\r\nX-Amz-Target: DynamoDB_20120810.{target}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn counts_pipelined_requests_and_ignores_bodies() {
        let stream =
            request("GetItem", "{\"a\":\"\r\n\r\nGET / HTTP/1.1\"}") + &request("Query", "{}");
        let mut framer = RequestFramer::default();
        assert_eq!(framer.feed(stream.as_bytes()), ["GetItem", "Query"]);
    }

    #[test]
    fn counts_requests_split_at_every_byte() {
        let stream = request("PutItem", "{\"k\":1}") + &request("UpdateItem", "");
        let mut framer = RequestFramer::default();
        let ops: Vec<String> = stream
            .as_bytes()
            .chunks(1)
            .flat_map(|b| framer.feed(b))
            .collect();
        assert_eq!(ops, ["PutItem", "UpdateItem"]);
    }

    #[test]
    fn chunked_bodies_are_flagged_not_miscounted() {
        let stream = "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let mut framer = RequestFramer::default();
        assert_eq!(framer.feed(stream.as_bytes()), [UNTARGETED, UNFRAMED]);
        assert!(framer.feed(request("GetItem", "").as_bytes()).is_empty());
    }

    #[test]
    fn delta_keeps_only_new_requests() {
        let before: Counts = [("GetItem".to_string(), 2)].into();
        let after: Counts = [("GetItem".to_string(), 3), ("Query".to_string(), 4)].into();
        assert_eq!(
            delta(&before, &after),
            [("GetItem".to_string(), 1), ("Query".to_string(), 4)].into()
        );
        assert_eq!(total(&after), 7);
    }
}
