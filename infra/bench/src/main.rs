//! `bridge-bench`: speed of the shipped functions as ratios against baselines measured in the
//! same run (see the crate manifest). Prints a Markdown report; `--out FILE` also writes it.
//!
//! Build first, each package in its own command so `submit` gets exactly the features it ships
//! with (one command would unify the bench's dependency features into it):
//!   cargo build --release -p submit && cargo build --release -p bridge-bench
//! then run `<target>/release/bridge-bench`. Binaries are taken from the directory of this
//! executable.

mod cold;
mod error;
mod events;
mod handlers;
mod proxy;
mod runtime;
mod scenarios;
mod stack;
mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cold::{ColdRun, Expect, Target};
use error::BenchError;
use handlers::{trim, Apps, OpResult};
use proxy::CountingProxy;
use scenarios::{ListResult, Sizes, Tokens};
use stack::{Dynalite, Responder};
use stats::{median, median_u64, ms, percentile, ratio, ratio_d};

/// The function binaries of the bundle, for the size table.
const FUNCTIONS: [&str; 6] = [
    "submit", "callback", "query", "withdraw", "admin", "dispatch",
];
const BARE: &str = "bare-lambda";
/// Table sizes of the list benchmark (issue 13: up to 100,000; `--quick` stops at 10,000).
const LIST_SIZES: [usize; 3] = [1_000, 10_000, 100_000];

struct Options {
    runs: usize,
    warm: usize,
    sizes: Sizes,
    dynamo_port: u16,
    dynalite: PathBuf,
    out: Option<PathBuf>,
    skip_cold: bool,
    skip_handlers: bool,
    skip_events: bool,
    /// Table sizes of the list benchmark, smallest first (the ratios are to the first).
    list_sizes: Vec<usize>,
    /// Extra variables for the spawned functions (`--env K=V`), for what-if runs.
    extra_env: Vec<(String, String)>,
}

const USAGE: &str =
    "bridge-bench [--runs N (20)] [--warm N (200)] [--ops N (200)] [--creates N (100)] \
[--list-runs N (30)] [--quick (lists up to 10,000 tickets)] [--dynamo-port P (8805)] [--dynalite PATH] [--out FILE] \
[--skip-cold] [--skip-handlers] [--skip-events] [--env KEY=VALUE]...";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, BenchError> {
    let mut o = Options {
        runs: 20,
        warm: 200,
        sizes: Sizes {
            fast: 200,
            create: 100,
            list: 30,
        },
        dynamo_port: 8805,
        dynalite: stack::workspace_root().join("infra/dynalite/server.js"),
        out: None,
        skip_cold: false,
        skip_handlers: false,
        skip_events: false,
        list_sizes: LIST_SIZES.to_vec(),
        extra_env: Vec::new(),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| BenchError::Usage(format!("{arg} needs a value; {USAGE}")))
        };
        let number = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| BenchError::Usage(format!("{v} is not a positive number; {USAGE}")))
        };
        match arg.as_str() {
            "--runs" => o.runs = number(value()?)?,
            "--warm" => o.warm = number(value()?)?,
            "--ops" => o.sizes.fast = number(value()?)?,
            "--creates" => o.sizes.create = number(value()?)?,
            "--list-runs" => o.sizes.list = number(value()?)?,
            "--dynamo-port" => {
                o.dynamo_port = number(value()?)?
                    .try_into()
                    .map_err(|_| BenchError::Usage("--dynamo-port must be a port".into()))?
            }
            "--dynalite" => o.dynalite = value()?.into(),
            "--out" => o.out = Some(value()?.into()),
            "--env" => {
                let pair = value()?;
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    BenchError::Usage(format!("--env {pair}: expected KEY=VALUE"))
                })?;
                o.extra_env.push((k.to_string(), v.to_string()));
            }
            "--skip-cold" => o.skip_cold = true,
            "--skip-handlers" => o.skip_handlers = true,
            "--skip-events" => o.skip_events = true,
            "--quick" => {
                o.runs = 3;
                o.warm = 20;
                o.sizes = Sizes {
                    fast: 20,
                    create: 10,
                    list: 5,
                };
                o.list_sizes = LIST_SIZES[..2].to_vec();
            }
            "-h" | "--help" => return Err(BenchError::Usage(USAGE.into())),
            other => {
                return Err(BenchError::Usage(format!(
                    "unknown argument {other}; {USAGE}"
                )))
            }
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("bridge-bench: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<(), BenchError> {
    let options = parse_args(std::env::args().skip(1))?;
    let bin_dir = std::env::current_exe()
        .map_err(BenchError::io("locate bridge-bench"))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for name in [BARE, "submit"] {
        if !bin_dir.join(name).is_file() {
            return Err(BenchError::Usage(format!(
                "{} is missing: cargo build --release -p submit && cargo build --release -p bridge-bench",
                bin_dir.join(name).display()
            )));
        }
    }
    let local = stack::read_env_file(&stack::workspace_root().join("infra/local.env"))?;
    let tokens = Tokens {
        access: local
            .get("DATAPHIN_ACCESS_TOKEN")
            .cloned()
            .unwrap_or_default(),
        admin: local.get("ADMIN_TOKEN").cloned().unwrap_or_default(),
    };
    let started = Instant::now();
    let load_before = load_average();
    let dynalite = Dynalite::start(&options.dynalite, options.dynamo_port).await?;
    let proxy = CountingProxy::start(dynalite.addr).await?;
    let responder = Responder::start().await?;
    eprintln!("dynalite on {}", dynalite.endpoint());

    let mut report = String::new();
    let _ = writeln!(report, "# bridge-bench report\n");
    machine_section(&mut report, &bin_dir, &options);

    if !options.skip_cold {
        let cold = cold_starts(&options, &bin_dir, &local, &dynalite, &proxy).await?;
        cold_section(&mut report, &cold, &options);
    }
    if !options.skip_handlers {
        let (ops, lists) =
            handler_benches(&options, &local, &dynalite, &proxy, &responder, &tokens).await?;
        handler_section(&mut report, &ops);
        list_section(&mut report, &lists, &ops, &options.list_sizes);
    }
    if !options.skip_events {
        let events = events::event_path(&local, options.dynamo_port + 1, 100).await?;
        events_section(&mut report, &events);
    }
    let _ = writeln!(
        report,
        "Load average before / after: {load_before} / {}. Wall time {:.0} s.",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    print!("{report}");
    if let Some(path) = &options.out {
        std::fs::write(path, &report)
            .map_err(BenchError::io(format!("write {}", path.display())))?;
    }
    Ok(())
}

/// Results of the cold-start section.
struct ColdResults {
    bare: Vec<ColdRun>,
    submit: Vec<ColdRun>,
    /// DynamoDB requests of submit's init plus its cold request, and per warm request.
    init_calls: proxy::Counts,
    warm_calls: f64,
    counted_warm: usize,
}

async fn cold_starts(
    options: &Options,
    bin_dir: &Path,
    local: &std::collections::BTreeMap<String, String>,
    dynalite: &Dynalite,
    proxy: &CountingProxy,
) -> Result<ColdResults, BenchError> {
    let tickets = local
        .get("TICKETS_TABLE")
        .cloned()
        .unwrap_or_else(|| "bridge-tickets".into());
    let mappings = local
        .get("USER_MAPPINGS_TABLE")
        .cloned()
        .unwrap_or_else(|| "bridge-user-mappings".into());
    stack::prepare_tables(
        &stack::dynamo_client(&dynalite.endpoint()),
        &tickets,
        &mappings,
    )
    .await?;
    let log_dir = std::env::temp_dir().join(format!("bridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir)
        .map_err(BenchError::io(format!("create {}", log_dir.display())))?;
    // What Lambda sets, then the sample stack's configuration (BACKEND, tables, secrets, ...).
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_FUNCTION_NAME", "bridge-submit"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bridge-submit"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("AWS_SESSION_TOKEN", "local"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("TZ", ":UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(local.iter().map(|(k, v)| (k.clone(), v.clone())));
    let set = |env: &mut Vec<(String, String)>, key: &str, value: String| {
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value));
    };
    set(&mut env, "AWS_REGION", "us-east-1".into());
    set(&mut env, "AWS_ACCESS_KEY_ID", "local".into());
    set(&mut env, "AWS_SECRET_ACCESS_KEY", "local".into());
    set(&mut env, "AWS_ENDPOINT_URL_DYNAMODB", dynalite.endpoint());
    let rules = stack::workspace_root().join("infra/rules.sample.json");
    set(&mut env, "RULES_FILE", rules.display().to_string());
    for (k, v) in &options.extra_env {
        set(&mut env, k, v.clone());
    }
    let target = |name: &str, expect: Expect, env: Vec<(String, String)>| Target {
        name: name.to_string(),
        binary: bin_dir.join(name),
        env,
        access_token: local
            .get("DATAPHIN_ACCESS_TOKEN")
            .cloned()
            .unwrap_or_default(),
        expect,
    };
    let bare = target(BARE, Expect::EmptyObject, env.clone());
    let submit = target("submit", Expect::ConnectSuccess, env.clone());
    // One start of each, unmeasured: page cache and dynalite's first requests, as on any host
    // that has run the function before.
    cold::run_once(&bare, 1, &log_dir, 0).await?;
    cold::run_once(&submit, 1, &log_dir, 0).await?;
    let mut results = ColdResults {
        bare: Vec::new(),
        submit: Vec::new(),
        init_calls: proxy::Counts::new(),
        warm_calls: 0.0,
        counted_warm: 20,
    };
    // Interleaved, so drift in machine load hits both alike.
    for run in 1..=options.runs {
        eprintln!("cold start {run}/{}", options.runs);
        results
            .bare
            .push(cold::run_once(&bare, options.warm, &log_dir, run).await?);
        results
            .submit
            .push(cold::run_once(&submit, options.warm, &log_dir, run).await?);
    }
    // DynamoDB calls: once with the cold request only, once with warm requests after it.
    let mut counted_env = env.clone();
    set(
        &mut counted_env,
        "AWS_ENDPOINT_URL_DYNAMODB",
        proxy.endpoint(),
    );
    let counted = target("submit", Expect::ConnectSuccess, counted_env);
    let before = proxy.snapshot();
    cold::run_once(&counted, 0, &log_dir, 9000).await?;
    let middle = proxy.snapshot();
    results.init_calls = proxy::delta(&before, &middle);
    cold::run_once(&counted, results.counted_warm, &log_dir, 9001).await?;
    let with_warm = proxy::total(&proxy::delta(&middle, &proxy.snapshot()));
    results.warm_calls =
        (with_warm as f64 - proxy::total(&results.init_calls) as f64) / results.counted_warm as f64;
    let _ = std::fs::remove_dir_all(&log_dir);
    Ok(results)
}

async fn handler_benches(
    options: &Options,
    local: &std::collections::BTreeMap<String, String>,
    dynalite: &Dynalite,
    proxy: &CountingProxy,
    responder: &Responder,
    tokens: &Tokens,
) -> Result<(Vec<OpResult>, Vec<ListResult>), BenchError> {
    let client = stack::dynamo_client(&dynalite.endpoint());
    stack::prepare_tables(&client, "bench-tickets", "bench-mappings").await?;
    stack::prepare_tables(&client, "grow-tickets", "grow-mappings").await?;
    let env = handlers::app_env(local, "bench-tickets", "bench-mappings", responder);
    let apps = Apps::build(&env, &dynalite.endpoint(), proxy)?;
    eprintln!("handler cost");
    let (ops, templates) =
        scenarios::handler_ops(&apps, proxy, responder, tokens, &options.sizes).await?;
    let env = handlers::app_env(local, "grow-tickets", "grow-mappings", responder);
    let grow = Apps::build(&env, &dynalite.endpoint(), proxy)?;
    eprintln!("list as the table grows");
    let lists = scenarios::list_growth(
        &grow,
        proxy,
        responder,
        &templates,
        tokens,
        &options.list_sizes,
        options.sizes.list,
    )
    .await?;
    Ok((ops, lists))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn machine_section(report: &mut String, bin_dir: &Path, options: &Options) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = writeln!(
        report,
        "Machine: {cpu}, {cores} cores, Linux {}. Binaries: {}. Runs: {} cold starts x {} warm \
invocations per binary; handler ops {} (creates {}), list {} per shape and size.\n",
        kernel.trim(),
        bin_dir.display(),
        options.runs,
        options.warm,
        options.sizes.fast,
        options.sizes.create,
        options.sizes.list
    );
    let _ = writeln!(report, "## Binary sizes (release profile)\n");
    let _ = writeln!(
        report,
        "| binary | bytes | MiB | vs bare-lambda |\n|---|---:|---:|---:|"
    );
    let size = |name: &str| std::fs::metadata(bin_dir.join(name)).ok().map(|m| m.len());
    let bare = size(BARE).unwrap_or_default();
    for name in std::iter::once(BARE).chain(FUNCTIONS) {
        match size(name) {
            Some(bytes) => {
                let _ = writeln!(
                    report,
                    "| {name} | {bytes} | {:.2} | {} |",
                    bytes as f64 / 1_048_576.0,
                    ratio(bytes as f64, bare as f64)
                );
            }
            None => {
                let _ = writeln!(report, "| {name} | not built | | |");
            }
        }
    }
    let _ = writeln!(report);
}

fn cold_section(report: &mut String, r: &ColdResults, options: &Options) {
    let summary = |runs: &[ColdRun]| {
        let init: Vec<Duration> = runs.iter().map(|c| c.init).collect();
        let cold: Vec<Duration> = runs.iter().map(|c| c.cold).collect();
        let warm: Vec<Duration> = runs.iter().flat_map(|c| c.warm.iter().copied()).collect();
        let rss: Vec<u64> = runs.iter().map(|c| c.peak_rss_kib).collect();
        (
            median(&init),
            median(&cold),
            median(&warm),
            percentile(&warm, 99.0),
            median_u64(&rss),
        )
    };
    let (bi, bc, bw50, bw99, brss) = summary(&r.bare);
    let (si, sc, sw50, sw99, srss) = summary(&r.submit);
    let _ = writeln!(
        report,
        "## Cold start and warm round trip (Runtime API emulator)\n"
    );
    let _ = writeln!(
        report,
        "Request: `POST /dataphin/bpms/check/connect?accessToken=..&timestamp=..` (API Gateway HTTP API \
v2 event). Medians over {} cold starts; warm p50/p99 over {} x {} invocations.\n",
        options.runs,
        options.runs,
        options.warm
    );
    let _ = writeln!(
        report,
        "| metric | bare-lambda | submit | submit / bare |\n|---|---:|---:|---:|"
    );
    for (name, b, s) in [
        ("init: spawn -> first `next` poll (ms)", bi, si),
        ("cold request: spawn -> first response (ms)", bc, sc),
        ("warm round trip p50 (ms)", bw50, sw50),
        ("warm round trip p99 (ms)", bw99, sw99),
    ] {
        let _ = writeln!(
            report,
            "| {name} | {} | {} | {} |",
            ms(b),
            ms(s),
            ratio_d(s, b)
        );
    }
    let _ = writeln!(
        report,
        "| peak RSS, VmHWM (MiB) | {:.1} | {:.1} | {} |\n",
        brss as f64 / 1024.0,
        srss as f64 / 1024.0,
        ratio(srss as f64, brss as f64)
    );
    let _ = writeln!(
        report,
        "Cold request minus init (first invocation's handler): bare {} ms, submit {} ms.  \nDynamoDB requests by \
submit: init + cold request {} ({}); per warm connect {} (over {} invocations).\n",
        ms(bc.saturating_sub(bi)),
        ms(sc.saturating_sub(si)),
        proxy::total(&r.init_calls),
        r.init_calls.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        trim(r.warm_calls),
        r.counted_warm
    );
}

fn events_section(report: &mut String, r: &events::EventResults) {
    let unit = percentile(&r.get_item, 50.0);
    let _ = writeln!(
        report,
        "## The event path (issue 10)\n\nIn process, the project's dynalite with its stream log and \
the stream runner of `make dev`, the schedule never running; {} deciding BPM events each. \
Ratios to one raw GetItem p50 ({} ms) of the same run.\n\n| measure | p50 ms | p99 ms | p99 / GetItem | goal |\n|---|---:|---:|---:|---|",
        r.answers.len(),
        ms(unit)
    );
    for (name, samples, goal) in [
        ("answer while Dataphin hangs", &r.answers, "p99 <= 300 ms"),
        (
            "deciding event to its result at Dataphin",
            &r.to_dataphin,
            "p99 <= 2 s",
        ),
    ] {
        let p99 = percentile(samples, 99.0);
        let _ = writeln!(
            report,
            "| {name} | {} | {} | {} | {goal} |",
            ms(percentile(samples, 50.0)),
            ms(p99),
            ratio_d(p99, unit)
        );
    }
    let _ = writeln!(report);
}

fn handler_section(report: &mut String, ops: &[OpResult]) {
    let base = ops.first().map(scenarios::p50).unwrap_or_default();
    let _ = writeln!(
        report,
        "## Handler cost in process (real handlers, dynalite)\n"
    );
    let _ = writeln!(
        report,
        "Baseline: one DynamoDB GetItem round trip to the same dynalite (`Store::ping`). Backend calls \
go to a local 200 stand-in.\n"
    );
    let _ = writeln!(
        report,
        "| operation | n | p50 ms | p99 ms | p50 / GetItem | DynamoDB calls | by operation | BPM calls | Dataphin calls |\n|---|---:|---:|---:|---:|---:|---|---:|---:|"
    );
    for op in ops {
        let p50 = scenarios::p50(op);
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            op.name,
            op.samples.len(),
            ms(p50),
            ms(percentile(&op.samples, 99.0)),
            ratio_d(p50, base),
            trim(op.dynamo_total()),
            op.dynamo_breakdown(),
            trim(op.bpm),
            trim(op.dataphin)
        );
    }
    let _ = writeln!(report);
}

fn list_section(report: &mut String, lists: &[ListResult], ops: &[OpResult], sizes: &[usize]) {
    let base = ops.first().map(scenarios::p50).unwrap_or_default();
    let _ = writeln!(
        report,
        "## Ops list as the table grows (`GET /approvals`, limit 20)\n"
    );
    let _ = writeln!(
        report,
        "Tickets inserted through the store, alternating waiting and approved, same tenant and proposer. \
Bytes: what DynamoDB sent back for one request (through the counting proxy). Issue 13's goal: at 10x \
the tickets, bytes within 1.2x and p50 within 1.5x.\n"
    );
    let small = sizes.first().copied().unwrap_or_default();
    let _ = writeln!(
        report,
        "| shape | tickets | total | p50 ms | p99 ms | p50 / GetItem | p50 vs {small} tickets | DynamoDB bytes | bytes vs {small} tickets | DynamoDB calls | by operation |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for l in lists {
        let p50 = scenarios::p50(&l.op);
        let at_small = lists
            .iter()
            .find(|s| s.tickets == small && s.op.name == l.op.name);
        let time_ratio = at_small
            .map(|s| ratio_d(p50, scenarios::p50(&s.op)))
            .unwrap_or_default();
        let bytes_ratio = at_small
            .filter(|s| s.op.read_bytes > 0.0)
            .map(|s| format!("{:.2}x", l.op.read_bytes / s.op.read_bytes))
            .unwrap_or_default();
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            l.op.name,
            l.tickets,
            l.total,
            ms(p50),
            ms(percentile(&l.op.samples, 99.0)),
            ratio_d(p50, base),
            time_ratio,
            l.op.read_bytes,
            bytes_ratio,
            trim(l.op.dynamo_total()),
            l.op.dynamo_breakdown()
        );
    }
    let _ = writeln!(report);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Options, BenchError> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_match_the_brief_and_flags_override_them() {
        let o = args(&[]).unwrap();
        assert_eq!((o.runs, o.warm, o.dynamo_port), (20, 200, 8805));
        let o = args(&[
            "--runs",
            "5",
            "--warm",
            "50",
            "--dynamo-port",
            "9000",
            "--skip-cold",
        ])
        .unwrap();
        assert_eq!(
            (o.runs, o.warm, o.dynamo_port, o.skip_cold),
            (5, 50, 9000, true)
        );
        let o = args(&["--env", "RUST_LOG=warn", "--env", "A=b=c"]).unwrap();
        assert_eq!(
            o.extra_env,
            [
                ("RUST_LOG".to_string(), "warn".to_string()),
                ("A".into(), "b=c".into())
            ]
        );
    }

    #[test]
    fn bad_arguments_are_refused_with_usage() {
        for bad in [
            &["--runs", "0"][..],
            &["--runs"],
            &["--nope"],
            &["--dynamo-port", "70000"],
            &["--env", "NOEQUALS"],
        ] {
            let err = args(bad).err().expect("refused").to_string();
            assert!(err.starts_with("usage:"), "{err}");
        }
    }
}
