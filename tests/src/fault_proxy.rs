//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1: in front of dynalite it answers a share of
//! requests as DynamoDB does when it throttles (`400 ThrottlingException`) or fails (`500`), resets
//! connections (before or after forwarding, so some writes happen without the caller knowing), and
//! can be "down"; in front of a fake it can hold every reply back (a slow network).
//!
//! Requests and responses are framed by `Content-Length` (what the AWS SDK, dynalite and the axum
//! fakes use); a message without it ends the connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does to each request; shares are probabilities in `0.0..=1.0`.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub throttle: f64,
    pub server_error: f64,
    pub reset: f64,
    /// While down, every connection is reset at once.
    pub down: bool,
    /// Held before each forwarded reply is passed back.
    pub reply_delay: Duration,
}

/// How many faults were injected, by kind, and how many requests were forwarded with their bytes
/// (what DynamoDB read and sent back: the cost of a request that does not depend on timing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub forwarded: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub resets: u64,
    /// Bytes of the forwarded requests (head and body).
    pub request_bytes: u64,
    /// Bytes of the replies passed back from upstream (head and body).
    pub response_bytes: u64,
}

#[derive(Default)]
struct State {
    plan: FaultPlan,
    injected: Injected,
}

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[derive(Clone, Copy)]
enum Fault {
    None,
    Throttle,
    ServerError,
    ResetBefore,
    ResetAfter,
}

impl FaultProxy {
    /// Starts the proxy on a free port of 127.0.0.1 in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream} is not http://ip:port: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, shared.clone()));
            }
        });
        FaultProxy {
            addr,
            state,
            accept,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_plan(&self, plan: FaultPlan) {
        self.lock().plan = plan;
    }

    pub fn injected(&self) -> Injected {
        self.lock().injected
    }
}

fn decide(state: &Mutex<State>) -> (Fault, Duration) {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let plan = s.plan.clone();
    let roll: f64 = rand::thread_rng().gen();
    let fault = if plan.down {
        Fault::ResetBefore
    } else if roll < plan.throttle {
        Fault::Throttle
    } else if roll < plan.throttle + plan.server_error {
        Fault::ServerError
    } else if roll < plan.throttle + plan.server_error + plan.reset {
        if rand::thread_rng().gen_bool(0.5) {
            Fault::ResetBefore
        } else {
            Fault::ResetAfter
        }
    } else {
        Fault::None
    };
    match fault {
        Fault::None => s.injected.forwarded += 1,
        Fault::Throttle => s.injected.throttled += 1,
        Fault::ServerError => s.injected.server_errors += 1,
        Fault::ResetBefore => s.injected.resets += 1,
        Fault::ResetAfter => {
            s.injected.resets += 1;
            s.injected.forwarded += 1;
        }
    }
    (fault, plan.reply_delay)
}

fn canned(status: &str, kind: &str) -> Vec<u8> {
    let body = format!(
        "{{\"__type\":\"com.amazonaws.dynamodb.v20120810#{kind}\",\"message\":\"injected by the fault proxy\"}}"
    );
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Ends the connection with a TCP reset instead of a clean close.
fn reset(stream: TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    let mut server: Option<TcpStream> = None;
    let mut client_buf = Vec::new();
    let mut server_buf = Vec::new();
    loop {
        let Some(request) = read_message(&mut client, &mut client_buf).await else {
            return;
        };
        let (fault, delay) = decide(&state);
        let reply = match fault {
            Fault::ResetBefore => return reset(client),
            Fault::Throttle => canned("400 Bad Request", "ThrottlingException"),
            Fault::ServerError => canned("500 Internal Server Error", "InternalServerError"),
            Fault::None | Fault::ResetAfter => {
                // A kept-alive upstream connection may have been closed by the server while
                // idle (before reading the request): then the request goes once more on a new one.
                let mut answer = None;
                for _ in 0..2 {
                    let reused = server.is_some();
                    if server.is_none() {
                        match TcpStream::connect(upstream).await {
                            Ok(s) => server = Some(s),
                            Err(_) => return reset(client),
                        }
                    }
                    let up = server.as_mut().expect("connected");
                    server_buf.clear();
                    let sent = up.write_all(&request).await.is_ok();
                    answer = if sent {
                        read_message(up, &mut server_buf).await
                    } else {
                        None
                    };
                    if answer.is_some() || !reused {
                        break;
                    }
                    server = None;
                }
                let Some(response) = answer else {
                    return reset(client);
                };
                {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    s.injected.request_bytes += request.len() as u64;
                    s.injected.response_bytes += response.len() as u64;
                }
                if matches!(fault, Fault::ResetAfter) {
                    return reset(client);
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                response
            }
        };
        if client.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 message (head and `Content-Length` body); `None` at the end of the stream
/// or for a message it cannot frame.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if head.contains("transfer-encoding:") {
        return None;
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(Some(0))?;
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf.drain(..head_end + length).collect())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
