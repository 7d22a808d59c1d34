//! Client certificates on the HTTPS server.
//!
//! The HTTPS server asks every client for a certificate but does not require one (webhook calls
//! from kube-apiserver and the kubelet's probes come without). [`ClientCertAcceptor`] wraps the
//! server's TLS configuration (the one [`crate::server::tls::Reloader`] keeps current) with
//! [`OptionalClientAuth`] and hands the certificate chain the client presented to the handlers as a
//! request extension ([`PeerCertificates`]).
//!
//! The handshake checks that the client holds the private key of the certificate it presents (the
//! TLS 1.2 / 1.3 signature); whether the chain is trusted is decided per request by
//! [`super::authn::Authenticator`], so a certificate from an unknown CA gets a Kubernetes 401
//! rather than a TLS alert, and CA bundles can change without touching the TLS configuration.

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use axum::http::Request;
use axum_server::{
    accept::{Accept, DefaultAcceptor},
    tls_rustls::{RustlsAcceptor, RustlsConfig},
};
use futures::future::BoxFuture;
use rustls::{
    DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::error;

/// The certificate chain a client presented on its connection (leaf first), with the per-connection
/// cache of what the authenticator concluded from it.
#[derive(Debug)]
pub struct PeerCertificates {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// (authentication configuration generation, verdict) of the last check on this connection.
    pub(crate) verdict: Mutex<Option<(u64, super::authn::CertVerdict)>>,
}

impl PeerCertificates {
    /// A chain not checked yet.
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        PeerCertificates {
            chain,
            verdict: Mutex::new(None),
        }
    }

    pub(crate) fn cached(&self, generation: u64) -> Option<super::authn::CertVerdict> {
        let cached = self.verdict.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|(g, _)| *g == generation)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn store(&self, generation: u64, verdict: super::authn::CertVerdict) {
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some((generation, verdict));
    }
}

/// Requests client certificates without requiring them, and checks only that the client holds the
/// certificate's key; trust is decided later (see the module docs).
#[derive(Debug)]
pub struct OptionalClientAuth {
    provider: Arc<CryptoProvider>,
}

impl OptionalClientAuth {
    /// With the ring provider's signature algorithms.
    pub fn new() -> Self {
        OptionalClientAuth {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

impl Default for OptionalClientAuth {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCertVerifier for OptionalClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: clients send their certificate whatever its issuer, and an untrusted one is
        // answered with 401 by the authenticator.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The chain is verified per request against the current CA bundles (authn).
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `source` with client certificates requested: same certificate resolver, ALPN and versions.
pub fn with_client_auth(
    source: &ServerConfig,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::clone(&source.cert_resolver));
    config.alpn_protocols = source.alpn_protocols.clone();
    Ok(config)
}

/// The source configuration last seen and the configuration derived from it.
type Derived = Option<(Arc<ServerConfig>, RustlsConfig)>;

/// An axum-server acceptor: TLS with optional client certificates, the chain put into each request's
/// extensions as `Arc<PeerCertificates>`. Follows reloads of `source` (new handshakes only).
#[derive(Clone)]
pub struct ClientCertAcceptor {
    source: RustlsConfig,
    verifier: Arc<OptionalClientAuth>,
    derived: Arc<Mutex<Derived>>,
}

impl std::fmt::Debug for ClientCertAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertAcceptor").finish_non_exhaustive()
    }
}

impl ClientCertAcceptor {
    /// Wraps the server's TLS configuration.
    pub fn new(source: RustlsConfig) -> Self {
        ClientCertAcceptor {
            source,
            verifier: Arc::new(OptionalClientAuth::new()),
            derived: Arc::new(Mutex::new(None)),
        }
    }

    /// The configuration for the next handshake, derived again when the source was reloaded.
    fn current(&self) -> RustlsConfig {
        let source = self.source.get_inner();
        let mut derived = self.derived.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, config)) = derived.as_ref()
            && Arc::ptr_eq(seen, &source)
        {
            return config.clone();
        }
        let config =
            match with_client_auth(&source, Arc::clone(&self.verifier) as Arc<dyn ClientCertVerifier>) {
                Ok(config) => RustlsConfig::from_config(Arc::new(config)),
                Err(e) => {
                    // Cannot happen with the ring provider; serve without client certificates rather
                    // than not at all (every API request then gets 401).
                    error!(error = %e, "failed to request client certificates; serving without");
                    self.source.clone()
                }
            };
        *derived = Some((source, config.clone()));
        config
    }
}

impl<S> Accept<TcpStream, S> for ClientCertAcceptor
where
    S: Send + 'static,
{
    type Stream = TlsStream<TcpStream>;
    type Service = WithPeer<S>;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        // Without it, a response whose last TLS record is small waits for the client's delayed
        // ACK (40 ms on Linux): the tail of every list and review latency.
        if let Err(e) = stream.set_nodelay(true) {
            error!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        let acceptor: RustlsAcceptor<DefaultAcceptor> = RustlsAcceptor::new(self.current());
        let handshake = acceptor.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(|chain| {
                    Arc::new(PeerCertificates::new(
                        chain.iter().map(|c| c.clone().into_owned()).collect(),
                    ))
                });
            Ok((stream, WithPeer { inner: service, peer }))
        })
    }
}

/// A connection's service that adds the peer's certificates to every request.
#[derive(Clone, Debug)]
pub struct WithPeer<S> {
    inner: S,
    peer: Option<Arc<PeerCertificates>>,
}

impl<S, B> tower::Service<Request<B>> for WithPeer<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(Arc::clone(peer));
        }
        self.inner.call(request)
    }
}
