//! Lambda's DynamoDB event source mapping, for `make dev` and the tests: it reads the stream
//! records the local DynamoDB (`infra/dynalite/server.js --streams DIR`) appends per table, keeps
//! those that pass the mapping's filter patterns, and invokes the function with batches of them,
//! as AWS does for `template.yaml`'s `TicketStream` event:
//!
//! - records of one partition key stay in order in one lane; lanes run side by side
//!   (`ParallelizationFactor`);
//! - a batch answered with `batchItemFailures` is retried from the first failed record, one that
//!   failed outright is retried whole, with backoff, `MaximumRetryAttempts` times; then the
//!   batch's metadata goes to the dead-letter file, shaped like Lambda's on-failure record, and
//!   the lane moves on;
//! - the position is checkpointed to a file after each round, so a restart (even after SIGKILL)
//!   resumes where it stopped and records are delivered at least once.

use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

/// Invokes the function with one event and returns its answer, or why it failed.
pub type Invoke =
    Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send>> + Send + Sync>;

/// How the mapping hands records over (the template's event properties).
#[derive(Clone)]
pub struct Mapping {
    /// `BatchSize`.
    pub batch_size: usize,
    /// `ParallelizationFactor`: lanes, each holding a fixed share of the partition keys.
    pub lanes: usize,
    /// `MaximumRetryAttempts`.
    pub max_retries: u32,
    /// `FilterCriteria` patterns: a record is handed over if it matches one.
    pub filters: Vec<Value>,
    /// Where exhausted batches are described (Lambda's `OnFailure` destination).
    pub dead_letters: Option<PathBuf>,
    /// The function's name, for the on-failure record.
    pub function: String,
    /// The first retry's pause; each further one doubles it.
    pub retry_pause: Duration,
}

impl Mapping {
    pub fn new(filters: &[&str], function: &str) -> Mapping {
        Mapping {
            batch_size: 10,
            lanes: 4,
            max_retries: 5,
            filters: filters
                .iter()
                .map(|p| serde_json::from_str(p).expect("a filter pattern is JSON"))
                .collect(),
            dead_letters: None,
            function: function.to_string(),
            retry_pause: Duration::from_millis(100),
        }
    }
}

/// The mapping over one table's stream file.
pub struct StreamRunner {
    log: PathBuf,
    checkpoint: Option<PathBuf>,
    offset: u64,
    mapping: Mapping,
}

/// Rounds one [`StreamRunner::drain`] works through before it returns: work writes records, which
/// are more work; a quiet table is reached in a few rounds.
const MAX_ROUNDS: usize = 64;

impl StreamRunner {
    /// A runner starting at the checkpoint if there is one, else at the start of the stream.
    pub fn new(log: PathBuf, checkpoint: Option<PathBuf>, mapping: Mapping) -> StreamRunner {
        let offset = checkpoint
            .as_ref()
            .and_then(|c| std::fs::read_to_string(c).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        StreamRunner {
            log,
            checkpoint,
            offset,
            mapping,
        }
    }

    /// Hands over every record written so far, and those the work writes meanwhile, until the
    /// stream is quiet (at most [`MAX_ROUNDS`] rounds). Returns how many records passed the filter.
    pub async fn drain(&mut self, invoke: &Invoke) -> usize {
        let mut handed = 0;
        for _ in 0..MAX_ROUNDS {
            let (records, end) = self.read_new();
            if end == self.offset {
                break;
            }
            let passing: Vec<Value> = records
                .into_iter()
                .filter(|r| self.mapping.filters.iter().any(|p| matches(p, Some(r))))
                .collect();
            handed += passing.len();
            self.hand_over(passing, invoke).await;
            self.offset = end;
            if let Some(c) = &self.checkpoint {
                if let Err(e) = std::fs::write(c, end.to_string()) {
                    tracing::warn!(error = %e, "stream checkpoint not written");
                }
            }
        }
        handed
    }

    /// Drains the stream every `poll`, for ever.
    pub async fn run(mut self, poll: Duration, invoke: Invoke) {
        loop {
            self.drain(&invoke).await;
            tokio::time::sleep(poll).await;
        }
    }

    /// Complete lines from the offset on, and the offset after them. A stream file that shrank
    /// belongs to a re-created table: it is read from its start.
    fn read_new(&mut self) -> (Vec<Value>, u64) {
        let Ok(mut file) = std::fs::File::open(&self.log) else {
            return (Vec::new(), self.offset);
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0;
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return (Vec::new(), self.offset);
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return (Vec::new(), self.offset);
        }
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        let records = text[..complete]
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (records, self.offset + complete as u64)
    }

    /// Splits the records into lanes by partition key and runs the lanes side by side.
    async fn hand_over(&self, records: Vec<Value>, invoke: &Invoke) {
        let lanes = self.mapping.lanes.max(1);
        let mut by_lane: Vec<Vec<Value>> = vec![Vec::new(); lanes];
        for r in records {
            let key = r["dynamodb"]["Keys"].to_string();
            by_lane[lane_of(&key, lanes)].push(r);
        }
        let mut set = tokio::task::JoinSet::new();
        for (lane, records) in by_lane.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let (mapping, invoke, log) = (self.mapping.clone(), invoke.clone(), self.log.clone());
            set.spawn(async move { run_lane(&mapping, &invoke, &log, lane, records).await });
        }
        while set.join_next().await.is_some() {}
    }
}

fn lane_of(key: &str, lanes: usize) -> usize {
    // FNV-1a: stable across runs, so a restart keeps each key in its lane.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    (h % lanes as u64) as usize
}

async fn run_lane(
    mapping: &Mapping,
    invoke: &Invoke,
    log: &std::path::Path,
    lane: usize,
    records: Vec<Value>,
) {
    for batch in records.chunks(mapping.batch_size.max(1)) {
        let mut start = 0;
        let mut attempts = 0u32;
        loop {
            let pending = &batch[start..];
            let answer = invoke(json!({ "Records": pending })).await;
            let failed_at = match &answer {
                Ok(reply) => first_failure(reply, pending),
                Err(_) => Some(0),
            };
            let Some(at) = failed_at else { break };
            start += at;
            attempts += 1;
            if attempts > mapping.max_retries {
                let error = match answer {
                    Err(e) => e,
                    Ok(reply) => reply.to_string(),
                };
                dead_letter(mapping, log, lane, &batch[start..], attempts, &error);
                break;
            }
            let pause = mapping.retry_pause * 2u32.saturating_pow(attempts - 1).min(32);
            tokio::time::sleep(pause).await;
        }
    }
}

/// The index (in `pending`) of the first record the function reported failed, if any.
fn first_failure(reply: &Value, pending: &[Value]) -> Option<usize> {
    let failed: Vec<&str> = reply["batchItemFailures"]
        .as_array()?
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    pending.iter().position(|r| {
        r["dynamodb"]["SequenceNumber"]
            .as_str()
            .is_some_and(|s| failed.contains(&s))
    })
}

/// Describes an exhausted batch as Lambda's on-failure destination does for a stream.
fn dead_letter(
    mapping: &Mapping,
    log: &std::path::Path,
    lane: usize,
    batch: &[Value],
    attempts: u32,
    error: &str,
) {
    let Some(path) = &mapping.dead_letters else {
        return;
    };
    let seq = |r: Option<&Value>| r.map(|r| r["dynamodb"]["SequenceNumber"].clone());
    let arrival =
        |r: Option<&Value>| r.map(|r| r["dynamodb"]["ApproximateCreationDateTime"].clone());
    let stream_arn = batch.first().map(|r| r["eventSourceARN"].clone());
    let line = json!({
        "version": "1.0",
        "timestamp": time_now(),
        "requestContext": {
            "functionArn": mapping.function,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": attempts,
        },
        "responseContext": {"functionError": error},
        "DDBStreamBatchInfo": {
            "shardId": format!("{}#lane-{lane}", log.display()),
            "startSequenceNumber": seq(batch.first()),
            "endSequenceNumber": seq(batch.last()),
            "approximateArrivalOfFirstRecord": arrival(batch.first()),
            "approximateArrivalOfLastRecord": arrival(batch.last()),
            "batchSize": batch.len(),
            "streamArn": stream_arn,
        },
    });
    tracing::error!(function = %mapping.function, batch = batch.len(), "stream batch dead-lettered");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        tracing::error!(error = %e, "dead letter not written");
    }
}

fn time_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}

/// Whether `value` matches an event filter pattern: objects match field by field, a list matches
/// if one of its entries does (a literal, `{"prefix": ..}` or `{"exists": ..}`).
pub fn matches(pattern: &Value, value: Option<&Value>) -> bool {
    match pattern {
        Value::Object(fields) => fields
            .iter()
            .all(|(k, p)| matches(p, value.and_then(|v| v.get(k)))),
        Value::Array(options) => options.iter().any(|o| match o {
            Value::Object(rule) => {
                if let Some(prefix) = rule.get("prefix").and_then(Value::as_str) {
                    value
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.starts_with(prefix))
                } else if let Some(exists) = rule.get("exists").and_then(Value::as_bool) {
                    value.is_some() == exists
                } else {
                    false
                }
            }
            literal => value == Some(literal),
        }),
        _ => false,
    }
}

/// An [`Invoke`] through a Lambda-compatible invoke endpoint (`cargo lambda watch`'s), with the
/// function's error answered as Lambda answers it (`X-Amz-Function-Error`, or an `errorType`).
pub fn http_invoke(endpoint: String, function: String, timeout: Duration) -> Invoke {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("an HTTP client");
    Arc::new(move |event: Value| {
        let (client, url) = (
            client.clone(),
            format!("{endpoint}/2015-03-31/functions/{function}/invocations"),
        );
        Box::pin(async move {
            let reply = client
                .post(&url)
                .json(&event)
                .send()
                .await
                .map_err(|e| format!("invoke: {e}"))?;
            let status = reply.status();
            let function_error = reply.headers().contains_key("x-amz-function-error");
            let body: Value = reply.json().await.unwrap_or(Value::Null);
            if !status.is_success() || function_error || body.get("errorType").is_some() {
                return Err(format!("function error ({status}): {body}"));
            }
            Ok(body)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// A stream file of `n` INSERT records of one partition key (one lane, in order).
    fn stream_file(dir: &std::path::Path, n: usize) -> PathBuf {
        let path = dir.join("t.jsonl");
        let mut text = String::new();
        for i in 1..=n {
            let r = json!({"eventName": "INSERT", "eventSourceARN": "arn:local/t/stream/local",
                "dynamodb": {"Keys": {"pk": {"S": "k"}}, "SequenceNumber": format!("{i:021}"),
                "ApproximateCreationDateTime": 1}});
            text.push_str(&format!("{r}\n"));
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("streams-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An invoke that records the sequence numbers of each batch and answers with `answer`.
    fn recording(
        answer: impl Fn(&[String]) -> Result<Value, String> + Send + Sync + 'static,
    ) -> (Invoke, Arc<Mutex<Vec<Vec<String>>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        let invoke: Invoke = Arc::new(move |event: Value| {
            let seqs: Vec<String> = event["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r["dynamodb"]["SequenceNumber"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            log.lock().unwrap().push(seqs.clone());
            let reply = answer(&seqs);
            Box::pin(async move { reply })
        });
        (invoke, seen)
    }

    fn mapping(dir: &std::path::Path) -> Mapping {
        let mut m = Mapping::new(&[r#"{"eventName": ["INSERT"]}"#], "dispatch");
        m.batch_size = 3;
        m.max_retries = 2;
        m.retry_pause = Duration::from_millis(1);
        m.dead_letters = Some(dir.join("dead-letters.jsonl"));
        m
    }

    #[tokio::test]
    async fn a_partial_failure_is_retried_from_the_failed_record_and_order_is_kept() {
        let dir = temp_dir("partial");
        let log = stream_file(&dir, 5);
        let failed_once = Arc::new(Mutex::new(false));
        let (invoke, seen) = recording(move |seqs| {
            // Record 2 fails the first time it is handed over.
            let mut once = failed_once.lock().unwrap();
            match seqs.iter().find(|s| s.ends_with("002")) {
                Some(s) if !*once => {
                    *once = true;
                    Ok(json!({"batchItemFailures": [{"itemIdentifier": s}]}))
                }
                _ => Ok(json!({"batchItemFailures": []})),
            }
        });
        let checkpoint = dir.join("t.checkpoint");
        let mut runner = StreamRunner::new(log.clone(), Some(checkpoint.clone()), mapping(&dir));
        assert_eq!(runner.drain(&invoke).await, 5);
        let n = |v: &[&str]| v.iter().map(|s| format!("{:0>21}", s)).collect::<Vec<_>>();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![n(&["1", "2", "3"]), n(&["2", "3"]), n(&["4", "5"])],
            "record 1 is not handed over again; 2 and 3 are, in order"
        );
        assert!(
            !dir.join("dead-letters.jsonl").exists(),
            "nothing exhausted"
        );
        // A runner started again from the checkpoint hands over nothing twice.
        let mut again = StreamRunner::new(log, Some(checkpoint), mapping(&dir));
        assert_eq!(again.drain(&invoke).await, 0);
    }

    #[tokio::test]
    async fn a_batch_that_keeps_failing_is_dead_lettered_and_the_lane_moves_on() {
        let dir = temp_dir("exhausted");
        let log = stream_file(&dir, 4);
        let (invoke, seen) = recording(|seqs| {
            if seqs.iter().any(|s| s.ends_with("001")) {
                Err("function error: boom".to_string())
            } else {
                Ok(json!({"batchItemFailures": []}))
            }
        });
        let mut runner = StreamRunner::new(log, None, mapping(&dir));
        runner.drain(&invoke).await;
        let batches = seen.lock().unwrap().clone();
        assert_eq!(
            batches.len(),
            1 + 2 + 1,
            "first try, 2 retries, then the next batch"
        );
        assert!(batches[3].iter().any(|s| s.ends_with("004")), "{batches:?}");
        let text = std::fs::read_to_string(dir.join("dead-letters.jsonl")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let d = &lines[0];
        assert_eq!(d["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(d["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(d["DDBStreamBatchInfo"]["batchSize"], 3);
        assert_eq!(
            d["DDBStreamBatchInfo"]["startSequenceNumber"],
            format!("{:0>21}", 1)
        );
        assert_eq!(
            d["DDBStreamBatchInfo"]["endSequenceNumber"],
            format!("{:0>21}", 3)
        );
        assert!(d["responseContext"]["functionError"]
            .as_str()
            .unwrap()
            .contains("boom"));
    }

    #[test]
    fn filter_patterns_match_as_lambda_filters_do() {
        let p = json!({"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "EVENT#"}]}}}});
        let r = |name: &str, sk: &str| json!({"eventName": name, "dynamodb": {"Keys": {"sk": {"S": sk}}}});
        assert!(matches(&p, Some(&r("INSERT", "EVENT#dingtalk#1"))));
        assert!(!matches(&p, Some(&r("MODIFY", "EVENT#dingtalk#1"))));
        assert!(!matches(&p, Some(&r("INSERT", "#LINK"))));
        let b = json!({"dynamodb": {"NewImage": {"ready": {"BOOL": [true]}}}});
        assert!(matches(
            &b,
            Some(&json!({"dynamodb": {"NewImage": {"ready": {"BOOL": true}}}}))
        ));
        assert!(!matches(&b, Some(&json!({"dynamodb": {"NewImage": {}}}))));
        let e = json!({"a": [{"exists": false}]});
        assert!(matches(&e, Some(&json!({}))));
        assert!(!matches(&e, Some(&json!({"a": 1}))));
    }
}
