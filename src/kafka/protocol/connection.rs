//! One connection to one broker: TCP, optionally TLS, authenticated with SASL when configured,
//! with the API versions negotiated once. Requests are multiplexed by correlation id: any number
//! of tasks send over the same connection and a reader task hands each response to its caller,
//! so concurrency costs tasks, not sockets.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicI32, Ordering},
    },
    time::Duration,
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
        SaslHandshakeRequest,
    },
    protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf},
    net::TcpStream,
    sync::{mpsc, oneshot},
};

use super::{
    ProtocolError, Sasl, Settings,
    scram::{ScramClient, ScramHash},
};
use crate::api::v1beta1::SaslMechanism;

/// A request this client sends, with its API key and response. (The crate's own `Request`
/// trait exists only with its broker side compiled in, which this client does not need.)
pub trait Request: Message + Encodable + HeaderVersion {
    /// The API key.
    const KEY: i16;
    /// The response message.
    type Response: Decodable + HeaderVersion;
}

macro_rules! requests {
    ($($key:ident: $request:ident => $response:ident,)*) => {$(
        impl Request for kafka_protocol::messages::$request {
            const KEY: i16 = ApiKey::$key as i16;
            type Response = kafka_protocol::messages::$response;
        }
    )*};
}

requests! {
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse,
    SaslHandshake: SaslHandshakeRequest => SaslHandshakeResponse,
    SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticateResponse,
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
    DescribeGroups: DescribeGroupsRequest => DescribeGroupsResponse,
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
    OffsetCommit: OffsetCommitRequest => OffsetCommitResponse,
    OffsetDelete: OffsetDeleteRequest => OffsetDeleteResponse,
    DeleteGroups: DeleteGroupsRequest => DeleteGroupsResponse,
    Metadata: MetadataRequest => MetadataResponse,
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
    InitProducerId: InitProducerIdRequest => InitProducerIdResponse,
    Produce: ProduceRequest => ProduceResponse,
}

/// How long one request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long opening a connection (TCP, TLS, SASL) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Larger frames are refused rather than allocated: group-offset responses are far smaller, so a
/// bigger length means a peer that does not speak Kafka (an HTTP or TLS port, say).
const MAX_FRAME: usize = 64 * 1024 * 1024;

const CLIENT_ID: &str = "kafka-backup-operator";

/// Kafka's UNSUPPORTED_VERSION, answered to an ApiVersions version the broker does not know.
const UNSUPPORTED_VERSION: i16 = 35;

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Waiters = HashMap<i32, oneshot::Sender<Bytes>>;

/// A request frame in the pieces it is written in.
type Frame = Vec<Bytes>;

/// A request on the wire whose response [`Connection::reply`] waits for.
pub struct Queued {
    correlation: i32,
    receiver: oneshot::Receiver<Bytes>,
}

/// Callers waiting for a response, or why no response will come any more.
struct Pending {
    waiters: Waiters,
    closed: Option<String>,
}

/// An open, authenticated connection to one broker.
pub struct Connection {
    broker: String,
    /// Frames to the writer task. Whole frames are queued, so a caller that gives up half way
    /// cannot leave half a request on the wire.
    writer: mpsc::UnboundedSender<Frame>,
    pending: Arc<Mutex<Pending>>,
    next_correlation: AtomicI32,
    /// The broker's (min, max) version per API key, from ApiVersions.
    versions: OnceLock<HashMap<i16, (i16, i16)>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The printable name of an API key.
pub fn api_name(key: i16) -> String {
    ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| format!("API {key}"))
}

impl Connection {
    /// Opens a connection to `broker` (host:port), negotiates versions and authenticates.
    pub async fn open(broker: &str, settings: &Settings) -> Result<Connection, ProtocolError> {
        let connect_error = |message: String| ProtocolError::Connect {
            broker: broker.to_owned(),
            message,
        };
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let stream = dial(broker, settings).await?;
            let connection = Connection::start(broker, stream);
            connection.negotiate().await?;
            if let Some(sasl) = &settings.sasl {
                connection.authenticate(sasl).await?;
            }
            Ok::<_, ProtocolError>(connection)
        })
        .await;
        opened.map_err(|_| connect_error(format!("no connection within {}s", CONNECT_TIMEOUT.as_secs())))?
    }

    fn start(broker: &str, stream: Box<dyn Io>) -> Connection {
        let (read, write) = tokio::io::split(stream);
        let pending = Arc::new(Mutex::new(Pending {
            waiters: HashMap::new(),
            closed: None,
        }));
        let reader = tokio::spawn(read_responses(read, pending.clone()));
        let (writer, frames) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(write, frames, pending.clone()));
        Connection {
            broker: broker.to_owned(),
            writer,
            pending,
            next_correlation: AtomicI32::new(1),
            versions: OnceLock::new(),
            reader,
        }
    }

    /// The broker's address as it was dialled.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// Whether the connection is gone (the peer closed it or a read failed).
    pub fn is_closed(&self) -> bool {
        self.pending.lock().map(|p| p.closed.is_some()).unwrap_or(true)
    }

    /// The highest version of request `R` both sides speak, at most `max`.
    pub fn version<R: Request>(&self, max: i16) -> Result<i16, ProtocolError> {
        let ours = (R::VERSIONS.min, R::VERSIONS.max.min(max));
        let theirs = self.versions.get().and_then(|v| v.get(&R::KEY)).copied();
        match theirs.and_then(|theirs| common_version(ours, theirs)) {
            Some(version) => Ok(version),
            None => Err(ProtocolError::Unsupported {
                broker: self.broker.clone(),
                api: api_name(R::KEY),
                message: format!(
                    "this client speaks versions {}..={}, the broker {}",
                    ours.0,
                    ours.1,
                    theirs.map_or("does not offer it".to_owned(), |(a, b)| format!(
                        "offers {a}..={b}"
                    ))
                ),
            }),
        }
    }

    /// Sends `request` as `version` and waits for its response.
    pub async fn send<R: Request>(&self, request: &R, version: i16) -> Result<R::Response, ProtocolError> {
        let queued = self.queue(request, version)?;
        self.reply::<R>(queued, version, REQUEST_TIMEOUT).await
    }

    /// Queues `request` as `version` for writing, before any later call's request (the broker
    /// handles a connection's requests in that order); [`Connection::reply`] waits for the answer.
    pub fn queue<R: Request>(&self, request: &R, version: i16) -> Result<Queued, ProtocolError> {
        let body = self.encode(request, version)?;
        self.queue_chunks::<R>(version, vec![body])
    }

    /// [`Connection::queue`] for a request encoded by the caller: its body in pieces, written one
    /// after the other (a produce request's batches are not copied into one frame).
    pub fn queue_chunks<R: Request>(&self, version: i16, body: Vec<Bytes>) -> Result<Queued, ProtocolError> {
        let (correlation, frame) = self.frame::<R>(version, body)?;
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| self.transport(api_name(R::KEY), "connection state poisoned".into()))?;
            if let Some(why) = &pending.closed {
                return Err(self.closed(api_name(R::KEY), why.clone()));
            }
            pending.waiters.insert(correlation, sender);
        }
        if self.writer.send(frame).is_err() {
            self.forget(correlation);
            return Err(self.closed(api_name(R::KEY), "the writer stopped".into()));
        }
        Ok(Queued {
            correlation,
            receiver,
        })
    }

    /// [`Connection::queue_chunks`] for a request the broker does not answer (a Produce request
    /// with acks=0).
    pub fn queue_chunks_unanswered<R: Request>(
        &self,
        version: i16,
        body: Vec<Bytes>,
    ) -> Result<(), ProtocolError> {
        let (_, frame) = self.frame::<R>(version, body)?;
        if let Some(why) = self.pending.lock().ok().and_then(|p| p.closed.clone()) {
            return Err(self.closed(api_name(R::KEY), why));
        }
        self.writer
            .send(frame)
            .map_err(|_| self.closed(api_name(R::KEY), "the writer stopped".into()))
    }

    /// Waits up to `timeout` for the response to a queued request and decodes it.
    pub async fn reply<R: Request>(
        &self,
        queued: Queued,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ProtocolError> {
        let api = || api_name(R::KEY);
        let mut body = match tokio::time::timeout(timeout, queued.receiver).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => {
                let why = self
                    .pending
                    .lock()
                    .ok()
                    .and_then(|p| p.closed.clone())
                    .unwrap_or_else(|| "the reader stopped".into());
                return Err(self.closed(api(), why));
            }
            Err(_) => {
                self.forget(queued.correlation);
                return Err(ProtocolError::Timeout {
                    broker: self.broker.clone(),
                    api: api(),
                    secs: timeout.as_secs(),
                });
            }
        };
        ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .and_then(|_| R::Response::decode(&mut body, version))
            .map_err(|e| self.transport(api(), format!("undecodable response: {e}")))
    }

    /// The body of `request` as `version`.
    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<Bytes, ProtocolError> {
        let mut body = BytesMut::new();
        request
            .compute_size(version)
            .and_then(|size| {
                body.reserve(size);
                request.encode(&mut body, version)
            })
            .map_err(|e| self.transport(api_name(R::KEY), format!("unencodable request: {e}")))?;
        Ok(body.freeze())
    }

    /// One request frame (length and header, then the body's pieces) and its correlation id.
    fn frame<R: Request>(&self, version: i16, body: Vec<Bytes>) -> Result<(i32, Frame), ProtocolError> {
        let api = || api_name(R::KEY);
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut head = BytesMut::new();
        head.put_i32(0);
        header
            .encode(&mut head, R::header_version(version))
            .map_err(|e| self.transport(api(), format!("unencodable request: {e}")))?;
        let length = head.len() - 4 + body.iter().map(Bytes::len).sum::<usize>();
        let length = i32::try_from(length).map_err(|_| self.transport(api(), "request too large".into()))?;
        head[..4].copy_from_slice(&length.to_be_bytes());
        let mut frame = Vec::with_capacity(1 + body.len());
        frame.push(head.freeze());
        frame.extend(body);
        Ok((correlation, frame))
    }

    fn forget(&self, correlation: i32) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.waiters.remove(&correlation);
        }
    }

    fn closed(&self, api: String, reason: String) -> ProtocolError {
        ProtocolError::Closed {
            broker: self.broker.clone(),
            api,
            reason,
        }
    }

    fn transport(&self, api: String, message: String) -> ProtocolError {
        ProtocolError::Transport {
            broker: self.broker.clone(),
            api,
            message,
        }
    }

    /// ApiVersions: the newest version first; a broker that does not know it answers in v0
    /// with UNSUPPORTED_VERSION, and v0 is asked then.
    async fn negotiate(&self) -> Result<(), ProtocolError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let answer = match self.send(&request, 3).await {
            Ok(answer) if answer.error_code != UNSUPPORTED_VERSION => answer,
            Ok(_) | Err(ProtocolError::Transport { .. }) => {
                self.send(&ApiVersionsRequest::default(), 0).await?
            }
            Err(e) => return Err(e),
        };
        if answer.error_code != 0 {
            return Err(ProtocolError::kafka(
                &self.broker,
                api_name(ApiKey::ApiVersions as i16),
                "the connection",
                answer.error_code,
                None,
            ));
        }
        let versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        // Set once, right after the connection opened; nothing else sets it.
        let _ = self.versions.set(versions);
        Ok(())
    }

    /// SaslHandshake (v1, so the exchange goes in SaslAuthenticate requests) and the mechanism's
    /// exchange.
    async fn authenticate(&self, sasl: &Sasl) -> Result<(), ProtocolError> {
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        let auth_error = |message: String| ProtocolError::Auth {
            broker: self.broker.clone(),
            mechanism,
            message,
        };
        let handshake_version = self.version::<SaslHandshakeRequest>(1)?;
        if handshake_version < 1 {
            return Err(auth_error(
                "the broker only offers SaslHandshake v0 (Kafka before 1.0), which this client does not speak".into(),
            ));
        }
        let handshake = self
            .send(
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
                handshake_version,
            )
            .await?;
        if handshake.error_code != 0 {
            let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(auth_error(format!(
                "the broker refused the mechanism (Kafka error code {}); it offers {}",
                handshake.error_code,
                offered.join(", ")
            )));
        }
        let step = |bytes: Vec<u8>| async move {
            let version = self.version::<SaslAuthenticateRequest>(2)?;
            let answer = self
                .send(
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                    version,
                )
                .await?;
            if answer.error_code != 0 {
                let name = kafka_protocol::ResponseError::try_from_code(answer.error_code)
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                return Err(auth_error(format!(
                    "{name} (Kafka error code {}){}",
                    answer.error_code,
                    answer
                        .error_message
                        .as_ref()
                        .map(|m| format!(": {}", m.as_str()))
                        .unwrap_or_default()
                )));
            }
            Ok(answer.auth_bytes)
        };
        match sasl.mechanism {
            SaslMechanism::Plain => {
                step(format!("\0{}\0{}", sasl.username, sasl.password).into_bytes()).await?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let hash = if sasl.mechanism == SaslMechanism::ScramSha256 {
                    ScramHash::Sha256
                } else {
                    ScramHash::Sha512
                };
                let scram = ScramClient::new(hash, &sasl.username, &sasl.password)
                    .map_err(|e| auth_error(e.to_string()))?;
                let server_first = step(scram.first_message().into_bytes()).await?;
                let server_first = std::str::from_utf8(&server_first)
                    .map_err(|_| auth_error("server-first message is not UTF-8".into()))?;
                let (client_final, verifier) = scram
                    .final_message(server_first)
                    .map_err(|e| auth_error(e.to_string()))?;
                let server_final = step(client_final.into_bytes()).await?;
                let server_final = std::str::from_utf8(&server_final)
                    .map_err(|_| auth_error("server-final message is not UTF-8".into()))?;
                verifier
                    .verify(server_final)
                    .map_err(|e| auth_error(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// The highest version in both (min, max) ranges, if they overlap.
fn common_version(ours: (i16, i16), theirs: (i16, i16)) -> Option<i16> {
    let version = ours.1.min(theirs.1);
    (version >= ours.0.max(theirs.0)).then_some(version)
}

/// Reads response frames and hands each to the caller waiting for its correlation id; on the
/// first failure, records why and lets every waiter know.
async fn read_responses(mut read: ReadHalf<Box<dyn Io>>, pending: Arc<Mutex<Pending>>) {
    let why = loop {
        let length = match read.read_i32().await {
            Ok(n) => n,
            Err(e) => break format!("read failed: {e}"),
        };
        let Some(length) = usize::try_from(length)
            .ok()
            .filter(|n| (4..=MAX_FRAME).contains(n))
        else {
            break format!("invalid response frame length {length}");
        };
        let mut frame = vec![0u8; length];
        if let Err(e) = read.read_exact(&mut frame).await {
            break format!("read failed: {e}");
        }
        let frame = Bytes::from(frame);
        let correlation = frame.clone().get_i32();
        let waiter = match pending.lock() {
            Ok(mut p) => p.waiters.remove(&correlation),
            Err(_) => break "connection state poisoned".into(),
        };
        // A caller that gave up (timeout) is gone: its late answer is dropped.
        if let Some(waiter) = waiter {
            let _ = waiter.send(frame);
        }
    };
    close(&pending, why);
}

/// Writes queued request frames in order until the connection is dropped or a write fails. Small
/// pieces gather in a buffer; large ones (a batch) are written from where they are.
async fn write_requests(
    write: WriteHalf<Box<dyn Io>>,
    mut frames: mpsc::UnboundedReceiver<Frame>,
    pending: Arc<Mutex<Pending>>,
) {
    let mut write = BufWriter::with_capacity(64 * 1024, write);
    while let Some(frame) = frames.recv().await {
        let written = async {
            for piece in &frame {
                write.write_all(piece).await?;
            }
            write.flush().await
        };
        if let Err(e) = written.await {
            close(&pending, format!("write failed: {e}"));
            return;
        }
    }
}

/// Records why the connection is unusable and wakes every waiter (dropping their senders).
fn close(pending: &Mutex<Pending>, why: String) {
    if let Ok(mut p) = pending.lock() {
        p.closed.get_or_insert(why);
        p.waiters.clear();
    }
}

/// TCP (with the configured socket options), then TLS when configured.
async fn dial(broker: &str, settings: &Settings) -> Result<Box<dyn Io>, ProtocolError> {
    let address_error = |message: String| ProtocolError::Address {
        broker: broker.to_owned(),
        message,
    };
    let (host, _) = broker
        .rsplit_once(':')
        .ok_or_else(|| address_error("expected host:port".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = connect_tcp(broker, settings).await?;
    let Some(tls) = &settings.tls else {
        return Ok(Box::new(stream));
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| address_error(format!("{host} is not a valid TLS server name: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .map_err(|e| ProtocolError::Tls {
            broker: broker.to_owned(),
            message: e.to_string(),
        })?;
    Ok(Box::new(stream))
}

/// The TCP connection to `broker` (host:port, each address it resolves to in turn), with the
/// socket options of `settings`: keep-alive (with its idle time and probe interval where set) and
/// TCP_NODELAY.
async fn connect_tcp(broker: &str, settings: &Settings) -> Result<TcpStream, ProtocolError> {
    let error = |message: String| ProtocolError::Connect {
        broker: broker.to_owned(),
        message,
    };
    let mut last = None;
    let addresses = tokio::net::lookup_host(broker)
        .await
        .map_err(|e| error(format!("cannot resolve: {e}")))?;
    let mut stream = None;
    for address in addresses {
        let socket = if address.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| error(e.to_string()))?;
        if let Some(keepalive) = settings.keepalive.socket_option() {
            socket2::SockRef::from(&socket)
                .set_tcp_keepalive(&keepalive)
                .map_err(|e| error(format!("setting TCP keep-alive: {e}")))?;
        }
        match socket.connect(address).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream: TcpStream = stream
        .ok_or_else(|| error(last.map_or("the name resolves to no address".into(), |e| e.to_string())))?;
    stream
        .set_nodelay(settings.tcp_nodelay)
        .map_err(|e| error(e.to_string()))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_common_version_is_used_and_disjoint_ranges_have_none() {
        assert_eq!(common_version((0, 7), (0, 9)), Some(7));
        assert_eq!(common_version((2, 9), (0, 4)), Some(4));
        assert_eq!(common_version((0, 0), (0, 0)), Some(0));
        assert_eq!(common_version((2, 9), (0, 1)), None);
        assert_eq!(common_version((0, 1), (3, 5)), None);
    }

    #[tokio::test]
    async fn sockets_carry_the_keep_alive_time_and_interval_of_the_settings() {
        use crate::kafka::Keepalive;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker = listener.local_addr().unwrap().to_string();
        let settings = |keepalive| Settings {
            bootstrap: vec![broker.clone()],
            tls: None,
            sasl: None,
            keepalive,
            tcp_nodelay: true,
            connections_per_broker: None,
        };
        let timed = Keepalive {
            enabled: true,
            time: Some(Duration::from_secs(37)),
            interval: Some(Duration::from_secs(11)),
        };
        let stream = connect_tcp(&broker, &settings(timed)).await.unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(37));
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), Duration::from_secs(11));
        assert!(socket.tcp_nodelay().unwrap());

        // Enabled without timing: the node's defaults stay.
        let plain = Keepalive {
            enabled: true,
            time: None,
            interval: None,
        };
        let node_default = {
            let fresh = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            fresh.tcp_keepalive_time().unwrap()
        };
        let stream = connect_tcp(&broker, &settings(plain)).await.unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), node_default);

        let stream = connect_tcp(&broker, &settings(Keepalive::default()))
            .await
            .unwrap();
        assert!(!socket2::SockRef::from(&stream).keepalive().unwrap());
    }

    #[test]
    fn api_names_come_from_the_key() {
        assert_eq!(api_name(8), "OffsetCommit");
        assert_eq!(api_name(47), "OffsetDelete");
        assert_eq!(api_name(-5), "API -5");
    }
}
