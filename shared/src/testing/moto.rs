//! A moto server for the AWS adapter tests, started on a free loopback port and killed when the
//! guard drops. A machine without moto fails the test with the install command: the AWS
//! contract suites never skip silently.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::adapter::aws::Clients;
use crate::config::AwsConfig;

/// Install command printed when moto is missing.
pub const INSTALL: &str = "pip install 'moto[server]==5.2.1'  (or run .ci/run, which installs it)";

/// The launcher: moto's own server, with DynamoDB's item operations serialized. DynamoDB
/// evaluates a condition and applies its write atomically; moto's threaded server does not (two
/// concurrent `TransactWriteItems` can both pass the same condition), which would make the
/// conditional-transition rules of the contract flaky for moto's sake. Everything else is moto
/// as shipped.
const LAUNCHER: &str = r#"
import sys, threading
try:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.server import main
except ImportError as e:
    sys.exit(f"moto is not installed: {e}")
lock = threading.RLock()
def serialized(f):
    def g(self, *a, **k):
        with lock:
            return f(self, *a, **k)
    return g
for name in ("put_item", "get_item", "query", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, name, serialized(getattr(DynamoDBBackend, name)))
main(sys.argv[1:])
"#;

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Start moto on a free port and wait until it answers.
    ///
    /// # Panics
    /// When `moto_server` is not installed or does not come up in 30 s.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let child = Command::new("python3")
            .args(["-c", LAUNCHER, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start python3 for moto ({e}); the AWS adapter tests need it: {INSTALL}"
                )
            });
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status} before listening; {INSTALL}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The AWS config pointing at this server (region us-east-1).
    pub fn aws_config(&self) -> AwsConfig {
        AwsConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.parse().expect("a valid URL")),
        }
    }

    /// Clients for this server with the emulator's static credentials.
    pub async fn clients(&self) -> Clients {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .load()
            .await;
        Clients::from_sdk_config(sdk)
    }
}
