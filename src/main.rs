//! The `kafka-backup-operator` binary: one process serving the webhooks, the aggregated API and
//! the reconciler (`serve`), plus the tools around it.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use kafka_backup_operator::{certs, evidence, import, manifests, run, server};

/// Kubernetes-native backup, restore and consumer-offset management for Apache Kafka.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the CRDs, webhook configurations and APIService generated from the Rust types.
    Manifests(ManifestsArgs),
    /// Serve the webhooks and the aggregated API over HTTPS, and /livez, /readyz, /metrics on the
    /// admin port, until SIGTERM or SIGINT.
    Serve(Box<server::ServeArgs>),
    /// Make a development CA and serving certificate for the operator's Service, and manifests
    /// with their caBundle filled in.
    Certs(certs::CertsArgs),
    /// Execute resources (any kind, either API version) without Kubernetes, judged by the same
    /// rules as the admission webhook; print each resulting status as YAML. Exit code 0 when
    /// every one completed. Secrets come from --secrets-dir DIR/<secret>/<key>, ConfigMaps from
    /// the local ConfigMap store --configmaps-dir DIR/<configmap>/<key> (ConfigMap documents
    /// given with -f are stored there first).
    Run(run::RunArgs),
    /// Execute one shard of a resource's run split over workers (`run -f --workers N`, or an
    /// Indexed Job's pod with JOB_COMPLETION_INDEX): copies the shard's partitions and stores
    /// its result for the coordinator to merge; print the shard's status as YAML. Exit code 0
    /// when the shard completed. Same options as `run`.
    Worker(run::WorkerArgs),
    /// Check an evidence report of a KafkaBackupValidation: its SHA-256 digest and, when signed,
    /// its signature. Exit code 0 only when both hold.
    VerifyEvidence(VerifyEvidenceArgs),
    /// List the backup sets and offset snapshots of the prior art (OSO kafka-backup 0.x) below a
    /// storage prefix, with size, record time range and integrity (every segment read). Reads
    /// only; exit code 0 when every set passed its integrity check.
    Import(import::ImportArgs),
}

#[derive(clap::Args, Debug)]
struct VerifyEvidenceArgs {
    /// The report file (`evidence-reports/<backupId>/<reportId>.json`).
    report: PathBuf,
    /// Its envelope with digest and signature (default: the report's path + `.sig`).
    #[arg(long)]
    envelope: Option<PathBuf>,
    /// The signer's public key (SPKI PEM) to trust; without it the key in the envelope is used,
    /// which proves the report is intact but not who signed it.
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// Fail when the report is not signed.
    #[arg(long)]
    require_signature: bool,
}

fn verify_evidence_command(args: &VerifyEvidenceArgs) -> Result<(), String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let envelope_path = args.envelope.clone().unwrap_or_else(|| {
        let mut path = args.report.clone().into_os_string();
        path.push(evidence::ENVELOPE_SUFFIX);
        PathBuf::from(path)
    });
    let report = read(&args.report)?;
    let envelope = read(&envelope_path)?;
    let public_key = args.public_key.as_deref().map(read).transpose()?;
    let verified = evidence::verify(&report, &envelope, public_key.as_deref(), args.require_signature)
        .map_err(|e| format!("{}: {e}", args.report.display()))?;
    let signed = match (verified.algorithm, verified.trusted_key) {
        (None, _) => "not signed".to_owned(),
        (Some(algorithm), true) => format!("{algorithm:?} signature valid for the trusted public key"),
        (Some(algorithm), false) => {
            format!(
                "{algorithm:?} signature valid for the public key in the envelope (pass --public-key to pin the signer)"
            )
        }
    };
    println!(
        "{}: sha256 {} matches; {signed}",
        args.report.display(),
        verified.sha256
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
struct ManifestsArgs {
    /// Directory holding crds/, webhooks/ and apiservice/.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Compare with the files in --out instead of writing; fail when they differ.
    #[arg(long)]
    check: bool,
}

fn manifests_command(args: &ManifestsArgs) -> Result<(), manifests::Error> {
    let files = manifests::render(&manifests::Options::default())?;
    if args.check {
        manifests::check(&args.out, &files)?;
        println!("{} manifests up to date in {}", files.len(), args.out.display());
    } else {
        manifests::write(&args.out, &files)?;
        println!("wrote {} manifests to {}", files.len(), args.out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Manifests(args) => manifests_command(args).map_err(|e| e.to_string()),
        Command::Serve(args) => {
            server::init_logging();
            server::serve_blocking(args.as_ref().clone()).map_err(|e| e.to_string())
        }
        Command::Certs(args) => {
            server::init_logging();
            certs::run(args).map_err(|e| e.to_string())
        }
        Command::VerifyEvidence(args) => verify_evidence_command(args),
        Command::Import(args) => {
            server::init_logging();
            match import::run_blocking(args) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Run(args) => {
            server::init_logging();
            match run::run_blocking(args) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Worker(args) => {
            server::init_logging();
            match run::worker_blocking(args) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
