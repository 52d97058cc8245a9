// Settings every scenario shares, from the environment (k6 `-e KEY=VALUE` or the process env).
//
//   BASE_URL  the API, e.g. http://127.0.0.1:8080 (`prism dev`) or the deployed API's URL
//   TOKEN     a bearer token (`prism dev` writes its own to prism-data/dev-token)
//   FILES     files per batch (default 2)
//   WIDTHS    variant widths, comma-separated (default 160,320)
//   FORMATS   variant formats, comma-separated (default webp,avif)
//   WAIT_SECS longest long-poll per request (default 30)
//   SUMMARY   where handleSummary writes its JSON (default summary-<scenario>.json)

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const TOKEN = __ENV.TOKEN || '';
export const FILES_PER_BATCH = parseInt(__ENV.FILES || '2', 10);
export const WIDTHS = (__ENV.WIDTHS || '160,320').split(',').map((w) => parseInt(w, 10));
export const FORMATS = (__ENV.FORMATS || 'webp,avif').split(',');
export const WAIT_SECS = parseInt(__ENV.WAIT_SECS || '30', 10);

// The test images shipped beside the scripts (small, so the load is on the pipeline's
// per-message path rather than on one codec). Read once in the init context; `open` resolves
// paths from this module.
export const IMAGES = [
  { name: 'photo-640x480.jpg', type: 'image/jpeg', bytes: open('../images/photo-640x480.jpg', 'b') },
  { name: 'portrait-480x640.jpg', type: 'image/jpeg', bytes: open('../images/portrait-480x640.jpg', 'b') },
  { name: 'square-320.png', type: 'image/png', bytes: open('../images/square-320.png', 'b') },
];

// Thresholds every scenario applies; smoke makes them abort the run at the first breach.
//  - no failed requests (up to 1% under stress/spike, where the rate limiter may answer 429),
//  - the API's own calls (create, batch read without waiting) p95 under 500 ms,
//  - upload-to-complete p95 under 10 s (the images are small: a healthy stack takes ~1 s).
export function thresholds({ failedRate = 0, abortOnFail = false } = {}) {
  const t = (expr) => [{ threshold: expr, abortOnFail }];
  return {
    http_req_failed: t(`rate<=${failedRate}`),
    'http_req_duration{kind:api}': t('p(95)<500'),
    'http_req_duration{kind:upload}': t('p(95)<1000'),
    prism_upload_to_complete: t('p(95)<10000'),
    prism_files_failed: t('count<1'),
    prism_batches_incomplete: t('count<1'),
    checks: t('rate>0.99'),
  };
}
