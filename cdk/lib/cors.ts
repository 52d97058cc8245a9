/**
 * CORS for browser uploads, derived from the one `allowedOrigins` context list so the uploads
 * bucket, the media bucket and the API can never disagree about which pages may call them.
 *
 * The header names mirror the Rust side: the API's upload instructions name `content-type` and
 * `x-amz-meta-{shared::variant::META_*}` (test/cors.test.ts reads them from the Rust source).
 */
import * as s3 from 'aws-cdk-lib/aws-s3';

/** The `x-amz-meta-*` headers a presigned PUT of prism carries. */
export const UPLOAD_METADATA_HEADERS = [
  'x-amz-meta-prism-request',
  'x-amz-meta-prism-batch-id',
  'x-amz-meta-prism-file-id',
  'x-amz-meta-prism-file-name',
  'x-amz-meta-prism-traceparent',
  'x-amz-meta-prism-focal-point',
];

/** Request headers a browser sends to the uploads bucket: exactly those of the instructions. */
export const UPLOAD_ALLOWED_HEADERS = ['content-type', ...UPLOAD_METADATA_HEADERS];

/** Response headers a page must read: the ETag (Uppy waits for it) and a POST's Location. */
export const UPLOAD_EXPOSED_HEADERS = ['ETag', 'Location'];

/** How long browsers may cache a preflight (seconds). */
export const CORS_MAX_AGE_SECONDS = 3000;

/** The uploads bucket's rule: presigned POST forms and presigned PUTs from `origins`. */
export function uploadsCorsRules(origins: string[]): s3.CorsRule[] | undefined {
  if (origins.length === 0) return undefined;
  return [
    {
      id: 'browser-uploads',
      allowedOrigins: origins,
      allowedMethods: [s3.HttpMethods.POST, s3.HttpMethods.PUT],
      allowedHeaders: UPLOAD_ALLOWED_HEADERS,
      exposedHeaders: UPLOAD_EXPOSED_HEADERS,
      maxAge: CORS_MAX_AGE_SECONDS,
    },
  ];
}

/** The media bucket's rule: presigned GETs of variants from `origins` (e.g. into a canvas). */
export function mediaCorsRules(origins: string[]): s3.CorsRule[] | undefined {
  if (origins.length === 0) return undefined;
  return [
    {
      id: 'browser-downloads',
      allowedOrigins: origins,
      allowedMethods: [s3.HttpMethods.GET],
      maxAge: CORS_MAX_AGE_SECONDS,
    },
  ];
}

/** The API's `[http] cors_allowed_origins` as its container environment (none: no CORS). */
export function apiCorsEnvironment(origins: string[]): Record<string, string> {
  return origins.length === 0 ? {} : { PRISM__HTTP__CORS_ALLOWED_ORIGINS: origins.join(',') };
}
