//! Development certificates: a self-signed CA and a serving certificate signed by it.
//!
//! One generator ([`generate`]) serves two callers:
//!
//! - the `certs` subcommand ([`run`]), which writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key` for the
//!   in-cluster Service names and copies of the manifests with `caBundle` filled in, for clusters
//!   without cert-manager (see `certs/README.md`);
//! - `serve` without `--tls-cert/--tls-key` ([`ensure_dev_certs`]), which creates the same pair once
//!   in its state directory and reuses it while it stays valid.
//!
//! Keys are ECDSA P-256 (accepted by the Kubernetes API server for webhooks and APIServices) and
//! key files are written with mode 0600.

#![warn(missing_docs)]

use std::{
    fs,
    io::Write,
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Component, Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use tracing::info;

use crate::manifests;

pub use crate::manifests::{DEFAULT_NAMESPACE, DEFAULT_SERVICE_NAME};

/// Default validity of generated certificates, in days.
pub const DEFAULT_DAYS: u32 = 365;
/// File name of the CA certificate (PEM).
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key (PEM, PKCS#8); written by `certs` only.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the serving certificate (PEM).
pub const CERT_FILE: &str = "tls.crt";
/// File name of the serving certificate's private key (PEM, PKCS#8).
pub const KEY_FILE: &str = "tls.key";
/// Subdirectory of `--out` that receives the manifests with `caBundle` filled in.
pub const MANIFESTS_DIR: &str = "manifests";

/// `serve` regenerates its development certificates when they expire sooner than this.
pub const DEV_CERT_MIN_REMAINING: Duration = Duration::from_secs(30 * 24 * 60 * 60);

const CA_COMMON_NAME: &str = "kafka-backup-operator development CA";
/// Clock skew tolerated between this machine and the clients checking the certificates.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
const SECONDS_PER_DAY: u64 = 24 * 60 * 60;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen refused the parameters or failed to sign.
    #[error("failed to generate {what}: {source}")]
    Generate {
        /// Which certificate or key.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A service name or namespace is not a DNS-1123 label.
    #[error(
        "failed to use {what} {value:?}: not a DNS-1123 label (lower-case letters, digits, '-', at most 63)"
    )]
    InvalidName {
        /// `service name` or `namespace`.
        what: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A directory could not be created.
    #[error("failed to create directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("failed to write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("failed to read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate could not be parsed.
    #[error("failed to parse certificate {what}: {reason}")]
    ParseCertificate {
        /// Which certificate (usually a file name).
        what: String,
        /// The cause.
        reason: String,
    },
    /// The manifests could not be rendered.
    #[error("failed to render manifests: {0}")]
    Render(#[source] manifests::Error),
    /// A rendered manifest has a path that would leave the output directory.
    #[error("failed to place manifest {}: path must be relative without '..'", path.display())]
    ManifestPath {
        /// The offending path.
        path: PathBuf,
    },
}

/// Arguments of the `certs` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Directory receiving ca.crt, ca.key, tls.crt, tls.key and manifests/ (created if missing;
    /// existing files are replaced).
    #[arg(long, env = "KBO_CERTS_OUT", value_name = "DIR", default_value = "certs/dev")]
    pub out: PathBuf,
    /// Name of the operator's Service; the certificate is valid for its in-cluster DNS names.
    #[arg(long, env = "KBO_SERVICE_NAME", value_name = "NAME", default_value = DEFAULT_SERVICE_NAME)]
    pub service_name: String,
    /// Namespace of the operator's Service.
    #[arg(long, env = "KBO_NAMESPACE", value_name = "NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Validity of the CA and the serving certificate, in days.
    #[arg(
        long,
        env = "KBO_CERTS_DAYS",
        value_name = "DAYS",
        default_value_t = DEFAULT_DAYS,
        value_parser = clap::value_parser!(u32).range(1..=36_500),
    )]
    pub days: u32,
}

/// A generated CA and serving certificate, all PEM.
#[derive(Clone)]
pub struct Pki {
    /// CA certificate; the `caBundle` of webhooks and APIServices, `curl --cacert`.
    pub ca_cert_pem: String,
    /// CA private key (PKCS#8).
    pub ca_key_pem: String,
    /// Serving certificate, signed by the CA.
    pub cert_pem: String,
    /// Serving certificate's private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The names a serving certificate for the operator must cover: the Service's in-cluster DNS names
/// (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`) and the loopback names
/// (`localhost`, `127.0.0.1`, `::1`).
pub fn serving_names(service_name: &str, namespace: &str) -> Result<Vec<String>, Error> {
    check_label("service name", service_name)?;
    check_label("namespace", namespace)?;
    Ok(vec![
        service_name.to_owned(),
        format!("{service_name}.{namespace}"),
        format!("{service_name}.{namespace}.svc"),
        format!("{service_name}.{namespace}.svc.cluster.local"),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
}

fn check_label(what: &'static str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

/// Generates a self-signed CA and a serving certificate for `names` (DNS names or IP addresses)
/// signed by it, both valid from one hour ago for `days` days.
pub fn generate(names: &[String], days: u32) -> Result<Pki, Error> {
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - BACKDATE;
    let not_after = now + Duration::from_secs(u64::from(days) * SECONDS_PER_DAY);

    let ca_key = KeyPair::generate().map_err(|source| Error::Generate {
        what: "CA key",
        source,
    })?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.remove(DnType::CommonName);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|source| Error::Generate {
        what: "CA certificate",
        source,
    })?;

    let key = KeyPair::generate().map_err(|source| Error::Generate {
        what: "serving key",
        source,
    })?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(|source| Error::Generate {
        what: "serving certificate",
        source,
    })?;
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let issuer = Issuer::new(ca_params, &ca_key);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| Error::Generate {
            what: "serving certificate",
            source,
        })?;

    Ok(Pki {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What [`inspect`] reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// End of validity (notAfter), Unix seconds.
    pub not_after: i64,
    /// DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// IP addresses of the subjectAltName extension.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether basicConstraints marks it as a CA.
    pub is_ca: bool,
    /// DER of its SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
}

impl CertificateInfo {
    /// Whether every name (DNS name or IP address) is in the subjectAltName extension.
    pub fn covers(&self, names: &[String]) -> bool {
        names.iter().all(|name| match name.parse::<IpAddr>() {
            Ok(ip) => self.ip_addresses.contains(&ip),
            Err(_) => self.dns_names.iter().any(|dns| dns.eq_ignore_ascii_case(name)),
        })
    }
}

/// Reads expiry, names and key of a DER certificate; `what` names it in errors.
pub fn inspect(der: &[u8], what: &str) -> Result<CertificateInfo, Error> {
    let parse_error = |reason: String| Error::ParseCertificate {
        what: what.to_owned(),
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| parse_error(e.to_string()))?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| parse_error(e.to_string()))?
    {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(octets));
                    } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(octets));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertificateInfo {
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        ip_addresses,
        is_ca: cert.is_ca(),
        public_key: cert.public_key().raw.to_vec(),
    })
}

/// Parses the first certificate of a PEM file's contents; `what` names it in errors.
pub fn first_certificate(pem: &[u8], what: &str) -> Result<CertificateDer<'static>, Error> {
    match CertificateDer::pem_slice_iter(pem).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(e)) => Err(Error::ParseCertificate {
            what: what.to_owned(),
            reason: e.to_string(),
        }),
        None => Err(Error::ParseCertificate {
            what: what.to_owned(),
            reason: "no CERTIFICATE block".to_owned(),
        }),
    }
}

/// Paths of the files written by [`write_pki`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    /// `ca.crt`.
    pub ca_cert: PathBuf,
    /// `ca.key`, if it was written.
    pub ca_key: Option<PathBuf>,
    /// `tls.crt`.
    pub cert: PathBuf,
    /// `tls.key`.
    pub key: PathBuf,
}

impl PkiPaths {
    /// The paths of the files in `dir` (with `ca.key` when `with_ca_key`).
    pub fn in_dir(dir: &Path, with_ca_key: bool) -> Self {
        Self {
            ca_cert: dir.join(CA_CERT_FILE),
            ca_key: with_ca_key.then(|| dir.join(CA_KEY_FILE)),
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }
}

/// Writes `pki` into `dir` (created with mode 0700 if missing): certificates 0644, keys 0600.
/// The CA key is written only when `with_ca_key`.
pub fn write_pki(dir: &Path, pki: &Pki, with_ca_key: bool) -> Result<PkiPaths, Error> {
    create_dir(dir, Some(0o700))?;
    let paths = PkiPaths::in_dir(dir, with_ca_key);
    // Key before certificate: a watcher that sees the new certificate then also sees its key.
    if let Some(ca_key) = &paths.ca_key {
        write_file(ca_key, pki.ca_key_pem.as_bytes(), 0o600)?;
    }
    write_file(&paths.ca_cert, pki.ca_cert_pem.as_bytes(), 0o644)?;
    write_file(&paths.key, pki.key_pem.as_bytes(), 0o600)?;
    write_file(&paths.cert, pki.cert_pem.as_bytes(), 0o644)?;
    Ok(paths)
}

fn create_dir(dir: &Path, mode: Option<u32>) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    if let Some(mode) = mode {
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    }
    builder.create(dir).map_err(|source| Error::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `contents` to a temporary file beside `path` and renames it over `path`, so readers see
/// either the old or the new contents.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let write_error = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_error)?;
    // The mode of open() applies only to new files (and is subject to the umask).
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(write_error)?;
    file.write_all(contents).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_error)
}

/// Development certificates of `serve`, as found or created by [`ensure_dev_certs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// Where the files are (no CA key: it is not kept).
    pub paths: PkiPaths,
    /// Whether existing files were reused rather than generated.
    pub reused: bool,
}

/// Makes sure `dir` holds a CA and a serving certificate for `names`: reuses them if both are valid
/// for longer than [`DEV_CERT_MIN_REMAINING`], cover `names` and match their key; otherwise
/// generates a new pair (valid [`DEFAULT_DAYS`]). The CA key is not kept, so a renewal makes a new CA.
pub fn ensure_dev_certs(dir: &Path, names: &[String]) -> Result<DevCerts, Error> {
    let paths = PkiPaths::in_dir(dir, false);
    match reusable(&paths, names) {
        Ok(()) => {
            info!(
                cert = %paths.cert.display(),
                ca = %paths.ca_cert.display(),
                "reusing development TLS certificate; trust its CA with `curl --cacert {}`",
                paths.ca_cert.display()
            );
            return Ok(DevCerts { paths, reused: true });
        }
        Err(reason) if paths.cert.exists() => {
            info!(dir = %dir.display(), %reason, "regenerating development TLS certificate");
        }
        Err(_) => {}
    }
    let pki = generate(names, DEFAULT_DAYS)?;
    let paths = write_pki(dir, &pki, false)?;
    info!(
        cert = %paths.cert.display(),
        key = %paths.key.display(),
        ca = %paths.ca_cert.display(),
        names = ?names,
        "generated development TLS certificate signed by a new self-signed CA; trust it with `curl --cacert {}`",
        paths.ca_cert.display()
    );
    Ok(DevCerts { paths, reused: false })
}

/// Why the files at `paths` cannot be reused, if they cannot.
fn reusable(paths: &PkiPaths, names: &[String]) -> Result<(), String> {
    let deadline = SystemTime::now() + DEV_CERT_MIN_REMAINING;
    let deadline = deadline
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let read = |path: &Path| fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let parse = |path: &Path| -> Result<CertificateInfo, String> {
        let what = path.display().to_string();
        let der = first_certificate(&read(path)?, &what).map_err(|e| e.to_string())?;
        inspect(&der, &what).map_err(|e| e.to_string())
    };
    let ca = parse(&paths.ca_cert)?;
    let leaf = parse(&paths.cert)?;
    let key_pem = String::from_utf8(read(&paths.key)?).map_err(|e| e.to_string())?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: {e}", paths.key.display()))?;
    let expires_too_soon =
        |info: &CertificateInfo| u64::try_from(info.not_after).map_or(true, |t| t <= deadline);
    if expires_too_soon(&ca) || expires_too_soon(&leaf) {
        return Err("expires within 30 days".to_owned());
    }
    if !ca.is_ca {
        return Err(format!("{} is not a CA certificate", paths.ca_cert.display()));
    }
    if !leaf.covers(names) {
        return Err("does not cover all names".to_owned());
    }
    if key.subject_public_key_info() != leaf.public_key {
        return Err(format!(
            "{} does not match {}",
            paths.key.display(),
            paths.cert.display()
        ));
    }
    Ok(())
}

/// Runs the `certs` subcommand: writes the CA and serving certificate into `--out` and the
/// manifests with `caBundle` filled in into `<out>/manifests/`.
pub fn run(args: &CertsArgs) -> Result<(), Error> {
    let names = serving_names(&args.service_name, &args.namespace)?;
    let pki = generate(&names, args.days)?;
    let paths = write_pki(&args.out, &pki, true)?;

    let mut files = manifests::render(&manifests::Options {
        ca_bundle: Some(pki.ca_cert_pem.clone().into_bytes()),
        service_name: args.service_name.clone(),
        namespace: args.namespace.clone(),
    })
    .map_err(Error::Render)?;
    // The chart's copies would be applied twice by `kubectl apply -R`.
    files.retain(|f| !f.path.starts_with(manifests::CHART_FILES_DIR));
    let manifests_dir = args.out.join(MANIFESTS_DIR);
    for file in &files {
        if file.path.as_os_str().is_empty()
            || !file.path.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(Error::ManifestPath {
                path: file.path.clone(),
            });
        }
        let path = manifests_dir.join(&file.path);
        if let Some(parent) = path.parent() {
            create_dir(parent, None)?;
        }
        write_file(&path, file.contents.as_bytes(), 0o644)?;
    }

    info!(
        out = %args.out.display(),
        names = ?names,
        days = args.days,
        manifests = files.len(),
        "wrote development CA, serving certificate and manifests"
    );
    println!("CA certificate:      {}", paths.ca_cert.display());
    if let Some(ca_key) = &paths.ca_key {
        println!("CA key:              {}", ca_key.display());
    }
    println!("serving certificate: {}", paths.cert.display());
    println!("serving key:         {}", paths.key.display());
    println!("manifests ({}):     {}", files.len(), manifests_dir.display());
    println!("valid for:           {}", names.join(", "));
    println!(
        "create the Secret with: kubectl -n {} create secret tls {}-tls --cert={} --key={}",
        args.namespace,
        args.service_name,
        paths.cert.display(),
        paths.key.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        serving_names("svc", "ns").unwrap()
    }

    #[test]
    fn serving_names_cover_the_service_and_loopback() {
        assert_eq!(
            names(),
            [
                "svc",
                "svc.ns",
                "svc.ns.svc",
                "svc.ns.svc.cluster.local",
                "localhost",
                "127.0.0.1",
                "::1"
            ]
        );
        assert!(matches!(
            serving_names("Svc", "ns"),
            Err(Error::InvalidName {
                what: "service name",
                ..
            })
        ));
        assert!(matches!(
            serving_names("svc", "-ns"),
            Err(Error::InvalidName {
                what: "namespace",
                ..
            })
        ));
    }

    #[test]
    fn generated_leaf_has_the_names_and_the_ca_is_a_ca() {
        let pki = generate(&names(), 10).unwrap();
        let leaf = inspect(
            &first_certificate(pki.cert_pem.as_bytes(), "leaf").unwrap(),
            "leaf",
        )
        .unwrap();
        let ca = inspect(
            &first_certificate(pki.ca_cert_pem.as_bytes(), "ca").unwrap(),
            "ca",
        )
        .unwrap();
        assert!(leaf.covers(&names()));
        assert!(!leaf.is_ca);
        assert!(ca.is_ca);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((leaf.not_after - now - 10 * 86_400).abs() < 60);
    }

    #[test]
    fn dev_certs_are_reused_until_they_no_longer_fit() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let first = ensure_dev_certs(&tls, &names()).unwrap();
        assert!(!first.reused);
        let mode = fs::metadata(&first.paths.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let ca = fs::read(&first.paths.ca_cert).unwrap();

        let second = ensure_dev_certs(&tls, &names()).unwrap();
        assert!(second.reused);
        assert_eq!(fs::read(&second.paths.ca_cert).unwrap(), ca);

        // Another name: regenerated.
        let mut more = names();
        more.push("other.example".to_owned());
        let third = ensure_dev_certs(&tls, &more).unwrap();
        assert!(!third.reused);
        assert_ne!(fs::read(&third.paths.ca_cert).unwrap(), ca);

        // Expiring soon: regenerated.
        let short = generate(&more, 20).unwrap();
        write_pki(&tls, &short, false).unwrap();
        assert!(!ensure_dev_certs(&tls, &more).unwrap().reused);

        // Key of another pair: regenerated.
        let other = generate(&more, 100).unwrap();
        fs::write(tls.join(KEY_FILE), other.key_pem).unwrap();
        assert!(!ensure_dev_certs(&tls, &more).unwrap().reused);
        assert!(ensure_dev_certs(&tls, &more).unwrap().reused);
    }
}
