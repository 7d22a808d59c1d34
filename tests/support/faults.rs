//! The fault harness: real services (nisshi, SeaweedFS, Azurite) behind proxies that break
//! the way networks, brokers, object stores and disks break.
//!
//! - [`TcpFaults`]: a TCP proxy in front of a broker or an object store that can refuse
//!   connections (the port closed, every open connection cut), black-hole traffic (nothing
//!   gets through in either direction; connections that lost bytes are cut once the window
//!   ends, as their peers would time them out: late delivery of held packets is not modelled),
//!   cut a connection once its client has sent N bytes, and add latency. In front of a broker
//!   it reads the Kafka request frames: it can answer a request itself with an error code
//!   (NOT_LEADER_OR_FOLLOWER to a Produce, say) instead of forwarding it, and switch itself to
//!   refusing when the n-th request of an API arrives, or forward a request and lose its
//!   response (the connection is cut once the broker has answered). Responses keep their order on a
//!   connection, injected ones included.
//! - [`HttpFaults`]: an HTTP proxy in front of an object store answering 500, 503 SlowDown or
//!   403 AccessDenied (S3's XML error bodies) for a window, for one request in K or from some
//!   point on, and resetting connections in the middle of an upload.
//! - [`SmallVolume`]: a size-limited tmpfs (a loop-mounted ext4 file where tmpfs cannot be
//!   mounted) as a PVC root that fills up (ENOSPC), and grows again.
//! - [`matrix`]: each fault test's row of the fault matrix (tests/fault-matrix.md).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use kafka_protocol::messages::ApiKey;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// TCP

/// What a [`TcpFaults`] proxy does with traffic now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards everything.
    Pass,
    /// The port is closed (connections are refused) and every open connection was cut.
    Refuse,
    /// Nothing gets through in either direction; connections stay open.
    BlackHole,
}

/// A Kafka request the proxy answers itself.
#[derive(Clone, Debug)]
pub struct KafkaInjection {
    /// API key of the requests (Produce = 0).
    pub api_key: i16,
    /// Every `every`-th such request is answered with the error (1: each one).
    pub every: usize,
    /// At most this many answers.
    pub times: usize,
    /// The Kafka error code answered for each of the request's partitions.
    pub error_code: i16,
}

/// What the proxy saw and did.
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Connections cut (refused mode, cut-after, end of a black hole).
    pub cuts: AtomicUsize,
    /// Bytes dropped by a black hole.
    pub dropped: AtomicU64,
    /// Kafka requests answered by the proxy with an error.
    pub injected: AtomicUsize,
    /// Kafka responses lost (the broker answered, the connection was cut instead).
    pub lost: AtomicUsize,
    /// Kafka requests seen, per API key.
    pub requests: Mutex<std::collections::BTreeMap<i16, usize>>,
    /// When each Kafka request was seen: (API key, time since the Unix epoch).
    pub request_log: Mutex<Vec<(i16, Duration)>>,
}

struct Control {
    mode: watch::Sender<Mode>,
    latency: Mutex<Duration>,
    cut_after: Mutex<Option<(usize, usize)>>,
    injections: Mutex<Vec<(KafkaInjection, usize, usize)>>,
    refuse_on: Mutex<Option<(i16, usize)>>,
    /// API key whose responses are lost, and how many more.
    lose_responses: Mutex<Option<(i16, usize)>>,
    /// Cancelled to cut every open connection; replaced by a fresh token afterwards.
    cut_all: Mutex<CancellationToken>,
    stats: Arc<TcpStats>,
}

impl Control {
    fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    fn cut_everything(&self) {
        let mut token = self.cut_all.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }
}

/// A TCP proxy with faults (see the module docs). Stops when dropped.
pub struct TcpFaults {
    /// host:port clients connect to.
    pub address: String,
    control: Arc<Control>,
    stop: CancellationToken,
}

impl Drop for TcpFaults {
    fn drop(&mut self) {
        self.stop.cancel();
        self.control.cut_everything();
    }
}

impl TcpFaults {
    /// A proxy on a free local port to `upstream` (host:port); with `kafka`, the client's bytes
    /// are read as Kafka request frames (needed for [`Self::inject`] and [`Self::refuse_on`]).
    pub async fn start(upstream: &str, kafka: bool) -> TcpFaults {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TcpFaults::start_on(listener, upstream, kafka)
    }

    /// A proxy on `listener` (whose address a broker may already advertise).
    pub fn start_on(listener: TcpListener, upstream: &str, kafka: bool) -> TcpFaults {
        let local = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Pass);
        let control = Arc::new(Control {
            mode,
            latency: Mutex::new(Duration::ZERO),
            cut_after: Mutex::new(None),
            injections: Mutex::new(Vec::new()),
            refuse_on: Mutex::new(None),
            lose_responses: Mutex::new(None),
            cut_all: Mutex::new(CancellationToken::new()),
            stats: Arc::default(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            local,
            upstream.to_owned(),
            kafka,
            control.clone(),
            stop.clone(),
        ));
        TcpFaults {
            address: local.to_string(),
            control,
            stop,
        }
    }

    /// What it saw.
    pub fn stats(&self) -> &TcpStats {
        &self.control.stats
    }

    /// Forwards everything again (ends a refusal or a black hole; a black hole's damaged
    /// connections are cut).
    pub fn pass(&self) {
        let was = self.control.mode();
        self.control.mode.send_replace(Mode::Pass);
        if was == Mode::BlackHole {
            self.control.cut_everything();
        }
    }

    /// Closes the port and cuts every open connection: the peer is down.
    pub fn refuse(&self) {
        self.control.mode.send_replace(Mode::Refuse);
        self.control.cut_everything();
    }

    /// Lets nothing through until [`Self::pass`].
    pub fn black_hole(&self) {
        self.control.mode.send_replace(Mode::BlackHole);
    }

    /// The mode now.
    pub fn mode(&self) -> Mode {
        self.control.mode()
    }

    /// Delays every chunk of bytes in both directions by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        *self.control.latency.lock().unwrap() = latency;
    }

    /// Cuts each of the next `connections` connections once its client has sent `bytes`
    /// (half of the chunk that crosses the limit gets through: the peer sees half a request).
    pub fn cut_after(&self, bytes: usize, connections: usize) {
        *self.control.cut_after.lock().unwrap() = Some((bytes, connections));
    }

    /// Answers matching Kafka requests itself (not forwarding them).
    pub fn inject(&self, injection: KafkaInjection) {
        self.control.injections.lock().unwrap().push((injection, 0, 0));
    }

    /// Switches to [`Mode::Refuse`] when the `nth` (1-based) request with `api_key` arrives
    /// (that request is not forwarded).
    pub fn refuse_on(&self, api_key: i16, nth: usize) {
        *self.control.refuse_on.lock().unwrap() = Some((api_key, nth));
    }

    /// Forwards the next `times` requests with `api_key`, but loses the broker's response to
    /// each: the connection is cut once it arrives (the request took effect, its client never
    /// hears of it).
    pub fn lose_responses(&self, api_key: i16, times: usize) {
        *self.control.lose_responses.lock().unwrap() = Some((api_key, times));
    }
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    upstream: String,
    kafka: bool,
    control: Arc<Control>,
    stop: CancellationToken,
) {
    let mut listener = Some(listener);
    let mut modes = control.mode.subscribe();
    loop {
        let mode = *modes.borrow_and_update();
        if mode == Mode::Refuse {
            // The port closed: connections are refused until the mode changes.
            listener = None;
            tokio::select! {
                changed = modes.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => {
                listener = TcpListener::bind(local).await.ok();
                if listener.is_none() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((client, _)) = accepted else { continue };
                control.stats.connections.fetch_add(1, Ordering::Relaxed);
                let cut_after = {
                    let mut c = control.cut_after.lock().unwrap();
                    match c.as_mut() {
                        Some((bytes, left)) if *left > 0 => {
                            *left -= 1;
                            Some(*bytes)
                        }
                        _ => None,
                    }
                };
                tokio::spawn(connection(client, upstream.clone(), kafka, cut_after, control.clone()));
            }
            changed = modes.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

/// One proxied connection.
async fn connection(
    client: TcpStream,
    upstream: String,
    kafka: bool,
    cut_after: Option<usize>,
    control: Arc<Control>,
) {
    let cut = control.cut_all.lock().unwrap().child_token();
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    let link = Link {
        control: control.clone(),
        cut: cut.clone(),
        tainted: Arc::default(),
        counted: Arc::default(),
    };
    let (slots_tx, slots_rx) = mpsc::unbounded_channel();
    let up = {
        let link = link.clone();
        async move {
            if kafka {
                link.requests(from_client, to_server, slots_tx, cut_after).await;
            } else {
                link.bytes(from_client, to_server, cut_after).await;
            }
        }
    };
    let down = {
        let link = link.clone();
        async move {
            if kafka {
                link.responses(from_server, to_client, slots_rx).await;
            } else {
                link.bytes(from_server, to_client, None).await;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        () = cut.cancelled() => link.cut_now(),
    }
}

/// A response the client waits for, in request order.
enum Slot {
    /// The broker's next response frame.
    Forwarded,
    /// The broker's next response frame, which is lost: the connection is cut instead.
    Lost,
    /// An answer made by the proxy.
    Injected(Bytes),
}

#[derive(Clone)]
struct Link {
    control: Arc<Control>,
    cut: CancellationToken,
    /// Bytes of this connection were dropped by a black hole: it is cut when the window ends.
    tainted: Arc<std::sync::atomic::AtomicBool>,
    /// Its cut was counted.
    counted: Arc<std::sync::atomic::AtomicBool>,
}

impl Link {
    /// Cuts the connection (counted once).
    fn cut_now(&self) {
        if !self.counted.swap(true, Ordering::SeqCst) {
            self.control.stats.cuts.fetch_add(1, Ordering::Relaxed);
        }
        self.cut.cancel();
    }

    /// Whether `n` bytes may pass now; waits out the latency. `false`: they are dropped.
    async fn admit(&self, n: usize) -> bool {
        let latency = *self.control.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match self.control.mode() {
            Mode::Pass => {
                if self.tainted.load(Ordering::Relaxed) {
                    self.cut_now();
                    return false;
                }
                true
            }
            Mode::Refuse => {
                self.cut_now();
                false
            }
            Mode::BlackHole => {
                self.tainted.store(true, Ordering::Relaxed);
                self.control.stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
                false
            }
        }
    }

    async fn bytes(
        &self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        cut_after: Option<usize>,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0;
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !self.admit(n).await {
                continue;
            }
            if cut_after.is_some_and(|limit| sent + n > limit) {
                let _ = to.write_all(&buf[..n / 2]).await;
                self.cut_now();
                return;
            }
            sent += n;
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    /// Client to broker, frame by frame.
    async fn requests(
        &self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        slots: mpsc::UnboundedSender<Slot>,
        cut_after: Option<usize>,
    ) {
        let mut sent = 0;
        while let Some(frame) = read_frame(&mut from).await {
            if !self.admit(frame.len()).await {
                continue;
            }
            let Some(request) = RequestFrame::parse(&frame) else {
                // Not Kafka: pass it on as it is.
                if to.write_all(&frame).await.is_err() {
                    return;
                }
                continue;
            };
            let stats = &self.control.stats;
            let nth = {
                let mut requests = stats.requests.lock().unwrap();
                let count = requests.entry(request.api_key).or_default();
                *count += 1;
                *count
            };
            stats.request_log.lock().unwrap().push((
                request.api_key,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
            ));
            let refuse_now = *self.control.refuse_on.lock().unwrap() == Some((request.api_key, nth));
            if refuse_now {
                self.control.mode.send_replace(Mode::Refuse);
                self.control.cut_everything();
                return;
            }
            if let Some(answer) = self.injected_answer(&request, &frame) {
                stats.injected.fetch_add(1, Ordering::Relaxed);
                let _ = slots.send(Slot::Injected(answer));
                continue;
            }
            if cut_after.is_some_and(|limit| sent + frame.len() > limit) {
                let _ = to.write_all(&frame[..frame.len() / 2]).await;
                self.cut_now();
                return;
            }
            sent += frame.len();
            if request.expects_response(&frame) {
                let lose = {
                    let mut lose = self.control.lose_responses.lock().unwrap();
                    match lose.as_mut() {
                        Some((key, left)) if *key == request.api_key && *left > 0 => {
                            *left -= 1;
                            true
                        }
                        _ => false,
                    }
                };
                let _ = slots.send(if lose { Slot::Lost } else { Slot::Forwarded });
            }
            if to.write_all(&frame).await.is_err() {
                return;
            }
        }
    }

    /// Broker to client: each slot in turn.
    async fn responses(
        &self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut slots: mpsc::UnboundedReceiver<Slot>,
    ) {
        while let Some(slot) = slots.recv().await {
            let frame = match slot {
                Slot::Injected(answer) => answer,
                Slot::Forwarded => match read_frame(&mut from).await {
                    Some(frame) => frame,
                    None => return,
                },
                Slot::Lost => {
                    let _ = read_frame(&mut from).await;
                    self.control.stats.lost.fetch_add(1, Ordering::Relaxed);
                    self.cut_now();
                    return;
                }
            };
            if !self.admit(frame.len()).await {
                continue;
            }
            if to.write_all(&frame).await.is_err() {
                return;
            }
        }
    }

    /// The answer to `request` when an injection matches it.
    fn injected_answer(&self, request: &RequestFrame, frame: &Bytes) -> Option<Bytes> {
        let mut injections = self.control.injections.lock().unwrap();
        let (injection, seen, answered) = injections
            .iter_mut()
            .find(|(i, _, answered)| i.api_key == request.api_key && *answered < i.times)?;
        *seen += 1;
        if *seen % injection.every.max(1) != 0 {
            return None;
        }
        let answer = match ApiKey::try_from(request.api_key) {
            Ok(ApiKey::Produce) => produce_error(request, frame, injection.error_code)?,
            _ => return None,
        };
        *answered += 1;
        Some(answer)
    }
}

/// A Kafka request frame's header.
struct RequestFrame {
    api_key: i16,
    version: i16,
    correlation: i32,
}

impl RequestFrame {
    fn parse(frame: &Bytes) -> Option<RequestFrame> {
        let body = frame.get(4..)?;
        if body.len() < 8 {
            return None;
        }
        let api_key = i16::from_be_bytes([body[0], body[1]]);
        ApiKey::try_from(api_key).ok()?;
        Some(RequestFrame {
            api_key,
            version: i16::from_be_bytes([body[2], body[3]]),
            correlation: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        })
    }

    /// Every request is answered except a Produce with acks=0.
    fn expects_response(&self, frame: &Bytes) -> bool {
        if ApiKey::try_from(self.api_key) != Ok(ApiKey::Produce) {
            return true;
        }
        decode_produce(self, frame).is_none_or(|p| p.acks != 0)
    }
}

/// A non-flexible Produce request (v3 to v8, what the restore producer sends): acks and each
/// topic's partitions. kafka-protocol's client side encodes requests only, so the few fields
/// needed are read here.
struct ProduceFrame {
    acks: i16,
    topics: Vec<(Bytes, Vec<i32>)>,
}

fn decode_produce(request: &RequestFrame, frame: &Bytes) -> Option<ProduceFrame> {
    if !(3..=8).contains(&request.version) {
        return None;
    }
    let mut b = frame.slice(12..);
    let string = |b: &mut Bytes| -> Option<Option<Bytes>> {
        if b.remaining() < 2 {
            return None;
        }
        let n = b.get_i16();
        if n < 0 {
            return Some(None);
        }
        (b.remaining() >= n as usize).then(|| Some(b.split_to(n as usize)))
    };
    string(&mut b)?; // client id
    string(&mut b)?; // transactional id
    if b.remaining() < 10 {
        return None;
    }
    let acks = b.get_i16();
    b.get_i32(); // timeout
    let mut topics = Vec::new();
    for _ in 0..b.get_i32() {
        let name = string(&mut b)??;
        let mut partitions = Vec::new();
        if b.remaining() < 4 {
            return None;
        }
        for _ in 0..b.get_i32() {
            if b.remaining() < 8 {
                return None;
            }
            partitions.push(b.get_i32());
            let len = b.get_i32();
            if len > 0 {
                if b.remaining() < len as usize {
                    return None;
                }
                b.advance(len as usize);
            }
        }
        topics.push((name, partitions));
    }
    Some(ProduceFrame { acks, topics })
}

/// A Produce response (the request's version, v3 to v8) with `code` for every partition.
fn produce_error(request: &RequestFrame, frame: &Bytes, code: i16) -> Option<Bytes> {
    let produce = decode_produce(request, frame)?;
    let mut body = BytesMut::new();
    body.put_i32(request.correlation);
    body.put_i32(produce.topics.len() as i32);
    for (name, partitions) in &produce.topics {
        body.put_i16(name.len() as i16);
        body.put_slice(name);
        body.put_i32(partitions.len() as i32);
        for p in partitions {
            body.put_i32(*p);
            body.put_i16(code);
            body.put_i64(-1); // base offset
            body.put_i64(-1); // log append time
            if request.version >= 5 {
                body.put_i64(-1); // log start offset
            }
            if request.version >= 8 {
                body.put_i32(0); // record errors
                body.put_i16(-1); // error message
            }
        }
    }
    body.put_i32(0); // throttle time
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_i32(body.len() as i32);
    out.put(body);
    Some(out.freeze())
}

/// One length-prefixed frame (the prefix included); `None` at the end of the stream.
async fn read_frame(from: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Bytes> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len).await.ok()?;
    let n = i32::from_be_bytes(len);
    let n = usize::try_from(n).ok()?;
    let mut frame = BytesMut::with_capacity(n + 4);
    frame.put_slice(&len);
    frame.resize(n + 4, 0);
    from.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame.freeze())
}

/// A nisshi broker of its own that clients reach only through a Kafka-aware [`TcpFaults`]
/// proxy (the broker advertises the proxy's address).
pub async fn broker_behind_faults(nisshi: &str, dir: &Path) -> (super::Broker, TcpFaults) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let advertised = format!("tcp://{}", listener.local_addr().unwrap());
    let broker = super::start_broker(nisshi, dir, &["--advertised-listener-url", &advertised]);
    let faults = TcpFaults::start_on(listener, &broker.bootstrap, true);
    (broker, faults)
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// What an [`HttpRule`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpFault {
    /// This status with S3's XML error body: 500 InternalError, 503 SlowDown, 403
    /// AccessDenied, anything else a generic error.
    Status(u16),
    /// Reads this many bytes of the request body, then resets the connection (no answer).
    ResetAfter(usize),
}

/// When an [`HttpRule`] applies.
#[derive(Clone, Copy, Debug)]
pub enum HttpWhen {
    /// To every matching request until this instant.
    Until(Instant),
    /// To every matching request from now on.
    Always,
    /// To the first `n` matching requests.
    First(usize),
    /// To one matching request in `k` (the k-th, 2k-th, ...), at most `times` times.
    OneIn {
        /// K.
        k: usize,
        /// The most answers.
        times: usize,
    },
}

/// One fault of an [`HttpFaults`] proxy.
#[derive(Clone, Debug)]
pub struct HttpRule {
    /// Only requests with this method (GET, PUT, ...); any when `None`.
    pub method: Option<&'static str>,
    /// Only requests whose path contains this.
    pub path_contains: Option<String>,
    /// When.
    pub when: HttpWhen,
    /// What.
    pub fault: HttpFault,
}

/// One request the proxy saw: when, method, path, and the status it answered (0: reset).
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The status answered; 0 for a reset connection.
    pub status: u16,
    /// Whether the proxy made the answer (a fault) rather than the store.
    pub injected: bool,
}

#[derive(Default)]
struct HttpState {
    rules: Vec<(HttpRule, usize, usize)>,
    seen: Vec<Seen>,
}

/// An HTTP proxy with faults in front of an object store (see the module docs). Stops when
/// dropped.
pub struct HttpFaults {
    /// `http://host:port`: the endpoint to give the storage block.
    pub endpoint: String,
    state: Arc<Mutex<HttpState>>,
    stop: CancellationToken,
}

impl Drop for HttpFaults {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl HttpFaults {
    /// A proxy on a free local port to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> HttpFaults {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let state: Arc<Mutex<HttpState>> = Arc::default();
        let stop = CancellationToken::new();
        {
            let (state, stop) = (state.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        () = stop.cancelled() => return,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let (state, upstream, stop) = (state.clone(), upstream.clone(), stop.clone());
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |request| handle(request, upstream.clone(), state.clone()));
                        let serving = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = serving => {}
                            () = stop.cancelled() => {}
                        }
                    });
                }
            });
        }
        HttpFaults {
            endpoint,
            state,
            stop,
        }
    }

    /// Adds a fault.
    pub fn add(&self, rule: HttpRule) {
        self.state.lock().unwrap().rules.push((rule, 0, 0));
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

type ProxyBody = Full<Bytes>;

/// Error returned by the service to make hyper drop the connection.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}

impl std::error::Error for Reset {}

async fn handle(
    request: Request<Incoming>,
    upstream: String,
    state: Arc<Mutex<HttpState>>,
) -> Result<Response<ProxyBody>, Reset> {
    let method = request.method().as_str().to_owned();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let at = Instant::now();
    let fault = {
        let mut state = state.lock().unwrap();
        let mut chosen = None;
        for (rule, seen, answered) in &mut state.rules {
            if rule.method.is_some_and(|m| m != method)
                || rule
                    .path_contains
                    .as_ref()
                    .is_some_and(|p| !path.contains(p.as_str()))
            {
                continue;
            }
            let applies = match rule.when {
                HttpWhen::Until(until) => at < until,
                HttpWhen::Always => true,
                HttpWhen::First(n) => *answered < n,
                HttpWhen::OneIn { k, times } => {
                    *seen += 1;
                    *answered < times && *seen % k.max(1) == 0
                }
            };
            if applies {
                *answered += 1;
                chosen = Some(rule.fault);
                break;
            }
        }
        chosen
    };
    let record = |status: u16, injected: bool| {
        state.lock().unwrap().seen.push(Seen {
            at,
            method: method.clone(),
            path: path.clone(),
            status,
            injected,
        });
    };
    match fault {
        Some(HttpFault::Status(code)) => {
            // The body is read first, as a store reads it before it answers.
            let _ = request.into_body().collect().await;
            record(code, true);
            Ok(error_response(code))
        }
        Some(HttpFault::ResetAfter(limit)) => {
            let mut body = request.into_body();
            let mut read = 0;
            while read < limit {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
            record(0, true);
            Err(Reset)
        }
        None => {
            let response = forward(request, &upstream).await;
            record(response.status().as_u16(), false);
            Ok(response)
        }
    }
}

/// S3's error document for `code`.
fn error_response(code: u16) -> Response<ProxyBody> {
    let (name, message) = match code {
        503 => ("SlowDown", "Please reduce your request rate."),
        500 => (
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        403 => ("AccessDenied", "Access Denied"),
        _ => ("ServiceUnavailable", "The fault proxy answered this request."),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{name}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
    );
    Response::builder()
        .status(code)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Sends the request on to the store on a connection of its own and returns its answer.
async fn forward(request: Request<Incoming>, upstream: &str) -> Response<ProxyBody> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error_response(500),
    };
    let Ok(stream) = TcpStream::connect(upstream).await else {
        return error_response(502);
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return error_response(502);
    };
    tokio::spawn(conn);
    // The Host header stays the client's: S3 signatures cover it.
    let request = Request::from_parts(parts, Full::new(body));
    let Ok(response) = sender.send_request(request).await else {
        return error_response(502);
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Response::from_parts(parts, Full::new(body))
}

// ---------------------------------------------------------------------------------------------
// Disk

/// A small file system mounted at a directory of its own: a PVC root that fills up.
pub struct SmallVolume {
    /// Where it is mounted.
    pub root: PathBuf,
    /// What it is: "tmpfs" or "ext4 on a loop device".
    pub kind: &'static str,
    image: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl SmallVolume {
    /// Mounts a file system of `bytes`: a tmpfs, else ext4 on a loop file. `Err` says why
    /// neither could be mounted here.
    pub fn mount(bytes: u64) -> Result<SmallVolume, String> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pvc");
        std::fs::create_dir(&root).unwrap();
        let tmpfs = run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "tmpfs",
                root.to_str().unwrap(),
            ],
        );
        if tmpfs.is_ok() {
            return Ok(SmallVolume {
                root,
                kind: "tmpfs",
                image: None,
                _dir: dir,
            });
        }
        let image = dir.path().join("volume.img");
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(bytes.max(4 << 20)).unwrap();
        drop(file);
        let ext4 = run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]).and_then(|()| {
            run(
                "mount",
                &["-o", "loop", image.to_str().unwrap(), root.to_str().unwrap()],
            )
        });
        match ext4 {
            Ok(()) => Ok(SmallVolume {
                root,
                kind: "ext4 on a loop device",
                image: Some(image),
                _dir: dir,
            }),
            Err(loop_error) => Err(format!(
                "neither a tmpfs ({}) nor a loop file system ({loop_error}) can be mounted here",
                tmpfs.unwrap_err()
            )),
        }
    }

    /// Gives the volume `bytes` in all (space freed).
    pub fn grow(&self, bytes: u64) {
        match &self.image {
            None => run(
                "mount",
                &[
                    "-o",
                    &format!("remount,size={bytes}"),
                    self.root.to_str().unwrap(),
                ],
            )
            .unwrap(),
            Some(image) => {
                let file = std::fs::OpenOptions::new().write(true).open(image).unwrap();
                file.set_len(bytes).unwrap();
                run("umount", &[self.root.to_str().unwrap()]).unwrap();
                run("e2fsck", &["-f", "-y", "-q", image.to_str().unwrap()]).ok();
                run("resize2fs", &["-f", image.to_str().unwrap()]).unwrap();
                run(
                    "mount",
                    &["-o", "loop", image.to_str().unwrap(), self.root.to_str().unwrap()],
                )
                .unwrap();
            }
        }
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        let _ = run("umount", &[self.root.to_str().unwrap_or_default()]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Records

/// An order-sensitive digest of records (partition, offset order): SHA-256 over each record's
/// length-prefixed key, value, headers and timestamp.
pub fn digest<'a>(records: impl IntoIterator<Item = &'a Record>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut field = |bytes: Option<&[u8]>| match bytes {
        None => ctx.update(&(-1i64).to_be_bytes()),
        Some(b) => {
            ctx.update(&(b.len() as i64).to_be_bytes());
            ctx.update(b);
        }
    };
    for r in records {
        field(Some(&r.partition.to_be_bytes()));
        field(r.key.as_deref());
        field(r.value.as_deref());
        field(Some(&(r.headers.len() as i64).to_be_bytes()));
        for (k, v) in &r.headers {
            field(Some(k.as_bytes()));
            field(v.as_deref());
        }
        field(Some(&r.timestamp.to_be_bytes()));
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A record as an independent client (plain rdkafka) produced or read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// CreateTime.
    pub timestamp: i64,
}

/// `count` records per partition: keys, null keys, tombstones, duplicate and null headers.
pub fn records(partitions: i32, count: i64, base: i64, pad: usize) -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..count {
        for p in 0..partitions {
            out.push(Record {
                partition: p,
                key: (i % 5 != 0).then(|| format!("key-{p}-{}", i % 7).into_bytes()),
                value: match i % 11 {
                    3 => None,
                    _ => {
                        Some(format!("{{\"p\":{p},\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(pad)).into_bytes())
                    }
                },
                headers: match i % 3 {
                    0 => vec![],
                    1 => vec![
                        ("h".into(), Some(b"1".to_vec())),
                        ("h".into(), Some(b"2".to_vec())),
                    ],
                    _ => vec![("n".into(), None)],
                },
                timestamp: base + i * 10,
            });
        }
    }
    out
}

/// Produces `records` with plain rdkafka, each to its partition.
pub async fn produce(bootstrap: &str, topic: &str, records: &[Record]) {
    use rdkafka::{
        ClientConfig,
        message::{Header, OwnedHeaders},
        producer::{FutureProducer, FutureRecord, Producer},
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut pending = VecDeque::new();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(r.partition)
            .timestamp(r.timestamp)
            .headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        pending.push_back(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        if pending.len() >= 2000
            && let Some(f) = pending.pop_front()
        {
            f.await.unwrap().unwrap();
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Every record of `topic` read with plain rdkafka, partition by partition in offset order.
pub fn consume(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Record> {
    use rdkafka::{
        ClientConfig, Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
        message::Headers,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", super::unique("reader"))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: std::collections::BTreeMap<i32, Vec<Record>> = std::collections::BTreeMap::new();
    let mut ended = std::collections::BTreeSet::new();
    let started = Instant::now();
    while ended.len() < partitions as usize {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading {topic} did not end"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                ended.remove(&m.partition());
                out.entry(m.partition()).or_default().push(Record {
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                });
            }
        }
    }
    out.into_values().flatten().collect()
}

/// Records lost and duplicated in `actual` compared with `expected` (records are told apart
/// by their partition and content; every test record is unique).
pub fn lost_and_duplicated(expected: &[Record], actual: &[Record]) -> (u64, u64) {
    let mut want: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let key = |r: &Record| format!("{:?}", r);
    for r in expected {
        *want.entry(key(r)).or_default() += 1;
    }
    let mut duplicated = 0u64;
    let mut got: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for r in actual {
        let n = got.entry(key(r)).or_default();
        *n += 1;
        if *n > want.get(&key(r)).copied().unwrap_or(0) {
            duplicated += 1;
        }
    }
    let lost = want
        .iter()
        .map(|(k, n)| (n - got.get(k).copied().unwrap_or(0)).max(0) as u64)
        .sum();
    (lost, duplicated)
}

/// Sorts records the way [`consume`] returns them: by partition, in produced order.
pub fn by_partition(records: &[Record]) -> Vec<Record> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| r.partition);
    sorted
}

/// Polls `until` every 20 ms for up to `within`; panics naming `what` when it never holds.
pub async fn wait_for(what: &str, within: Duration, mut until: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !until() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix

/// The fault matrix (tests/fault-matrix.md): one row per fault test, written by the test.
pub mod matrix {
    use std::{io::Write, path::PathBuf};

    /// One row.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Row {
        /// The test that produces it (`file::name`), the row's key.
        pub test: &'static str,
        /// The operation.
        pub operation: &'static str,
        /// The fault, as injected (window lengths included).
        pub fault: String,
        /// What the user sees.
        pub outcome: String,
        /// Records lost.
        pub lost: u64,
        /// Records duplicated.
        pub duplicated: u64,
        /// Time to recover, as measured: how long from the fault's start (or end) to the
        /// outcome.
        pub recovery: String,
    }

    /// The file.
    pub fn path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fault-matrix.md")
    }

    const HEADER: &str = "| Operation | Fault | Outcome | Records lost | Records duplicated | Time to recover (measured) | Test |\n|---|---|---|---|---|---|---|\n";

    const INTRO: &str = "# Fault matrix\n\nGenerated by the fault tests (`tests/faults.rs`, `tests/reconciler.rs`) against the real broker (nisshi), SeaweedFS, Azurite and a size-limited file system, through the fault harness in `tests/support/faults.rs`. Each row is checked by its test on every run: a changed outcome, a lost or a duplicated record fails it. The times are those of the run that last wrote the file: `KBO_WRITE_FAULT_MATRIX=1 cargo test --test faults --test reconciler` rewrites it. Records are compared with an independent client (plain rdkafka) record by record.\n\n";

    fn cells(row: &Row) -> [String; 7] {
        [
            row.operation.to_owned(),
            row.fault.clone(),
            row.outcome.clone(),
            row.lost.to_string(),
            row.duplicated.to_string(),
            row.recovery.clone(),
            format!("`{}`", row.test),
        ]
    }

    fn line(row: &Row) -> String {
        format!("| {} |\n", cells(row).map(|c| c.replace('|', "\\|")).join(" | "))
    }

    /// The checked part of a line: everything but the measured time.
    fn checked(line: &str) -> Vec<String> {
        let mut cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_owned())
            .collect();
        if cells.len() == 7 {
            cells.remove(5);
        }
        cells
    }

    /// Records `row`: with `KBO_WRITE_FAULT_MATRIX=1` writes it into the file (replacing the
    /// test's earlier row); otherwise the file must hold the same row but for the measured time,
    /// or the test fails. The row's figures must be what the test asserted.
    pub fn record(row: Row) {
        let file = path();
        let wanted = line(&row);
        let key = format!("`{}`", row.test);
        if std::env::var("KBO_WRITE_FAULT_MATRIX").as_deref() == Ok("1") {
            // Tests of two binaries write at once: one writer at a time.
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(std::env::temp_dir().join("kafka-backup-operator-fault-matrix.lock"))
                .unwrap();
            lock.lock().unwrap();
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let mut rows: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("| ") && !l.starts_with("| Operation") && !l.contains(&key))
                .map(|l| format!("{l}\n"))
                .collect();
            rows.push(wanted);
            rows.sort();
            let mut out = std::fs::File::create(&file).unwrap();
            out.write_all(INTRO.as_bytes()).unwrap();
            out.write_all(HEADER.as_bytes()).unwrap();
            for r in rows {
                out.write_all(r.as_bytes()).unwrap();
            }
            drop(lock);
            return;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let found = text.lines().find(|l| l.contains(&key));
        match found {
            Some(l) => assert_eq!(
                checked(l),
                checked(&wanted),
                "the fault matrix row of {} changed: {}\nwas: {l}\nnow: {wanted}(run with KBO_WRITE_FAULT_MATRIX=1 to rewrite it)",
                row.test,
                file.display()
            ),
            None => panic!(
                "{} has no row for {}: run with KBO_WRITE_FAULT_MATRIX=1 to write it\n{wanted}",
                file.display(),
                row.test
            ),
        }
    }

    /// Seconds with one decimal.
    pub fn secs(d: std::time::Duration) -> String {
        format!("{:.1} s", d.as_secs_f64())
    }
}
