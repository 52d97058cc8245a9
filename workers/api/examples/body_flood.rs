//! Benchmark (not a test): the API's peak memory under floods of large bodies it must refuse.
//!
//! ```sh
//! cargo run --release -p prism-api --example body_flood
//! ```
//!
//! Each round starts a fresh API (this binary re-executed as `serve`, on the embedded backend and
//! loopback), reads its `VmHWM` (peak RSS) from `/proc/<pid>/status`, fires its requests over raw
//! TCP at once, each sending its whole body unless the server answers or closes first, and reads
//! `VmHWM` again. Rounds: N concurrent unauthenticated 50 MB POSTs (half to `/v1/events`, half to
//! `/v1/batches`) for N = 1, 10, 40; ten 40 MiB uploads against 1,000-byte grants; ten
//! authenticated 8 MiB `POST /v1/batches`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark: a panic is the report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIFTY_MB: u64 = 50_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if args.get(1).map(String::as_str) == Some("serve") {
        rt.block_on(serve(PathBuf::from(&args[2]), args[3].parse().unwrap()));
        return;
    }
    rt.block_on(bench());
}

/// The child: prism-api as `prism-api` runs it, with default limits, until killed.
async fn serve(dir: PathBuf, addr: SocketAddr) {
    let mut cfg = prism_api::Config::default();
    cfg.common.data_dir = dir.clone();
    cfg.http.listen_addr = addr;
    let base = format!("http://{addr}");
    let stack = shared::adapter::local::LocalStack::open(
        &dir,
        &shared::config::Resources::default(),
        &base,
    )
    .await
    .unwrap();
    prism_api::run(
        cfg,
        prism_api::Deps::local(&stack),
        shared::telemetry::metrics::install(),
        shared::telemetry::Health::new(),
        tokio_util::sync::CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
}

struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["serve", dir.path().to_str().unwrap(), &addr.to_string()])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the API did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, addr, dir }
    }

    /// Peak RSS so far, in MiB.
    fn peak_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024.0
    }

    fn token(&self) -> String {
        prism_api::dev_token(self.dir.path()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request: `head`, `prefix`, then filler up to `len` body bytes, while reading the answer.
/// Returns the status (0 when the connection closed without one) and the body bytes sent.
async fn fire(addr: SocketAddr, head: String, prefix: Vec<u8>, len: u64) -> (u16, u64) {
    let (mut r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        if w.write_all(head.as_bytes()).await.is_err() || w.write_all(&prefix).await.is_err() {
            return sent;
        }
        sent += prefix.len() as u64;
        let block = vec![b'a'; 64 * 1024];
        while sent < len {
            let n = (len - sent).min(block.len() as u64) as usize;
            if w.write_all(&block[..n]).await.is_err() {
                break;
            }
            sent += n as u64;
        }
        sent
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let status = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            break head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break 0,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    drop(r);
    let sent = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .map_or(len, Result::unwrap);
    (status, sent)
}

/// Fire `reqs` at once at `server`; print one row.
async fn round(what: &str, server: &Server, reqs: Vec<(String, Vec<u8>, u64)>) {
    let n = reqs.len();
    let before = server.peak_mib();
    let start = Instant::now();
    let results = futures::future::join_all(
        reqs.into_iter()
            .map(|(head, prefix, len)| fire(server.addr, head, prefix, len)),
    )
    .await;
    let took = start.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = server.peak_mib();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut sent = 0u64;
    for (s, b) in &results {
        *statuses.entry(*s).or_default() += 1;
        sent += b;
    }
    let statuses: Vec<String> = statuses
        .iter()
        .map(|(s, c)| {
            if *s == 0 {
                format!("{c} closed")
            } else {
                format!("{c} x {s}")
            }
        })
        .collect();
    println!(
        "| {what} | {n} | {} | {:.0} | {before:.1} | {after:.1} | {:+.1} | {:.1} |",
        statuses.join(", "),
        sent as f64 / 1_048_576.0,
        after - before,
        took.as_secs_f64()
    );
}

fn unauthenticated(i: usize) -> (String, Vec<u8>, u64) {
    let route = if i.is_multiple_of(2) {
        "/v1/events"
    } else {
        "/v1/batches"
    };
    (
        format!(
            "POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {FIFTY_MB}\r\n\r\n"
        ),
        b"{".to_vec(),
        FIFTY_MB,
    )
}

async fn create_uploads(server: &Server, n: usize) -> Vec<(String, Vec<u8>, u64)> {
    let files: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"name": format!("{i}.jpg"), "content_type": "image/jpeg", "size": 1000}))
        .collect();
    let body =
        serde_json::json!({"files": files, "variants": {"widths": [320], "formats": ["webp"]}});
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/v1/batches", server.addr))
        .bearer_auth(server.token())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|up| upload_request(server.addr, up, 40 << 20))
        .collect()
}

/// An S3-style form: every presigned field, then a `file` of `file_len` bytes.
fn upload_request(
    addr: SocketAddr,
    up: &serde_json::Value,
    file_len: u64,
) -> (String, Vec<u8>, u64) {
    let boundary = "body-flood";
    let mut pre = Vec::new();
    for (k, v) in up["fields"].as_object().unwrap() {
        pre.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{}\r\n",
                v.as_str().unwrap()
            )
            .as_bytes(),
        );
    }
    pre.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes());
    let total = pre.len() as u64 + file_len + format!("\r\n--{boundary}--\r\n").len() as u64;
    let path = up["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&format!("http://{addr}"))
        .unwrap()
        .to_owned();
    (
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n"
        ),
        pre,
        total,
    )
}

async fn bench() {
    println!(
        "| requests | n | answers | MiB sent by clients | server VmHWM before (MiB) | after | delta | s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in [1, 10, 40] {
        let server = Server::start().await;
        let reqs = (0..n).map(unauthenticated).collect();
        round(
            "unauthenticated 50 MB POST /v1/events + /v1/batches",
            &server,
            reqs,
        )
        .await;
    }
    let server = Server::start().await;
    let reqs = create_uploads(&server, 10).await;
    round("40 MiB upload against a 1,000-byte grant", &server, reqs).await;
    let server = Server::start().await;
    let len = 8u64 << 20;
    let head = format!(
        "POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        server.token()
    );
    let reqs = (0..10)
        .map(|_| (head.clone(), b"{".to_vec(), len))
        .collect();
    round("authenticated 8 MiB POST /v1/batches", &server, reqs).await;
}
