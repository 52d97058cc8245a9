//! The four binaries started as separate processes with nothing but their defaults (the README's
//! separate-process example) all come up on one machine: the API on 8080 and each worker's
//! `/metrics` + `/healthz` on its own port. A second copy of a worker cannot bind and says which
//! address is taken and what to change.
//!
//! Needs the workspace's binaries beside `prism` (`cargo nextest run --workspace` builds them).
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Children killed when the test ends, however it ends.
struct Procs(Vec<(String, Child, PathBuf)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c, _) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_prism")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's binaries (cargo nextest run --workspace)",
        path.display()
    );
    path
}

fn spawn(dir: &Path, name: &str, log: &str) -> (Child, PathBuf) {
    let log = dir.join(log);
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(binary(name))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap();
    (child, log)
}

fn healthz(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

#[test]
fn all_four_binaries_start_side_by_side_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    let binaries = [
        ("prism-api", 8080),
        ("prism-resize", 9091),
        ("prism-metadata", 9092),
        ("prism-archiver", 9093),
    ];
    for (name, _) in binaries {
        let (child, log) = spawn(dir.path(), name, &format!("{name}.log"));
        procs.0.push((name.to_owned(), child, log));
    }
    for (i, (name, port)) in binaries.iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if healthz(addr) {
                break;
            }
            let (_, child, log) = &mut procs.0[i];
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{name} exited ({status}) before {addr}/healthz answered:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no 200 from {addr}/healthz within 60 s:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(
        dir.path().join("prism-data/dev-token").is_file(),
        "the API made its dev token in the default data dir"
    );

    // A second metadata worker with the same defaults: its metrics port is taken.
    let (mut second, log) = spawn(dir.path(), "prism-metadata", "second-metadata.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second prism-metadata on the same port kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(log).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:9092") && stderr.contains("--metrics-addr"),
        "the error names the address and the flag: {stderr}"
    );
}

/// The metrics path on AWS, from a real binary: with `[metrics] emf = true` a worker writes
/// CloudWatch EMF documents (namespace `prism`) to stdout, which the awslogs driver ships to
/// CloudWatch Logs. The interval here is an hour, so the only flush is the last one, written
/// after SIGTERM (`Runtime::finish` waits for it).
#[test]
fn a_stopping_worker_writes_its_last_emf_flush() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stdout = dir.path().join("stdout");
    let child = Command::new(binary("prism-archiver"))
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("PRISM__METRICS__EMF", "true")
        .env("PRISM__METRICS__EMF_INTERVAL_SECS", "3600")
        .env("PRISM__METRICS__LISTEN_ADDR", addr.to_string())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut procs = Procs(vec![("prism-archiver".into(), child, stdout.clone())]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthz(addr) {
        assert!(Instant::now() < deadline, "no /healthz within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = procs.0[0].1.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = procs.0[0].1.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let out = std::fs::read_to_string(&stdout).unwrap();
    let docs: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|d: &serde_json::Value| d.get("_aws").is_some())
        .collect();
    assert!(!docs.is_empty(), "no EMF document on stdout:\n{out}");
    assert!(
        docs.iter()
            .any(|d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "prism"),
        "{docs:?}"
    );
}
