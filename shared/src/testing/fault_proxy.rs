//! A fault-injecting HTTP proxy on loopback, in front of moto: the AWS adapters pointed at it
//! see the failures real AWS produces, with each service's own wire shape, at seeded random
//! rates.
//!
//! Every request carrying a SigV4 `Authorization` header (an SDK call) is eligible; presigned
//! requests (a producer's upload, a browser's download: the signature is in the query or the
//! form) pass through untouched, so a test can drive uploads without retries of its own. For
//! an eligible request the proxy draws one number and either
//! - answers **throttling** itself: S3 `SlowDown` 503 (XML), SQS `RequestThrottled` 400 (JSON
//!   protocol, with the `x-amzn-query-error` header the SDK's query-compatible parser reads),
//!   DynamoDB `ProvisionedThroughputExceededException` 400 (JSON 1.0), SNS `Throttling` 400
//!   (query-protocol XML);
//! - answers a **server error** itself: S3 `InternalError` 500, SQS `InternalFailure` 500,
//!   DynamoDB `InternalServerError` 500, SNS `InternalError` 500;
//! - **resets the connection before forwarding** (moto never sees the request);
//! - **resets the connection after forwarding** (moto applied the request and answered; the
//!   client sees a reset instead of the answer, so its retry repeats a call that already took
//!   effect: the case that makes idempotency matter);
//! - or forwards the request and streams nothing but moto's answer back.
//!
//! A reset is a TCP RST (`SO_LINGER` 0, then close), which the SDK reports as a dispatch or
//! response failure. Forwarding adds no delay: a 20 s long-poll `ReceiveMessage` waits at moto
//! exactly as long as it would without the proxy.
//!
//! **Permanent** faults ([`FaultProxy::deny_s3_get`]) answer S3 `AccessDenied` 403 to every
//! `GetObject` under a key prefix until lifted: the failure a worker must record rather than
//! retry forever.
//!
//! Injection starts disabled ([`FaultProxy::set_enabled`]), so a test can provision through the
//! proxy first. [`FaultProxy::counts`] tells what was injected, per service and kind, so a test
//! can assert that every kind really happened.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// An AWS service, as named in a SigV4 credential scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// Amazon S3 (REST-XML).
    S3,
    /// Amazon SQS (JSON protocol, query-compatible).
    Sqs,
    /// Amazon SNS (query protocol).
    Sns,
    /// Amazon DynamoDB (JSON 1.0).
    DynamoDb,
}

impl Service {
    /// Every service, for reports.
    pub const ALL: [Service; 4] = [Service::S3, Service::Sqs, Service::Sns, Service::DynamoDb];

    fn from_scope(name: &str) -> Option<Self> {
        match name {
            "s3" => Some(Self::S3),
            "sqs" => Some(Self::Sqs),
            "sns" => Some(Self::Sns),
            "dynamodb" => Some(Self::DynamoDb),
            _ => None,
        }
    }

    /// The credential-scope name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Sqs => "sqs",
            Self::Sns => "sns",
            Self::DynamoDb => "dynamodb",
        }
    }
}

/// What the proxy did to a request instead of (or after) forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Answered the service's throttling error.
    Throttle,
    /// Answered the service's 5xx error.
    ServerError,
    /// Reset the connection without forwarding.
    ResetBefore,
    /// Forwarded, then reset the connection instead of answering.
    ResetAfter,
    /// Answered a permanent error (a [`FaultProxy::deny_s3_get`] rule).
    Permanent,
}

impl FaultKind {
    /// The random kinds, which every service should see in a long enough run.
    pub const RANDOM: [FaultKind; 4] = [
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::ResetBefore,
        FaultKind::ResetAfter,
    ];

    /// A short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::ServerError => "5xx",
            Self::ResetBefore => "reset-before",
            Self::ResetAfter => "reset-after",
            Self::Permanent => "permanent",
        }
    }
}

/// Fault rates: the probability of each kind per eligible request (their sum is the fraction
/// of requests that fail).
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Seed of the draws.
    pub seed: u64,
    /// Throttling answers.
    pub throttle: f64,
    /// 5xx answers.
    pub server_error: f64,
    /// Resets before forwarding.
    pub reset_before: f64,
    /// Resets after forwarding.
    pub reset_after: f64,
    /// Until every random kind has been injected on a service, give every fourth signed
    /// request to it the next missing kind, so a run of a few dozen calls per service is sure
    /// to exercise each (a test that relies on luck to inject anything can pass vacuously).
    pub cover_every_kind: bool,
}

impl FaultPlan {
    /// `total` spread evenly over the four kinds.
    pub fn even(seed: u64, total: f64) -> Self {
        let each = total / 4.0;
        Self {
            seed,
            throttle: each,
            server_error: each,
            reset_before: each,
            reset_after: each,
            cover_every_kind: true,
        }
    }

    fn draw(&self, x: f64) -> Option<FaultKind> {
        let mut edge = 0.0;
        for (p, kind) in [
            (self.throttle, FaultKind::Throttle),
            (self.server_error, FaultKind::ServerError),
            (self.reset_before, FaultKind::ResetBefore),
            (self.reset_after, FaultKind::ResetAfter),
        ] {
            edge += p;
            if x < edge {
                return Some(kind);
            }
        }
        None
    }
}

/// Requests seen and faults injected, per service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Eligible (SDK-signed) requests, per service.
    pub requests: BTreeMap<Service, u64>,
    /// Presigned or unsigned requests passed through, never faulted.
    pub unsigned: u64,
    /// Faults injected, per service and kind.
    pub injected: BTreeMap<(Service, FaultKind), u64>,
}

impl FaultCounts {
    /// Faults of `kind` injected on `service`.
    pub fn get(&self, service: Service, kind: FaultKind) -> u64 {
        self.injected.get(&(service, kind)).copied().unwrap_or(0)
    }

    /// Every fault injected.
    pub fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }

    /// Every eligible request.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<9} {:>8}", "service", "requests")?;
        for k in FaultKind::RANDOM.iter().chain([&FaultKind::Permanent]) {
            write!(f, " {:>12}", k.as_str())?;
        }
        writeln!(f)?;
        for s in Service::ALL {
            write!(
                f,
                "{:<9} {:>8}",
                s.as_str(),
                self.requests.get(&s).copied().unwrap_or(0)
            )?;
            for k in FaultKind::RANDOM.iter().chain([&FaultKind::Permanent]) {
                write!(f, " {:>12}", self.get(s, *k))?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "{} of {} signed requests faulted ({:.1}%); {} presigned passed through",
            self.total_injected(),
            self.total_requests(),
            100.0 * self.total_injected() as f64 / self.total_requests().max(1) as f64,
            self.unsigned
        )
    }
}

/// A permanent rule: S3 `AccessDenied` on `GetObject` of `bucket/prefix…`.
#[derive(Debug, Clone)]
struct DenyRule {
    bucket: String,
    prefix: String,
}

struct State {
    upstream: String,
    plan: FaultPlan,
    enabled: AtomicBool,
    rng: Mutex<u64>,
    deny: Mutex<Vec<DenyRule>>,
    counts: Mutex<FaultCounts>,
    http: reqwest::Client,
}

impl State {
    /// SplitMix64: small, seedable, and good enough to spread faults.
    fn next_unit(&self) -> f64 {
        let mut s = self.rng.lock().expect("the RNG lock is never poisoned");
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The coverage rule of [`FaultPlan::cover_every_kind`].
    fn missing_kind(&self, service: Service) -> Option<FaultKind> {
        if !self.plan.cover_every_kind {
            return None;
        }
        let c = self
            .counts
            .lock()
            .expect("the counts lock is never poisoned");
        let n = c.requests.get(&service).copied().unwrap_or(0);
        if n % 4 != 0 {
            return None;
        }
        FaultKind::RANDOM
            .into_iter()
            .find(|k| c.get(service, *k) == 0)
    }

    fn count(&self, f: impl FnOnce(&mut FaultCounts)) {
        f(&mut self
            .counts
            .lock()
            .expect("the counts lock is never poisoned"));
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: use it as the AWS endpoint.
    pub endpoint: String,
    state: Arc<State>,
    stop: CancellationToken,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the service function decided about a request.
enum Verdict {
    Answer(Response<Full<Bytes>>),
    Reset,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream` (moto's endpoint), injecting
    /// faults by `plan` once enabled.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Self {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            plan,
            enabled: AtomicBool::new(false),
            rng: Mutex::new(plan.seed),
            deny: Mutex::new(Vec::new()),
            counts: Mutex::new(FaultCounts::default()),
            // No timeout: the client's own timeouts govern, and a long poll must wait at moto
            // as long as it asked to.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client builds"),
        });
        let stop = CancellationToken::new();
        let (st, stop2) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop2.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(serve_connection(stream, st.clone(), stop2.clone()));
            }
        });
        Self {
            endpoint: format!("http://{addr}"),
            state,
            stop,
        }
    }

    /// Turn random injection on or off (permanent rules apply regardless).
    pub fn set_enabled(&self, on: bool) {
        self.state.enabled.store(on, Ordering::SeqCst);
    }

    /// Answer S3 `AccessDenied` 403 to every `GetObject` of a key in `bucket` starting with
    /// `key_prefix`, until [`Self::lift_permanent`].
    pub fn deny_s3_get(&self, bucket: &str, key_prefix: &str) {
        self.state
            .deny
            .lock()
            .expect("the rules lock is never poisoned")
            .push(DenyRule {
                bucket: bucket.to_owned(),
                prefix: key_prefix.to_owned(),
            });
    }

    /// Remove every permanent rule.
    pub fn lift_permanent(&self) {
        self.state
            .deny
            .lock()
            .expect("the rules lock is never poisoned")
            .clear();
    }

    /// What has been seen and injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.state
            .counts
            .lock()
            .expect("the counts lock is never poisoned")
            .clone()
    }
}

/// Serve one client connection. A reset verdict wakes `reset`; the connection is then dropped
/// with `SO_LINGER` 0 so the client sees an RST rather than an orderly close.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: Arc<State>,
    stop: CancellationToken,
) {
    // A second handle on the same socket, kept to set the linger option when resetting (the
    // first one belongs to hyper).
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let Ok(twin) = std_stream.try_clone() else {
        return;
    };
    let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
        return;
    };
    let reset = Arc::new(Notify::new());
    let (st, rs) = (state.clone(), reset.clone());
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (st, rs) = (st.clone(), rs.clone());
        async move {
            match handle(&st, req).await {
                Verdict::Answer(r) => Ok::<_, Infallible>(r),
                Verdict::Reset => {
                    rs.notify_one();
                    // Never answer: the connection is torn down under this future.
                    std::future::pending().await
                }
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = reset.notified() => {
            if let Ok(t) = tokio::net::TcpStream::from_std(twin) {
                let _ = t.set_zero_linger();
                // Dropping both handles (the hyper connection at the end of this select, the
                // twin here) closes the socket with an RST.
                drop(t);
            }
        }
        () = stop.cancelled() => {}
    }
}

/// The service named in a SigV4 `Authorization` header's credential scope
/// (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`).
fn signed_service(headers: &HeaderMap) -> Option<Service> {
    let auth = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?;
    let scope = scope.split([',', ' ']).next()?;
    Service::from_scope(scope.split('/').nth(3)?)
}

async fn handle(state: &State, req: Request<Incoming>) -> Verdict {
    let service = signed_service(req.headers());
    let (parts, body) = req.into_parts();
    let Ok(body) = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
    else {
        return Verdict::Reset;
    };
    let req = Request::from_parts(parts, ());
    let Some(service) = service else {
        state.count(|c| c.unsigned += 1);
        return forward(state, &req, body).await;
    };
    state.count(|c| *c.requests.entry(service).or_default() += 1);

    if service == Service::S3 && denied(state, &req) {
        state.count(|c| {
            *c.injected
                .entry((service, FaultKind::Permanent))
                .or_default() += 1
        });
        return Verdict::Answer(error_response(service, FaultKind::Permanent, &req));
    }
    let kind = if state.enabled.load(Ordering::SeqCst) {
        state
            .plan
            .draw(state.next_unit())
            .or_else(|| state.missing_kind(service))
    } else {
        None
    };
    let Some(kind) = kind else {
        return forward(state, &req, body).await;
    };
    state.count(|c| *c.injected.entry((service, kind)).or_default() += 1);
    tracing::debug!(
        service = service.as_str(),
        operation = %operation_head(service, &req, &body),
        fault = kind.as_str(),
        "Fault injected."
    );
    match kind {
        FaultKind::ResetBefore => Verdict::Reset,
        FaultKind::ResetAfter => {
            // Let it take effect at moto, then drop the answer.
            let _ = forward(state, &req, body).await;
            Verdict::Reset
        }
        _ => Verdict::Answer(error_response(service, kind, &req)),
    }
}

/// The operation name, for logs.
fn operation_head(service: Service, req: &Request<()>, body: &[u8]) -> String {
    match service {
        Service::Sqs | Service::DynamoDb => req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned(),
        Service::Sns => form_urlencoded::parse(body)
            .find(|(k, _)| k == "Action")
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.into_owned()),
        Service::S3 => s3_operation(req).to_owned(),
    }
}

fn s3_operation(req: &Request<()>) -> &'static str {
    let path = req.uri().path().trim_start_matches('/');
    let has_key = path.split_once('/').is_some_and(|(_, k)| !k.is_empty());
    let query = req.uri().query().unwrap_or("");
    match (req.method().as_str(), has_key) {
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("PUT", true) => "PutObject",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if query.contains("list-type=2") => "ListObjectsV2",
        ("GET", false) => "GetBucket",
        _ => "Other",
    }
}

/// Whether a permanent rule denies this S3 request (path-style `GET /bucket/key`).
fn denied(state: &State, req: &Request<()>) -> bool {
    if s3_operation(req) != "GetObject" {
        return false;
    }
    let path = req.uri().path().trim_start_matches('/');
    let Some((bucket, key)) = path.split_once('/') else {
        return false;
    };
    let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
    state
        .deny
        .lock()
        .expect("the rules lock is never poisoned")
        .iter()
        .any(|r| r.bucket == bucket && key.starts_with(&r.prefix))
}

/// Hop-by-hop headers a proxy must not pass on, plus `expect` (the body is already here).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
    )
}

async fn forward(state: &State, req: &Request<()>, body: Bytes) -> Verdict {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let url = format!("{}{path}", state.upstream);
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return Verdict::Reset;
    };
    let mut out = state.http.request(method, url).body(body);
    for (name, value) in req.headers() {
        if hop_by_hop(name) || name == hyper::header::CONTENT_LENGTH {
            continue;
        }
        out = out.header(name.as_str(), value.as_bytes());
    }
    let resp = match out.send().await {
        Ok(r) => r,
        // moto unreachable or its connection broke: the client sees what it would see.
        Err(_) => return Verdict::Reset,
    };
    let status = resp.status().as_u16();
    let headers: Vec<(String, Vec<u8>)> = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let Ok(bytes) = resp.bytes().await else {
        return Verdict::Reset;
    };
    let mut answer = Response::new(Full::new(bytes));
    *answer.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (n, v) in headers {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(&v),
        ) else {
            continue;
        };
        // Keep `content-length`: a HEAD answer carries the object's size with no body.
        if hop_by_hop(&n) {
            continue;
        }
        answer.headers_mut().append(n, v);
    }
    Verdict::Answer(answer)
}

/// The service's own error answer for `kind`, in its protocol's wire shape.
fn error_response(service: Service, kind: FaultKind, req: &Request<()>) -> Response<Full<Bytes>> {
    let request_id = "prism-fault-proxy";
    let (status, content_type, body, extra): (u16, &str, String, Option<(&str, &str)>) =
        match (service, kind) {
            (Service::S3, kind) => {
                let (status, code, message) = match kind {
                    FaultKind::Throttle => (503, "SlowDown", "Please reduce your request rate."),
                    FaultKind::Permanent => (403, "AccessDenied", "Access Denied"),
                    _ => (500, "InternalError", "We encountered an internal error. Please try again."),
                };
                // HEAD answers carry no body; the SDK classifies them by status alone.
                let body = if req.method() == hyper::Method::HEAD {
                    String::new()
                } else {
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
                    )
                };
                (status, "application/xml", body, None)
            }
            (Service::Sqs, FaultKind::Throttle) => (
                400,
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Request is throttled."}"#.into(),
                Some(("x-amzn-query-error", "RequestThrottled;Sender")),
            ),
            (Service::Sqs, _) => (
                500,
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.sqs#InternalFailure","message":"The request processing has failed because of an unknown error, exception or failure."}"#.into(),
                Some(("x-amzn-query-error", "InternalFailure;Receiver")),
            ),
            (Service::DynamoDb, FaultKind::Throttle) => (
                400,
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."}"#.into(),
                None,
            ),
            (Service::DynamoDb, _) => (
                500,
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#.into(),
                None,
            ),
            (Service::Sns, kind) => {
                let (status, ty, code, message) = if kind == FaultKind::Throttle {
                    (400, "Sender", "Throttling", "Rate exceeded")
                } else {
                    (500, "Receiver", "InternalError", "Internal Error")
                };
                (
                    status,
                    "text/xml",
                    format!(
                        "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>{ty}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
                    ),
                    None,
                )
            }
        };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert("x-amzn-requestid", HeaderValue::from_static(request_id));
    h.insert("x-amz-request-id", HeaderValue::from_static(request_id));
    if let Some((k, v)) = extra {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}
