//! Access to the embedded default from a laptop: without Kubernetes and without `--client-ca-file`,
//! `serve` makes a development client CA and an admin client certificate (CN
//! `kafka-backup-operator-admin`, O `system:masters`) in `<state-dir>/apiserver/`, and a kubeconfig
//! using them, so that
//!
//! ```sh
//! kubectl --kubeconfig ~/.local/state/kafka-backup-operator/apiserver/kubeconfig get offsetsnapshots
//! ```
//!
//! works at once. The CA and certificate are reused while they exist; keys are written with mode
//! 0600. Other users get certificates from the same CA (`client-ca.crt` / `client-ca.key`) with
//! their name as CN and their groups as O, and a policy file saying what they may do.

use std::{
    fs,
    io::Write,
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Common name of the development admin certificate.
pub const ADMIN_USER: &str = "kafka-backup-operator-admin";
/// File name of the kubeconfig.
pub const KUBECONFIG_FILE: &str = "kubeconfig";
/// File name of the client CA certificate.
pub const CLIENT_CA_FILE: &str = "client-ca.crt";

/// Why the development access could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DevAccessError {
    /// A file could not be written or read.
    #[error("failed to prepare development API access in {}: {source}", dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate could not be made.
    #[error("failed to make the development {what}: {source}")]
    Generate {
        /// Which.
        what: &'static str,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
}

/// The files made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevAccess {
    /// The client CA bundle to trust.
    pub client_ca: PathBuf,
    /// The kubeconfig for the admin.
    pub kubeconfig: PathBuf,
}

fn write(path: &Path, contents: &str, private: bool) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// Common name of the development client CA.
const CA_NAME: &str = "kafka-backup-operator development client CA";

/// The parameters of the development client CA (its name and constraints; what signing needs).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// A client certificate for `user` in `groups` signed by the development client CA whose key is
/// `ca_key_pem`, valid for `days`: (certificate PEM, key PEM).
pub fn client_certificate(
    ca_key_pem: &str,
    user: &str,
    groups: &[&str],
    days: u32,
) -> Result<(String, String), DevAccessError> {
    let generate = |what| move |source| DevAccessError::Generate { what, source };
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(generate("client CA key"))?;
    let issuer = Issuer::new(ca_params(), &ca_key);
    let key = KeyPair::generate().map_err(generate("client key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, user);
    for group in groups {
        params.distinguished_name.push(DnType::OrganizationName, *group);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate("client certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new client CA: (certificate PEM, key PEM).
pub fn client_ca(days: u32) -> Result<(String, String), DevAccessError> {
    let generate = |what| move |source| DevAccessError::Generate { what, source };
    let key = KeyPair::generate().map_err(generate("client CA key"))?;
    let mut params = ca_params();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params.self_signed(&key).map_err(generate("client CA"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The server URL of `listen` for a local kubeconfig (an unspecified address becomes loopback).
pub fn local_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("https://{ip}:{}", listen.port())
}

/// A kubeconfig for `server` with a client certificate (paths are written as JSON strings, which
/// YAML reads as they are).
pub fn kubeconfig(server: &str, ca: Option<&Path>, cert: &Path, key: &Path, namespace: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let ca_line = ca.map_or_else(String::new, |ca| {
        format!("    certificate-authority: {}\n", q(&ca.display().to_string()))
    });
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kafka-backup-operator\n  cluster:\n    server: {}\n{ca_line}users:\n- name: {ADMIN_USER}\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: kafka-backup-operator\n  context:\n    cluster: kafka-backup-operator\n    user: {ADMIN_USER}\n    namespace: {}\ncurrent-context: kafka-backup-operator\n",
        q(server),
        q(&cert.display().to_string()),
        q(&key.display().to_string()),
        q(namespace),
    )
}

/// Makes (or reuses) the client CA and admin certificate in `dir` and writes the kubeconfig for
/// `server`, trusting `serving_ca` when known.
pub fn ensure(
    dir: &Path,
    server: &str,
    serving_ca: Option<&Path>,
    namespace: &str,
) -> Result<DevAccess, DevAccessError> {
    let io = |source| DevAccessError::Io {
        dir: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let ca_cert = dir.join(CLIENT_CA_FILE);
    let ca_key = dir.join("client-ca.key");
    let admin_cert = dir.join("admin.crt");
    let admin_key = dir.join("admin.key");
    let ca_key_pem = match (fs::read_to_string(&ca_cert), fs::read_to_string(&ca_key)) {
        (Ok(_), Ok(key)) => key,
        _ => {
            let (cert, key) = client_ca(3650)?;
            write(&ca_key, &key, true).map_err(io)?;
            write(&ca_cert, &cert, false).map_err(io)?;
            // A new CA invalidates the old admin certificate.
            let _ = fs::remove_file(&admin_cert);
            key
        }
    };
    if !(admin_cert.is_file() && admin_key.is_file()) {
        let (cert, key) = client_certificate(&ca_key_pem, ADMIN_USER, &["system:masters"], 3650)?;
        write(&admin_key, &key, true).map_err(io)?;
        write(&admin_cert, &cert, false).map_err(io)?;
    }
    let kubeconfig_path = dir.join(KUBECONFIG_FILE);
    write(
        &kubeconfig_path,
        &kubeconfig(server, serving_ca, &admin_cert, &admin_key, namespace),
        true,
    )
    .map_err(io)?;
    Ok(DevAccess {
        client_ca: ca_cert,
        kubeconfig: kubeconfig_path,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn makes_reusable_files_and_a_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), "https://127.0.0.1:8443", None, "default").unwrap();
        let ca = fs::read_to_string(&first.client_ca).unwrap();
        let again = ensure(dir.path(), "https://127.0.0.1:9443", None, "default").unwrap();
        assert_eq!(fs::read_to_string(&again.client_ca).unwrap(), ca, "CA reused");
        let config = fs::read_to_string(&again.kubeconfig).unwrap();
        assert!(config.contains("server: \"https://127.0.0.1:9443\""), "{config}");
        let meta = fs::metadata(dir.path().join("admin.key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        let admin = fs::read(dir.path().join("admin.crt")).unwrap();
        let der =
            <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::from_pem_slice(&admin)
                .unwrap();
        let (cn, groups) = super::super::authn::subject_of(&der).unwrap();
        assert_eq!(
            (cn.as_str(), groups),
            (ADMIN_USER, vec!["system:masters".to_owned()])
        );
        assert_eq!(
            local_url("0.0.0.0:8443".parse().unwrap()),
            "https://127.0.0.1:8443"
        );
    }
}
