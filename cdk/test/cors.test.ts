/**
 * One `allowedOrigins` list drives every CORS answer of a deployment: the uploads bucket (POST
 * and PUT with exactly the headers prism's instructions name), the media bucket (GET) and the
 * API (`[http] cors_allowed_origins` through its container environment), so a page granted by
 * one is granted by all.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CfnElement, Stack } from 'aws-cdk-lib';
import { loadConfig } from '../lib/config';
import { UPLOAD_ALLOWED_HEADERS, UPLOAD_METADATA_HEADERS } from '../lib/cors';
import { logicalId, REPO_ROOT, synthPrism, Synthesized } from './helpers';
import { configKeys } from './rust-source';

const ORIGINS = ['https://app.example.com', 'http://localhost:5173'];

let s: Synthesized;
let bare: Synthesized;
beforeAll(() => {
  s = synthPrism({ allowedOrigins: ORIGINS });
  bare = synthPrism();
});

function corsRules(syn: Synthesized, prefix: string): Record<string, unknown>[] | undefined {
  const id = logicalId(syn.stateful_, 'AWS::S3::Bucket', prefix);
  return syn.stateful_.toJSON().Resources[id].Properties.CorsConfiguration?.CorsRules;
}

function apiEnv(syn: Synthesized): Record<string, unknown> {
  const task = syn.compute.api.node.findChild('Task').node.defaultChild as CfnElement;
  const def = syn.compute_.toJSON().Resources[Stack.of(task).getLogicalId(task)].Properties;
  return Object.fromEntries(
    (def.ContainerDefinitions[0].Environment as { Name: string; Value: unknown }[]).map((e) => [e.Name, e.Value]),
  );
}

test('the uploads bucket allows POST and PUT with exactly the instructions\' headers, exposing ETag and Location', () => {
  expect(corsRules(s, 'UploadsBucket')).toEqual([
    {
      Id: 'browser-uploads',
      AllowedOrigins: ORIGINS,
      AllowedMethods: ['POST', 'PUT'],
      AllowedHeaders: ['content-type', ...UPLOAD_METADATA_HEADERS],
      ExposedHeaders: ['ETag', 'Location'],
      MaxAge: 3000,
    },
  ]);
});

test('the media bucket allows GET from the same origins', () => {
  expect(corsRules(s, 'MediaBucket')).toEqual([
    { Id: 'browser-downloads', AllowedOrigins: ORIGINS, AllowedMethods: ['GET'], MaxAge: 3000 },
  ]);
  expect(corsRules(s, 'ArchiveBucket')).toBeUndefined();
});

test('the API gets the same origins as [http] cors_allowed_origins, a key its config knows', () => {
  const env = apiEnv(s);
  expect(env.PRISM__HTTP__CORS_ALLOWED_ORIGINS).toBe(ORIGINS.join(','));
  const bucketOrigins = corsRules(s, 'UploadsBucket')?.[0].AllowedOrigins;
  expect(String(env.PRISM__HTTP__CORS_ALLOWED_ORIGINS).split(',')).toEqual(bucketOrigins);
  expect(configKeys('prism-api').has('PRISM__HTTP__CORS_ALLOWED_ORIGINS')).toBe(true);
  // The binary splits the variable into a list (else one "a,b" origin would match nothing).
  const rustConfig = fs.readFileSync(path.join(REPO_ROOT, 'shared/src/config.rs'), 'utf8');
  expect(rustConfig).toContain('.with_list_parse_key("http.cors_allowed_origins")');
  // Only the API answers browsers.
  for (const w of [s.compute.resize, s.compute.archiver, s.compute.metadata]) {
    const task = w.node.findChild('Task').node.defaultChild as CfnElement;
    const def = s.compute_.toJSON().Resources[Stack.of(task).getLogicalId(task)].Properties;
    const names = (def.ContainerDefinitions[0].Environment as { Name: string }[]).map((e) => e.Name);
    expect(names).not.toContain('PRISM__HTTP__CORS_ALLOWED_ORIGINS');
  }
});

test('without origins nothing answers CORS: no bucket rule, no API variable', () => {
  for (const b of ['UploadsBucket', 'MediaBucket', 'ArchiveBucket']) expect(corsRules(bare, b)).toBeUndefined();
  expect(apiEnv(bare).PRISM__HTTP__CORS_ALLOWED_ORIGINS).toBeUndefined();
});

test('the metadata headers are x-amz-meta- plus every META_* key of the Rust side', () => {
  const variant = fs.readFileSync(path.join(REPO_ROOT, 'shared/src/variant.rs'), 'utf8');
  const keys = [...variant.matchAll(/pub const META_\w+: &str = "([^"]+)";/g)].map((m) => `x-amz-meta-${m[1]}`);
  expect(keys.length).toBeGreaterThan(0);
  expect([...UPLOAD_METADATA_HEADERS].sort()).toEqual(keys.sort());
  expect(UPLOAD_ALLOWED_HEADERS).toEqual(['content-type', ...UPLOAD_METADATA_HEADERS]);
  // And the API's upload policy names the same ones (workers/api/src/cors.rs).
  const apiCors = fs.readFileSync(path.join(REPO_ROOT, 'workers/api/src/cors.rs'), 'utf8');
  for (const m of ['META_REQUEST', 'META_BATCH_ID', 'META_FILE_ID', 'META_FILE_NAME', 'META_TRACEPARENT', 'META_FOCAL_POINT']) {
    expect(apiCors).toContain(m);
  }
});

test.each(['*', 'https://App.example.com', 'https://app.example.com/', 'app.example.com'])(
  'allowedOrigins refuses %s, which the API would refuse too',
  (origin) => {
    expect(() => loadConfig((k) => (k === 'allowedOrigins' ? [origin] : undefined))).toThrow(/scheme:\/\/host/);
  },
);
