//! `prism webhooks secret`: the secret a principal's callbacks are signed with, as the metadata
//! writer signs them: derived per principal from the master secret (the local generated key, or
//! `PRISM__CALLBACK__SIGNING_SECRET`), or the one `[callback] principal_secrets` names.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;

fn secret(data_dir: &Path, principal: &str, env: &[(&str, &str)], config: Option<&Path>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prism"));
    cmd.args(["webhooks", "secret", "--principal", principal, "--data-dir"])
        .arg(data_dir)
        .env_remove("PRISM__CALLBACK__SIGNING_SECRET");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn each_principal_has_its_own_stable_secret() {
    let dir = tempfile::tempdir().unwrap();
    let dev = secret(dir.path(), "dev", &[], None);
    assert!(dev.starts_with("whsec_"), "{dev}");
    assert_eq!(dev, secret(dir.path(), "dev", &[], None), "stable");
    let alice = secret(dir.path(), "alice", &[], None);
    assert_ne!(dev, alice);
    // The same as the writer signs with (and, for dev, what `prism dev` writes to
    // DATA_DIR/webhook-secret).
    assert_eq!(
        alice,
        prism_metadata::principal_whsec(&prism_metadata::Config::default(), dir.path(), "alice")
            .unwrap()
    );

    // On AWS the master secret comes from the environment: another master, other secrets.
    let env = [(
        "PRISM__CALLBACK__SIGNING_SECRET",
        "a-master-secret-from-secrets-manager",
    )];
    let aws_alice = secret(dir.path(), "alice", &env, None);
    assert_ne!(aws_alice, alice);
    let master = shared::callback::webhook_key("a-master-secret-from-secrets-manager");
    assert_eq!(
        aws_alice,
        shared::callback::whsec(&shared::callback::principal_key(&master, "alice"))
    );

    // A secret configured for a principal replaces the derived one.
    let cfg = dir.path().join("metadata.toml");
    std::fs::write(
        &cfg,
        "[callback.principal_secrets]\ncarol = \"whsec_c2VjcmV0\"\n",
    )
    .unwrap();
    assert_eq!(
        secret(dir.path(), "carol", &[], Some(&cfg)),
        "whsec_c2VjcmV0"
    );
}
