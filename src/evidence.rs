//! Evidence reports of backup validations: the report document, its SHA-256 digest and its
//! detached signature (Ed25519 or ECDSA P-256 with SHA-256, through ring), and their
//! verification (`verify-evidence`).
//!
//! # Stored form
//!
//! Below the evidence storage prefix, per report:
//!
//! ```text
//! evidence-reports/<backupId>/<reportId>.json       the report bytes (JSON)
//! evidence-reports/<backupId>/<reportId>.json.sig   the envelope (JSON), below
//! ```
//!
//! The envelope holds `reportSha256` (hex SHA-256 of the report bytes exactly as stored), and when
//! signing is enabled `algorithm` (`Ed25519` | `EcdsaP256`), `publicKey` (SPKI PEM) and
//! `signature` (base64; ECDSA in ASN.1 DER) over the report bytes. The report itself carries the
//! SHA-256 of the backup set's manifest. A report never holds a credential: only identities,
//! locations, counts and check results.
//!
//! Verification recomputes the digest and checks the signature with the envelope's public key, or
//! with a key the verifier trusts (`--public-key`), which is what proves who signed.

use base64::Engine;
use ring::{
    digest,
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::FromDer;

use crate::api::v1beta1::SigningAlgorithm;

/// Directory of evidence reports below a storage prefix.
pub const EVIDENCE_DIR: &str = "evidence-reports";

/// The storage key of a report; its envelope is the same key plus [`ENVELOPE_SUFFIX`].
pub fn report_key(backup_id: &str, report_id: &str) -> String {
    format!("{EVIDENCE_DIR}/{backup_id}/{report_id}.json")
}

/// Suffix of an envelope's key after its report's key.
pub const ENVELOPE_SUFFIX: &str = ".sig";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo, before the 32 key bytes.
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why signing or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A PEM input is unreadable.
    #[error("{what} is not a PEM {expected}: {message}")]
    Pem {
        /// Which input.
        what: String,
        /// The PEM label expected.
        expected: &'static str,
        /// Why.
        message: String,
    },
    /// The private key does not fit the algorithm.
    #[error("{what} is not a PKCS#8 {algorithm:?} private key: {message}")]
    Key {
        /// Which input.
        what: String,
        /// The algorithm asked for.
        algorithm: SigningAlgorithm,
        /// ring's reason.
        message: String,
    },
    /// The public key given beside the private key belongs to another key.
    #[error("{what} does not belong to the private key")]
    KeyMismatch {
        /// Which input.
        what: String,
    },
    /// The envelope is unreadable.
    #[error("{what} is not an evidence envelope: {message}")]
    Envelope {
        /// Which input.
        what: String,
        /// Why.
        message: String,
    },
    /// The report bytes do not have the recorded digest.
    #[error(
        "digest mismatch: the report's SHA-256 is {actual}, the envelope records {expected}: the report was changed"
    )]
    Digest {
        /// Recorded.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The signature does not verify.
    #[error(
        "the {algorithm:?} signature does not verify with {key}: the report or the signature was changed, or another key signed it"
    )]
    Signature {
        /// Algorithm.
        algorithm: SigningAlgorithm,
        /// Which key was used.
        key: String,
    },
    /// The envelope has no signature but one is required.
    #[error("the report is not signed")]
    Unsigned,
    /// Signing failed inside ring.
    #[error("signing failed")]
    Sign,
}

/// The detached digest and signature of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Hex SHA-256 of the report bytes.
    pub report_sha256: String,
    /// Signature algorithm, when signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<SigningAlgorithm>,
    /// SPKI PEM of the signing key, when signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Base64 signature over the report bytes, when signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A signing key loaded from PEM.
pub struct Signer {
    algorithm: SigningAlgorithm,
    key: SignerKey,
    public_key_pem: String,
}

enum SignerKey {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
}

impl Signer {
    /// Loads a PKCS#8 PEM private key; `public_key_pem`, when given, must be its public key.
    pub fn from_pem(
        algorithm: SigningAlgorithm,
        private_key_pem: &[u8],
        public_key_pem: Option<&[u8]>,
        what: &str,
    ) -> Result<Self, EvidenceError> {
        let der = pem_contents(private_key_pem, "PRIVATE KEY", what)?;
        let key_error = |e: ring::error::KeyRejected| EvidenceError::Key {
            what: what.into(),
            algorithm,
            message: e.to_string(),
        };
        let (key, spki) = match algorithm {
            SigningAlgorithm::Ed25519 => {
                // OpenSSL writes PKCS#8 v1 keys, which carry no public key to check.
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(key_error)?;
                let spki = [ED25519_SPKI_PREFIX, pair.public_key().as_ref()].concat();
                (SignerKey::Ed25519(pair), spki)
            }
            SigningAlgorithm::EcdsaP256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &der,
                    &SystemRandom::new(),
                )
                .map_err(key_error)?;
                let spki = [P256_SPKI_PREFIX, pair.public_key().as_ref()].concat();
                (SignerKey::EcdsaP256(pair), spki)
            }
        };
        if let Some(given) = public_key_pem {
            let given_der = pem_contents(given, "PUBLIC KEY", &format!("{what} (public key)"))?;
            if given_der != spki {
                return Err(EvidenceError::KeyMismatch {
                    what: format!("{what} (public key)"),
                });
            }
        }
        Ok(Signer {
            algorithm,
            key,
            public_key_pem: pem_encode("PUBLIC KEY", &spki),
        })
    }

    /// The algorithm of the key.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The SPKI PEM public key of the signer.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The envelope of `report`: its digest and signature.
    pub fn envelope(&self, report: &[u8]) -> Result<Envelope, EvidenceError> {
        let signature = match &self.key {
            SignerKey::Ed25519(pair) => pair.sign(report).as_ref().to_vec(),
            SignerKey::EcdsaP256(pair) => pair
                .sign(&SystemRandom::new(), report)
                .map_err(|_| EvidenceError::Sign)?
                .as_ref()
                .to_vec(),
        };
        Ok(Envelope {
            report_sha256: sha256_hex(report),
            algorithm: Some(self.algorithm),
            public_key: Some(self.public_key_pem.clone()),
            signature: Some(base64::engine::general_purpose::STANDARD.encode(signature)),
        })
    }
}

/// The envelope of an unsigned report: its digest only.
pub fn unsigned_envelope(report: &[u8]) -> Envelope {
    Envelope {
        report_sha256: sha256_hex(report),
        algorithm: None,
        public_key: None,
        signature: None,
    }
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The report's SHA-256.
    pub sha256: String,
    /// The signature's algorithm, when signed.
    pub algorithm: Option<SigningAlgorithm>,
    /// Whether the key was the trusted one given by the verifier (not only the envelope's).
    pub trusted_key: bool,
}

/// Verifies a report against its envelope: the digest always; the signature when the envelope
/// has one (required with `require_signature`), with `trusted_public_key` when given, otherwise
/// the envelope's own key.
pub fn verify(
    report: &[u8],
    envelope_bytes: &[u8],
    trusted_public_key: Option<&[u8]>,
    require_signature: bool,
) -> Result<Verified, EvidenceError> {
    let envelope: Envelope = serde_json::from_slice(envelope_bytes).map_err(|e| EvidenceError::Envelope {
        what: "the envelope".into(),
        message: e.to_string(),
    })?;
    let actual = sha256_hex(report);
    if actual != envelope.report_sha256 {
        return Err(EvidenceError::Digest {
            expected: envelope.report_sha256,
            actual,
        });
    }
    let (Some(algorithm), Some(signature_b64)) = (envelope.algorithm, &envelope.signature) else {
        if require_signature || trusted_public_key.is_some() {
            return Err(EvidenceError::Unsigned);
        }
        return Ok(Verified {
            sha256: actual,
            algorithm: None,
            trusted_key: false,
        });
    };
    let (key_pem, key_name) = match (trusted_public_key, &envelope.public_key) {
        (Some(trusted), _) => (trusted.to_vec(), "the trusted public key"),
        (None, Some(own)) => (own.as_bytes().to_vec(), "the envelope's public key"),
        (None, None) => {
            return Err(EvidenceError::Envelope {
                what: "the envelope".into(),
                message: "it has a signature but no publicKey; pass the signer's public key".into(),
            });
        }
    };
    let spki_der = pem_contents(&key_pem, "PUBLIC KEY", key_name)?;
    let (_, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki_der).map_err(|e| EvidenceError::Pem {
            what: key_name.into(),
            expected: "PUBLIC KEY",
            message: e.to_string(),
        })?;
    let signature_bytes = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .map_err(|e| EvidenceError::Envelope {
            what: "the envelope's signature".into(),
            message: e.to_string(),
        })?;
    let algorithm_impl: &dyn signature::VerificationAlgorithm = match algorithm {
        SigningAlgorithm::Ed25519 => &signature::ED25519,
        SigningAlgorithm::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
    };
    signature::UnparsedPublicKey::new(algorithm_impl, spki.subject_public_key.data.as_ref())
        .verify(report, &signature_bytes)
        .map_err(|_| EvidenceError::Signature {
            algorithm,
            key: key_name.into(),
        })?;
    Ok(Verified {
        sha256: actual,
        algorithm: Some(algorithm),
        trusted_key: trusted_public_key.is_some(),
    })
}

fn pem_contents(pem: &[u8], expected: &'static str, what: &str) -> Result<Vec<u8>, EvidenceError> {
    let error = |message: String| EvidenceError::Pem {
        what: what.into(),
        expected,
        message,
    };
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| error(e.to_string()))?;
        if block.label == expected {
            return Ok(block.contents);
        }
    }
    Err(error(format!("no -----BEGIN {expected}----- block")))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A new PKCS#8 PEM private key and its SPKI PEM public key (for tests and `run -f` setups).
pub fn generate_key_pair(algorithm: SigningAlgorithm) -> Result<(String, String), EvidenceError> {
    let rng = SystemRandom::new();
    let pkcs8 = match algorithm {
        SigningAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        SigningAlgorithm::EcdsaP256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        }
    }
    .map_err(|_| EvidenceError::Sign)?;
    let private = pem_encode("PRIVATE KEY", pkcs8.as_ref());
    let signer = Signer::from_pem(algorithm, private.as_bytes(), None, "generated key")?;
    Ok((private, signer.public_key_pem))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signed_reports_verify_and_any_change_is_detected() {
        for algorithm in [SigningAlgorithm::Ed25519, SigningAlgorithm::EcdsaP256] {
            let (private, public) = generate_key_pair(algorithm).unwrap();
            let signer =
                Signer::from_pem(algorithm, private.as_bytes(), Some(public.as_bytes()), "k").unwrap();
            let report = br#"{"result":"Passed"}"#;
            let envelope = serde_json::to_vec(&signer.envelope(report).unwrap()).unwrap();
            let ok = verify(report, &envelope, None, true).unwrap();
            assert_eq!(ok.algorithm, Some(algorithm));
            assert!(
                verify(report, &envelope, Some(public.as_bytes()), true)
                    .unwrap()
                    .trusted_key
            );

            let tampered = br#"{"result":"Failed"}"#;
            let e = verify(tampered, &envelope, None, true).unwrap_err();
            assert!(matches!(e, EvidenceError::Digest { .. }), "{e}");

            // A forged envelope (digest recomputed, signature kept) fails on the signature.
            let mut forged: Envelope = serde_json::from_slice(&envelope).unwrap();
            forged.report_sha256 = sha256_hex(tampered);
            let forged = serde_json::to_vec(&forged).unwrap();
            let e = verify(tampered, &forged, None, true).unwrap_err();
            assert!(matches!(e, EvidenceError::Signature { .. }), "{e}");

            // Another key's public key is not trusted.
            let (_, other_public) = generate_key_pair(algorithm).unwrap();
            let e = verify(report, &envelope, Some(other_public.as_bytes()), true).unwrap_err();
            assert!(matches!(e, EvidenceError::Signature { .. }), "{e}");
        }
    }

    #[test]
    fn keys_are_checked_against_the_algorithm_and_each_other() {
        let (ed_private, _) = generate_key_pair(SigningAlgorithm::Ed25519).unwrap();
        let (_, ec_public) = generate_key_pair(SigningAlgorithm::EcdsaP256).unwrap();
        let e = Signer::from_pem(
            SigningAlgorithm::EcdsaP256,
            ed_private.as_bytes(),
            None,
            "Secret s key k",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with("Secret s key k is not a PKCS#8 EcdsaP256 private key"),
            "{e}"
        );
        let e = Signer::from_pem(
            SigningAlgorithm::Ed25519,
            ed_private.as_bytes(),
            Some(ec_public.as_bytes()),
            "s",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("does not belong to the private key"), "{e}");
        let e = Signer::from_pem(SigningAlgorithm::Ed25519, b"garbage", None, "s")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is not a PEM PRIVATE KEY"), "{e}");
    }

    #[test]
    fn unsigned_reports_verify_by_digest_only_unless_a_signature_is_required() {
        let report = b"{}";
        let envelope = serde_json::to_vec(&unsigned_envelope(report)).unwrap();
        assert_eq!(verify(report, &envelope, None, false).unwrap().algorithm, None);
        assert!(matches!(
            verify(report, &envelope, None, true),
            Err(EvidenceError::Unsigned)
        ));
    }

    #[test]
    fn openssl_ed25519_keys_load() {
        // `openssl genpkey -algorithm ed25519` writes PKCS#8 v1 without the public key.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
        let signer = Signer::from_pem(SigningAlgorithm::Ed25519, pem.as_bytes(), None, "k").unwrap();
        let envelope = serde_json::to_vec(&signer.envelope(b"x").unwrap()).unwrap();
        verify(b"x", &envelope, None, true).unwrap();
    }
}
