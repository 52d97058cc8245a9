//! `prism rerender`: render existing files again with a new variant spec, through the real
//! resize worker.
//!
//! For each selected `done` file the command sends a [`RerenderMessage`] to the resize queue;
//! the worker renders from the kept original (or the upload while the uploads bucket holds it),
//! writes the variants under new keys (their tag names the spec), rewrites the manifest (the
//! metadata writer then records the new variants, so the batch view shows them) and writes
//! `rerender.json`, which this command polls. When every selected file of a batch has ended,
//! the batch's re-render is announced as a completion is (`batch.rerendered` on the topic and
//! a callback delivery when the batch has a callback URL): only this command knows which
//! files a re-render covers.
//!
//! Idempotent and resumable: a file whose manifest already names the spec is skipped without a
//! message (the worker skips a repeated message too), and a checkpoint file (`--state`) records
//! every file that ended and every batch announced, so a run killed half-way and started again
//! sends nothing twice and its counts add up to the whole selection.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use shared::keys;
use shared::manifest::{Manifest, parse_manifest};
use shared::port::{BlobStore, BlobStoreError, FileStatus};
use shared::rerender::{RerenderMessage, RerenderRecord, RerenderStatus, request_sha256};
use shared::variant::VariantRequest;
use time::OffsetDateTime;

use crate::ops::Ops;

/// The largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// The largest checkpoint file read.
const MAX_STATE_BYTES: u64 = 256 * 1024 * 1024;
/// The most files one run selects.
pub const MAX_FILES: usize = 1_000_000;

/// Which files to re-render.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Every file of these batches.
    pub batches: Vec<String>,
    /// These files, as `(batch_id, file_id)`.
    pub files: Vec<(String, String)>,
    /// Every file of the batches created in `[from, to)`, among the `max_batches` newest.
    pub created: Option<(OffsetDateTime, OffsetDateTime)>,
    /// How many recent batches a time range looks through.
    pub max_batches: usize,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The new spec.
    pub request: VariantRequest,
    /// The checkpoint file.
    pub state: PathBuf,
    /// Messages in flight at once.
    pub in_flight: usize,
    /// The longest wait for one file's outcome; a file past it is left for the next run.
    pub file_timeout: Duration,
    /// Pause between polls of the outcomes.
    pub poll: Duration,
    /// Select and count, send nothing.
    pub dry_run: bool,
}

/// What a re-render did, over every run that shared its checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// `done` files selected.
    pub selected: u64,
    /// Selected files that are not `done` (nothing to re-render).
    pub not_done: u64,
    /// Messages sent by this run.
    pub sent: u64,
    /// Files the worker rendered with the spec.
    pub rendered: u64,
    /// Files already rendered with the spec.
    pub already: u64,
    /// Files whose re-render failed (they keep their variants).
    pub failed: u64,
    /// Files still without an outcome (past `file_timeout`, or a dry run): run again.
    pub pending: u64,
    /// Batches whose re-render was announced.
    pub announced: u64,
}

/// How one file ended, as the checkpoint records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ended {
    Rendered,
    Already,
    Failed,
}

/// The checkpoint: what ended, per file, and which batches were announced.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    request_sha256: String,
    files: BTreeMap<String, Ended>,
    /// Files whose message was sent and whose outcome is not recorded yet: a resumed run
    /// waits for them rather than sending again.
    #[serde(default)]
    sent: BTreeMap<String, String>,
    announced: BTreeSet<String>,
}

impl State {
    fn load(path: &Path, sha: &str) -> anyhow::Result<Self> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    request_sha256: sha.to_owned(),
                    ..Self::default()
                });
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        anyhow::ensure!(
            meta.len() <= MAX_STATE_BYTES,
            "{} is larger than {MAX_STATE_BYTES} bytes",
            path.display()
        );
        let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let state: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a re-render checkpoint", path.display()))?;
        anyhow::ensure!(
            state.request_sha256 == sha,
            "{} belongs to another spec (sha256 {}); pass another --state",
            path.display(),
            state.request_sha256
        );
        Ok(state)
    }

    /// Write to a temporary file and rename it over the checkpoint, so a kill leaves the old
    /// or the new one, never half of one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
    }
}

fn file_key(batch: &str, file: &str) -> String {
    format!("{batch}/{file}")
}

/// Read `key` when it exists and is at most `limit` bytes.
async fn get_bounded(
    store: &dyn BlobStore,
    key: &str,
    limit: u64,
) -> anyhow::Result<Option<bytes::Bytes>> {
    match store.head(key).await {
        Ok(h) => anyhow::ensure!(h.size <= limit, "{key}: {} bytes exceed {limit}", h.size),
        Err(BlobStoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("head {key}")),
    }
    match store.get(key).await {
        Ok(b) => {
            anyhow::ensure!(b.len() as u64 <= limit, "{key}: over {limit} bytes");
            Ok(Some(b))
        }
        Err(BlobStoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("get {key}")),
    }
}

async fn manifest(ops: &Ops, batch: &str, file: &str) -> anyhow::Result<Option<Manifest>> {
    let key = keys::manifest_key(batch, file);
    Ok(
        match get_bounded(&*ops.media, &key, MAX_MANIFEST_BYTES).await? {
            Some(b) => Some(parse_manifest(&b).with_context(|| format!("read {key}"))?),
            None => None,
        },
    )
}

/// The outcome `rerender.json` records for the message with `nonce`, if any.
async fn outcome(
    ops: &Ops,
    batch: &str,
    file: &str,
    sha: &str,
    nonce: &str,
) -> anyhow::Result<Option<Ended>> {
    let key = shared::rerender::record_key(batch, file);
    let Some(bytes) =
        get_bounded(&*ops.media, &key, shared::rerender::MAX_BODY_BYTES as u64).await?
    else {
        return Ok(None);
    };
    let Ok(r) = RerenderRecord::parse(&bytes) else {
        return Ok(None);
    };
    if r.request_sha256 != sha || r.nonce.as_deref() != Some(nonce) {
        return Ok(None);
    }
    // Polled only for files whose manifest lacked the spec when this re-render sent their
    // message: an "already rendered" outcome means an earlier message of this re-render
    // rendered it.
    Ok(Some(match r.status {
        RerenderStatus::Rendered | RerenderStatus::AlreadyRendered => Ended::Rendered,
        RerenderStatus::Failed => Ended::Failed,
    }))
}

/// The files of the selection, by batch, with how many selected files were not `done`.
async fn select(
    ops: &Ops,
    sel: &Selection,
) -> anyhow::Result<(BTreeMap<String, Vec<String>>, u64)> {
    let mut wanted: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    for b in &sel.batches {
        anyhow::ensure!(keys::is_valid_id(b), "{b:?} is not a batch id");
        wanted.insert(b.clone(), None);
    }
    for (b, f) in &sel.files {
        anyhow::ensure!(
            keys::is_valid_id(b) && keys::is_valid_id(f),
            "{b}/{f} is not BATCH/FILE"
        );
        if let Some(files) = wanted
            .entry(b.clone())
            .or_insert_with(|| Some(BTreeSet::new()))
        {
            files.insert(f.clone());
        }
    }
    if let Some((from, to)) = sel.created {
        anyhow::ensure!(from < to, "--from must be before --to");
        for b in ops.metadata.recent_batches(sel.max_batches).await? {
            if b.created_at >= from && b.created_at < to {
                wanted.insert(b.batch_id, None);
            }
        }
    }
    let (mut out, mut not_done, mut total) = (BTreeMap::new(), 0_u64, 0_usize);
    for (batch, only) in wanted {
        let record = ops
            .metadata
            .get_batch(&batch)
            .await?
            .with_context(|| format!("no batch {batch}"))?;
        let (mut files, mut matched) = (Vec::new(), 0_usize);
        for f in record.files {
            if only.as_ref().is_some_and(|o| !o.contains(&f.file_id)) {
                continue;
            }
            matched += 1;
            if f.status == FileStatus::Done {
                files.push(f.file_id);
            } else {
                not_done += 1;
            }
        }
        if let Some(only) = &only {
            anyhow::ensure!(
                matched == only.len(),
                "batch {batch} lacks some of the files named"
            );
        }
        total += files.len();
        anyhow::ensure!(total <= MAX_FILES, "more than {MAX_FILES} files selected");
        out.insert(batch, files);
    }
    Ok((out, not_done))
}

/// Re-render the selection with `opts.request`; `progress` is called whenever a file ends.
///
/// # Errors
/// An unreadable checkpoint, an unknown batch, or a store or queue failure (what ended before
/// it is in the checkpoint: run again).
pub async fn run(
    ops: &Ops,
    sel: &Selection,
    opts: &Options,
    mut progress: impl FnMut(&Counts),
) -> anyhow::Result<Counts> {
    let request = opts.request.clone().normalise()?;
    let resize = ops
        .resize
        .as_ref()
        .context("no resize queue to send re-render messages to")?;
    let sha = request_sha256(&request);
    let mut state = State::load(&opts.state, &sha)?;
    let (batches, not_done) = select(ops, sel).await?;
    let mut counts = Counts {
        not_done,
        ..Counts::default()
    };
    let tally = |state: &State, counts: &mut Counts| {
        counts.rendered = 0;
        counts.already = 0;
        counts.failed = 0;
        for e in state.files.values() {
            match e {
                Ended::Rendered => counts.rendered += 1,
                Ended::Already => counts.already += 1,
                Ended::Failed => counts.failed += 1,
            }
        }
        counts.announced = state.announced.len() as u64;
    };
    // In flight: file key → (batch, file, the message's nonce, deadline).
    let mut flight: BTreeMap<String, (String, String, String, tokio::time::Instant)> =
        BTreeMap::new();
    let mut pending = 0_u64;
    let todo: Vec<(String, String)> = batches
        .iter()
        .flat_map(|(b, fs)| fs.iter().map(move |f| (b.clone(), f.clone())))
        .collect();
    counts.selected = todo.len() as u64;
    tally(&state, &mut counts);
    let todo: Vec<(String, String)> = todo
        .into_iter()
        .filter(|(b, f)| !state.files.contains_key(&file_key(b, f)))
        .collect();
    let mut next = todo.into_iter();
    loop {
        // Fill the window.
        while flight.len() < opts.in_flight.max(1) {
            let Some((batch, file)) = next.next() else {
                break;
            };
            let k = file_key(&batch, &file);
            let Some(m) = manifest(ops, &batch, &file).await? else {
                state.files.insert(k, Ended::Failed);
                state.save(&opts.state)?;
                tally(&state, &mut counts);
                progress(&counts);
                continue;
            };
            let deadline = tokio::time::Instant::now() + opts.file_timeout;
            if m.request_sha256.as_deref() == Some(sha.as_str()) {
                // Rendered with the spec: by a message of an earlier (killed) run of this
                // re-render, or before it.
                let e = if state.sent.remove(&k).is_some() {
                    Ended::Rendered
                } else {
                    Ended::Already
                };
                state.files.insert(k, e);
            } else if let Some(nonce) = state.sent.get(&k) {
                // A killed run's message may still be queued: wait for it, send nothing.
                let nonce = nonce.clone();
                flight.insert(k, (batch, file, nonce, deadline));
                continue;
            } else if opts.dry_run {
                pending += 1;
                continue;
            } else {
                let nonce = uuid::Uuid::new_v4().simple().to_string();
                let msg = RerenderMessage {
                    nonce: Some(nonce.clone()),
                    ..RerenderMessage::new(&batch, &file, &request)?
                };
                resize.send(&msg.to_body()).await?;
                counts.sent += 1;
                state.sent.insert(k.clone(), nonce.clone());
                state.save(&opts.state)?;
                flight.insert(k, (batch, file, nonce, deadline));
                continue;
            }
            state.save(&opts.state)?;
            tally(&state, &mut counts);
            progress(&counts);
        }
        if flight.is_empty() {
            break;
        }
        tokio::time::sleep(opts.poll).await;
        let mut ended = Vec::new();
        for (k, (batch, file, nonce, deadline)) in &flight {
            if let Some(e) = outcome(ops, batch, file, &sha, nonce).await? {
                ended.push((k.clone(), Some(e)));
            } else if tokio::time::Instant::now() >= *deadline {
                ended.push((k.clone(), None));
            }
        }
        for (k, e) in ended {
            flight.remove(&k);
            state.sent.remove(&k);
            match e {
                Some(e) => {
                    state.files.insert(k, e);
                }
                None => {
                    tracing::warn!(file = %k, "No outcome within the file timeout; left for the next run.");
                    pending += 1;
                }
            }
            state.save(&opts.state)?;
            tally(&state, &mut counts);
            progress(&counts);
        }
    }
    // Announce each batch whose selected files have all ended.
    for (batch, files) in &batches {
        if state.announced.contains(batch) || opts.dry_run {
            continue;
        }
        let ended: Vec<Ended> = files
            .iter()
            .filter_map(|f| state.files.get(&file_key(batch, f)).copied())
            .collect();
        if ended.len() != files.len() {
            continue;
        }
        let n = |e: Ended| ended.iter().filter(|x| **x == e).count();
        let batch_counts = serde_json::json!({
            "files": files.len(),
            "rendered": n(Ended::Rendered),
            "already": n(Ended::Already),
            "failed": n(Ended::Failed),
        });
        let announcer =
            prism_metadata::handler::Announcer::new(ops.metadata.clone(), ops.topic.clone());
        announcer
            .announce_rerender(batch, &sha, &batch_counts)
            .await
            .map_err(|e| anyhow::anyhow!("announcing batch {batch}: {e}"))?;
        state.announced.insert(batch.clone());
        state.save(&opts.state)?;
    }
    tally(&state, &mut counts);
    counts.pending = pending;
    progress(&counts);
    Ok(counts)
}

/// The default checkpoint path for a spec: `prism-rerender-{first 12 hex of its hash}.json`.
pub fn default_state(request: &VariantRequest) -> anyhow::Result<PathBuf> {
    let sha = request_sha256(&request.clone().normalise()?);
    Ok(PathBuf::from(format!("prism-rerender-{}.json", &sha[..12])))
}
