//! The client side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses it: no
//! channel binding (`n,,`), no authorization identity, the password used as UTF-8 without SASLprep
//! (as Kafka's own clients do). The primitives come from `ring`, already the TLS crypto provider.

use std::num::NonZeroU32;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

/// The two SCRAM variants Kafka supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }
}

/// The server broke the exchange (malformed message, foreign nonce, wrong signature, or an
/// `e=` error).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScramError(pub String);

/// A SCRAM exchange in progress: made with the client-first message, then fed the server's
/// messages in turn.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_nonce: String,
    first_bare: String,
}

/// What [`ScramClient::final_message`] leaves to check against the server-final message.
pub struct ScramVerifier {
    expected: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> Result<Self, ScramError> {
        let mut raw = [0u8; 24];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| ScramError("no random bytes for the SCRAM nonce".into()))?;
        Ok(Self::with_nonce(hash, username, password, &B64.encode(raw)))
    }

    /// Starts an exchange with the given nonce (tests use the RFC's).
    fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        let name = username.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.to_owned(),
            client_nonce: nonce.to_owned(),
            first_bare: format!("n={name},r={nonce}"),
        }
    }

    /// The client-first message.
    pub fn first_message(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// The client-final message answering `server_first`, and what the server must prove.
    pub fn final_message(&self, server_first: &str) -> Result<(String, ScramVerifier), ScramError> {
        let attribute = |name: char| {
            server_first
                .split(',')
                .find_map(|field| field.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .ok_or_else(|| ScramError(format!("server-first message has no {name}= attribute")))
        };
        if let Ok(error) = attribute('e') {
            return Err(ScramError(format!("server refused: {error}")));
        }
        let nonce = attribute('r')?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError("server nonce does not extend the client nonce".into()));
        }
        let salt = B64
            .decode(attribute('s')?)
            .map_err(|e| ScramError(format!("salt is not base64: {e}")))?;
        let iterations = attribute('i')?
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| ScramError("iteration count is not a positive integer".into()))?;

        let mut salted = vec![0u8; self.hash.len()];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            iterations,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted_key = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), server_key.as_ref()),
            auth_message.as_bytes(),
        );
        Ok((
            format!("{without_proof},p={}", B64.encode(proof)),
            ScramVerifier {
                expected: server_signature.as_ref().to_vec(),
            },
        ))
    }
}

impl ScramVerifier {
    /// Checks the server-final message: the server knew the password too.
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        if let Some(error) = server_final.strip_prefix("e=") {
            return Err(ScramError(format!("server refused: {error}")));
        }
        let signature = server_final
            .split(',')
            .find_map(|f| f.strip_prefix("v="))
            .ok_or_else(|| ScramError("server-final message has no v= attribute".into()))?;
        match B64.decode(signature) {
            Ok(signature) if signature == self.expected => Ok(()),
            _ => Err(ScramError(
                "the server's signature is wrong: it does not know this user's credentials".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 7677 section 3.
    #[test]
    fn sha256_matches_the_rfc_7677_example() {
        let client = ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.first_message(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (client_final, verifier) = client.final_message(server_first).unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        verifier
            .verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(verifier.verify("v=AAAA").is_err());
        assert!(
            verifier
                .verify("e=invalid-proof")
                .unwrap_err()
                .0
                .contains("invalid-proof")
        );
    }

    #[test]
    fn sha512_proof_has_the_digest_length_and_names_are_escaped() {
        let client = ScramClient::with_nonce(ScramHash::Sha512, "a=b,c", "pw", "abc");
        assert_eq!(client.first_message(), "n,,n=a=3Db=2Cc,r=abc");
        let (client_final, _) = client.final_message("r=abcdef,s=c2FsdA==,i=4096").unwrap();
        let proof = client_final.rsplit_once(",p=").unwrap().1;
        assert_eq!(B64.decode(proof).unwrap().len(), 64);
    }

    #[test]
    fn a_server_that_does_not_extend_the_nonce_is_refused() {
        let client = ScramClient::with_nonce(ScramHash::Sha256, "u", "p", "abc");
        for bad in [
            "r=xyz,s=c2FsdA==,i=4096",
            "r=abc,s=c2FsdA==,i=4096",
            "r=abcd,s=c2FsdA==,i=0",
            "r=abcd,i=4096",
            "e=unknown-user",
        ] {
            assert!(client.final_message(bad).is_err(), "{bad}");
        }
    }
}
