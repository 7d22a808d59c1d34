//! TLS of the HTTPS server: the rustls configuration built from PEM files, and its reload when the
//! files change.
//!
//! The configuration allows TLS 1.2 and 1.3 only, with the ring provider, and offers `h2` and
//! `http/1.1` by ALPN. [`Reloader`] reads the certificate and key files every reload interval and
//! compares a SHA-256 of their contents with what it saw last (not the mtime: Kubernetes updates
//! Secret volumes by swapping a symlink, which leaves the files' own mtimes unchanged). New contents
//! are parsed and, if they form a valid pair, installed with [`RustlsConfig::reload_from_config`],
//! which affects new handshakes only: established connections keep their session. A bad new pair
//! keeps the previous one in use, logs an error naming the file and counts a failure; so that a
//! writer replacing the two files one after the other is not reported, contents that do not load
//! are reported only if they are still the same at the next check.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum_server::tls_rustls::RustlsConfig;
use ring::digest;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    certs,
    metrics::{Metrics, Outcome},
};

/// ALPN protocols offered by the HTTPS server, in order of preference.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A certificate expiring sooner than this is logged as a warning when loaded.
const EXPIRY_WARNING: i64 = 7 * 24 * 60 * 60;

/// Errors of this module; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("failed to read TLS file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no valid PEM certificate chain.
    #[error("failed to load TLS certificate {}: {reason}", path.display())]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The key file holds no valid PEM private key.
    #[error("failed to load TLS private key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// rustls refused the pair (for instance: the key does not belong to the certificate).
    #[error("failed to use TLS certificate {} with key {}: {source}", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

/// Installs ring as the process-wide rustls crypto provider; a provider already installed is kept.
pub fn install_crypto_provider() {
    // Err means a provider is already installed (by an earlier call): nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The PEM files of the serving certificate (chain, leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// SHA-256 of the certificate file's and the key file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32], [u8; 32]);

impl Fingerprint {
    fn of(cert: &[u8], key: &[u8]) -> Self {
        let sha = |data: &[u8]| {
            let mut out = [0u8; 32];
            out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
            out
        };
        Self(sha(cert), sha(key))
    }
}

/// A loaded certificate and key.
#[derive(Debug, Clone)]
pub struct Material {
    /// The rustls configuration serving them.
    pub config: Arc<ServerConfig>,
    /// What the files contained.
    pub fingerprint: Fingerprint,
    /// DER of the leaf certificate.
    pub leaf: CertificateDer<'static>,
    /// Leaf's notAfter, Unix seconds.
    pub not_after: i64,
}

/// Builds the server configuration: ring provider, TLS 1.2 and 1.3, no client authentication,
/// ALPN `h2` and `http/1.1`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Reads and parses the files.
pub async fn load(files: &TlsFiles) -> Result<Material, Error> {
    let (cert, key) = read(files).await?;
    parse(files, &cert, &key)
}

async fn read(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let read = |path: &Path| {
        let path = path.to_owned();
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| Error::Read { path, source })
        }
    };
    let cert = read(&files.cert).await?;
    let key = read(&files.key).await?;
    Ok((cert, key))
}

fn parse(files: &TlsFiles, cert_pem: &[u8], key_pem: &[u8]) -> Result<Material, Error> {
    let cert_error = |reason: String| Error::Certificate {
        path: files.cert.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    let leaf = chain
        .first()
        .cloned()
        .ok_or_else(|| cert_error("no CERTIFICATE block found".to_owned()))?;
    let info =
        certs::inspect(&leaf, &files.cert.display().to_string()).map_err(|e| cert_error(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Key {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let config = server_config(chain, key).map_err(|source| Error::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })?;
    Ok(Material {
        config: Arc::new(config),
        fingerprint: Fingerprint::of(cert_pem, key_pem),
        leaf,
        not_after: info.not_after,
    })
}

/// Logs the loaded certificate and records its expiry.
pub fn record_loaded(files: &TlsFiles, material: &Material, metrics: &Metrics) {
    metrics.tls.set_certificate_expiry(material.not_after);
    let expires = chrono::DateTime::from_timestamp(material.not_after, 0)
        .map_or_else(|| material.not_after.to_string(), |t| t.to_rfc3339());
    let remaining = material.not_after - chrono::Utc::now().timestamp();
    if remaining < EXPIRY_WARNING {
        warn!(cert = %files.cert.display(), %expires, "TLS certificate expires within 7 days or has expired");
    } else {
        info!(cert = %files.cert.display(), key = %files.key.display(), %expires, "loaded TLS certificate");
    }
}

/// What a check found in the files.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Observed {
    Files(Fingerprint),
    Unreadable(String),
}

/// Reloads the server configuration when the certificate or key file changes.
#[derive(Debug)]
pub struct Reloader {
    files: TlsFiles,
    config: RustlsConfig,
    metrics: Arc<Metrics>,
    interval: Duration,
    /// Last contents applied or reported as bad.
    settled: Observed,
    /// New contents that failed to load once; reported if still the same next time.
    pending: Option<Observed>,
}

impl Reloader {
    /// A reloader of `config` from `files`, whose contents `current` is in use.
    pub fn new(
        files: TlsFiles,
        config: RustlsConfig,
        metrics: Arc<Metrics>,
        current: Fingerprint,
        interval: Duration,
    ) -> Self {
        Self {
            files,
            config,
            metrics,
            interval,
            settled: Observed::Files(current),
            pending: None,
        }
    }

    /// Checks the files every interval until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the files were just loaded
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => self.check().await,
            }
        }
    }

    /// Reads the files once and reloads if they changed.
    pub async fn check(&mut self) {
        let loaded = match read(&self.files).await {
            Ok((cert, key)) => {
                let seen = Observed::Files(Fingerprint::of(&cert, &key));
                if seen == self.settled {
                    self.pending = None;
                    return;
                }
                (seen, parse(&self.files, &cert, &key))
            }
            Err(e) => {
                let seen = Observed::Unreadable(e.to_string());
                if seen == self.settled {
                    return;
                }
                (seen, Err(e))
            }
        };
        match loaded {
            (seen, Ok(material)) => {
                self.config.reload_from_config(Arc::clone(&material.config));
                self.metrics.tls.reload(Outcome::Success);
                record_loaded(&self.files, &material, &self.metrics);
                info!(cert = %self.files.cert.display(), "TLS certificate files changed; new connections use the new certificate");
                self.settled = seen;
                self.pending = None;
            }
            (seen, Err(e)) if self.pending.as_ref() == Some(&seen) => {
                error!(error = %e, "keeping the previous TLS certificate");
                self.metrics.tls.reload(Outcome::Failure);
                self.settled = seen;
                self.pending = None;
            }
            (seen, Err(e)) => {
                debug!(error = %e, "changed TLS files do not load yet; checking again");
                self.pending = Some(seen);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, pki: &certs::Pki) -> TlsFiles {
        std::fs::write(dir.join("tls.crt"), &pki.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &pki.key_pem).unwrap();
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    fn counts(metrics: &Metrics) -> (u64, u64) {
        let text = metrics.encode().unwrap();
        let count = |outcome: &str| {
            let prefix = format!("kafka_backup_operator_tls_reloads_total{{outcome=\"{outcome}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap()
                .parse()
                .unwrap()
        };
        (count("success"), count("failure"))
    }

    #[tokio::test]
    async fn reloads_good_pairs_and_reports_bad_ones_once_they_persist() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        let first = certs::generate(&names, 30).unwrap();
        let files = write_pair(dir.path(), &first);
        let material = load(&files).await.unwrap();
        let config = RustlsConfig::from_config(Arc::clone(&material.config));
        let metrics = Arc::new(Metrics::new());
        let mut reloader = Reloader::new(
            files.clone(),
            config.clone(),
            Arc::clone(&metrics),
            material.fingerprint,
            Duration::from_secs(1),
        );

        reloader.check().await;
        assert!(
            Arc::ptr_eq(&config.get_inner(), &material.config),
            "unchanged files: no reload"
        );
        assert_eq!(counts(&metrics), (0, 0));

        let second = certs::generate(&names, 30).unwrap();
        write_pair(dir.path(), &second);
        reloader.check().await;
        assert!(!Arc::ptr_eq(&config.get_inner(), &material.config));
        assert_eq!(counts(&metrics), (1, 0));
        let in_use = config.get_inner();

        // A certificate whose key has not been written yet: not reported at once, and reported
        // once when it persists.
        std::fs::write(&files.cert, &first.cert_pem).unwrap();
        reloader.check().await;
        assert_eq!(counts(&metrics), (1, 0));
        reloader.check().await;
        assert_eq!(counts(&metrics), (1, 1));
        reloader.check().await;
        assert_eq!(counts(&metrics), (1, 1));
        assert!(
            Arc::ptr_eq(&config.get_inner(), &in_use),
            "bad pair keeps the previous one"
        );

        std::fs::write(&files.cert, "garbage").unwrap();
        reloader.check().await;
        reloader.check().await;
        assert_eq!(counts(&metrics), (1, 2));
        assert!(Arc::ptr_eq(&config.get_inner(), &in_use));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pki = certs::generate(&["localhost".to_owned()], 30).unwrap();
        let files = write_pair(dir.path(), &pki);
        let err = parse(&files, b"garbage", pki.key_pem.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to load TLS certificate ") && err.contains("tls.crt"),
            "{err}"
        );
        let err = parse(&files, pki.cert_pem.as_bytes(), b"garbage")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to load TLS private key ") && err.contains("tls.key"),
            "{err}"
        );
        let other = certs::generate(&["localhost".to_owned()], 30).unwrap();
        let err = parse(&files, pki.cert_pem.as_bytes(), other.key_pem.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to use TLS certificate ") && err.contains("tls.key"),
            "{err}"
        );
    }
}
