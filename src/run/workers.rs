//! `run -f --workers N`: a run split over N `worker` processes of this program, one per shard
//! ([`crate::ops::shard`]); the coordinator is the `run -f` process.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::{BufRead, Read},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

use serde_json::Value;

use crate::{
    api::v1beta1,
    ops::{
        self, Context,
        shard::{ShardIndex, ShardRunner},
    },
};

/// Worker processes a run is split over (`--workers`).
pub(super) struct Workers {
    count: usize,
    runner: Box<ShardRunner>,
}

impl Workers {
    /// `count` `worker` processes of this program, each started with `args` (the resource and
    /// its options) and its shard's `--shard-index I --shards N`: its stderr is forwarded line by
    /// line, prefixed with its shard, and the records every worker reports are summed up as the
    /// run's progress.
    pub(super) fn processes(count: usize, args: Vec<OsString>) -> Self {
        let done: Arc<Mutex<BTreeMap<usize, u64>>> = Arc::default();
        Workers {
            count,
            runner: Box::new(move |shard, ctx| {
                let (args, done) = (args.clone(), done.clone());
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || run_worker_process(&args, shard, &ctx, &done))
                        .await
                        .map_err(|e| format!("waiting for the worker failed: {e}"))?
                })
            }),
        }
    }
}

/// Runs a KafkaRestore: in this process, or split over `workers`.
pub(super) async fn restore(
    restore: &v1beta1::KafkaRestore,
    ctx: &Context,
    workers: Option<&Workers>,
) -> v1beta1::KafkaRestoreStatus {
    match workers {
        None => ops::restore::execute(restore, ctx).await,
        Some(w) => ops::restore::execute_split(restore, ctx, w.count, w.runner.as_ref()).await,
    }
}

/// Runs a KafkaBackup once: in this process, or split over `workers`.
pub(super) async fn backup(
    backup: &v1beta1::KafkaBackup,
    ctx: &Context,
    workers: Option<&Workers>,
) -> v1beta1::KafkaBackupStatus {
    match workers {
        None => ops::backup::execute(backup, ctx).await,
        Some(w) => ops::backup::execute_split(backup, ctx, w.count, w.runner.as_ref()).await,
    }
}

/// How long a worker has to stop after its run was cancelled before it is killed (it stops
/// after a final checkpoint; a killed one continues where its last checkpoint was).
const WORKER_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts the worker of `shard` and waits for it; `Err` says how it ended when not well.
fn run_worker_process(
    args: &[OsString],
    shard: ShardIndex,
    ctx: &Context,
    done: &Mutex<BTreeMap<usize, u64>>,
) -> Result<(), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program to start a worker: {e}"))?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .arg("--shard-index")
        .arg(shard.index.to_string())
        .arg("--shards")
        .arg(shard.count.to_string());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the worker: {e}"))?;
    let pid = child.id();
    eprintln!("{shard}: worker process {pid}");
    let prefix = format!("[shard {}/{}]", shard.index, shard.count);
    let stderr = child.stderr.take();
    let forward = std::thread::scope(|scope| {
        let forwarding = scope.spawn(|| {
            let Some(stderr) = stderr else { return };
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{prefix} {line}");
                if let Some(records) = reported_records(&line)
                    && let Ok(mut done) = done.lock()
                {
                    done.insert(shard.index, records);
                    let total: u64 = done.values().sum();
                    ctx.report(total, None, format!("records, {} workers", shard.count));
                }
            }
        });
        let stdout = child.stdout.take();
        let collecting = scope.spawn(|| {
            let mut printed = String::new();
            if let Some(mut stdout) = stdout {
                let _ = stdout.read_to_string(&mut printed);
            }
            printed
        });
        let ended = wait_for_worker(&mut child, ctx);
        let _ = forwarding.join();
        let stdout = collecting.join().unwrap_or_default();
        ended.map(|status| (status, stdout))
    });
    let (status, stdout) = forward.map_err(|e| format!("waiting for worker process {pid}: {e}"))?;
    let printed: Value = serde_saphyr::from_str(&stdout).unwrap_or_default();
    let field = |name: &str| {
        printed
            .pointer(&format!("/status/{name}"))
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    eprintln!("{shard}: {}: {}", field("phase"), field("message"));
    if status.success() {
        Ok(())
    } else if printed.is_null() {
        Err(format!("process {pid} ended with {status}"))
    } else {
        Err(format!(
            "process {pid} ended with {status}, phase {}: {}",
            field("phase"),
            field("message")
        ))
    }
}

/// Waits for a worker; once the run is cancelled it is interrupted (SIGINT), and killed when
/// it has not stopped within [`WORKER_GRACE`].
fn wait_for_worker(
    child: &mut std::process::Child,
    ctx: &Context,
) -> std::io::Result<std::process::ExitStatus> {
    let mut interrupted: Option<std::time::Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if ctx.cancel.is_cancelled() {
            match interrupted {
                None => {
                    if let Some(pid) = i32::try_from(child.id())
                        .ok()
                        .and_then(rustix::process::Pid::from_raw)
                    {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
                    }
                    interrupted = Some(std::time::Instant::now());
                }
                Some(at) if at.elapsed() >= WORKER_GRACE => {
                    let _ = child.kill();
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The records a worker's progress line (`progress: <records> ...`) reports.
fn reported_records(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("progress: ")?;
    rest.split(['/', ' ']).next()?.parse().ok()
}
