// One producer's journey, the iteration of every scenario: create a batch of FILES images,
// upload each through its presigned instruction, long-poll until the batch is complete, and
// record upload-to-complete latency (first upload byte sent → complete batch read).
import { check, fail } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { createBatch, upload, waitComplete } from './api.js';
import { FILES_PER_BATCH, IMAGES } from './config.js';

export const uploadToComplete = new Trend('prism_upload_to_complete', true);
export const filesDone = new Counter('prism_files_done');
export const filesFailed = new Counter('prism_files_failed');
export const batchesIncomplete = new Counter('prism_batches_incomplete');

// Longest a batch may take before the iteration counts it incomplete.
const COMPLETE_WITHIN_MS = 60_000;

export function batchJourney() {
  const n = exec.scenario.iterationInTest;
  const files = Array.from({ length: FILES_PER_BATCH }, (_, i) => IMAGES[(n + i) % IMAGES.length]);
  const batch = createBatch(files);
  if (!batch) return;
  const start = Date.now();
  for (let i = 0; i < files.length; i++) {
    if (!upload(batch.uploads[i], files[i])) return;
  }
  const done = waitComplete(batch.batch_id, start + COMPLETE_WITHIN_MS);
  const complete = done !== null && done.status === 'complete';
  if (!check(done, { 'batch complete': () => complete })) {
    batchesIncomplete.add(1);
    return;
  }
  uploadToComplete.add(Date.now() - start);
  batchesIncomplete.add(0);
  const failed = done.files.filter((f) => f.status !== 'done');
  filesDone.add(done.files.length - failed.length);
  filesFailed.add(failed.length);
  if (failed.length) fail(`batch ${batch.batch_id}: ${JSON.stringify(failed.map((f) => f.error))}`);
}
