/**
 * The SNS message-body filter policies, exercised against the messages that cross the events
 * topic. `matches` implements the subset of SNS filter semantics the policies use (exact strings,
 * `prefix`, `suffix`, nested keys, arrays matching when any element matches, `$or`), so a policy
 * typo shows up here as a routed-to-the-wrong-queue failure rather than in production.
 */
import { metadataFilterPolicy, resizeFilterPolicy } from '../lib/event-filters';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every value at `path` in `body`, descending through arrays (SNS flattens arrays of objects). */
function valuesAt(body: Json, path: string[]): Json[] {
  if (Array.isArray(body)) return body.flatMap((el) => valuesAt(el, path));
  if (path.length === 0) return [body];
  if (body === null || typeof body !== 'object') return [];
  const next = (body as Record<string, Json>)[path[0]];
  return next === undefined ? [] : valuesAt(next, path.slice(1));
}

function conditionMatches(condition: unknown, value: Json): boolean {
  if (typeof condition === 'string') return value === condition;
  const c = condition as Record<string, string>;
  if (typeof value !== 'string') return false;
  if ('prefix' in c) return value.startsWith(c.prefix);
  if ('suffix' in c) return value.endsWith(c.suffix);
  throw new Error(`unsupported condition ${JSON.stringify(condition)}`);
}

function matches(policy: Record<string, unknown>, body: Json, path: string[] = []): boolean {
  return Object.entries(policy).every(([key, rule]) => {
    if (key === '$or') return (rule as Record<string, unknown>[]).some((branch) => matches(branch, body, path));
    const here = [...path, key];
    if (Array.isArray(rule)) return valuesAt(body, here).some((v) => rule.some((c) => conditionMatches(c, v)));
    return matches(rule as Record<string, unknown>, body, here);
  });
}

const UPLOADS = 'prismstateful-uploadsbucket-abc';
const MEDIA = 'prismstateful-mediabucket-def';

const s3Event = (bucket: string, key: string, eventName = 'ObjectCreated:Put'): Json => ({
  Records: [
    {
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-east-1',
      eventTime: '2026-11-23T20:02:52.718Z',
      eventName,
      s3: { s3SchemaVersion: '1.0', bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` }, object: { key, size: 1024, eTag: 'abc' } },
    },
  ],
});
const testEvent: Json = { Service: 'Amazon S3', Event: 's3:TestEvent', Time: '2026-11-23T20:00:00.000Z', Bucket: UPLOADS };
const clientEvent = (name: string): Json => ({ schema_version: 1, event_name: name, batch_id: 'b1', file_id: 'f1' });

const resize = resizeFilterPolicy(UPLOADS);
const metadata = metadataFilterPolicy(UPLOADS, MEDIA, ['IMAGE_REQUESTED']);

describe('resize subscription', () => {
  test.each(['ObjectCreated:Put', 'ObjectCreated:Post', 'ObjectCreated:CompleteMultipartUpload', 'ObjectCreated:Copy'])(
    'takes uploads %s',
    (eventName) => {
      expect(matches(resize, s3Event(UPLOADS, 'uploads/b1/f1', eventName))).toBe(true);
    },
  );

  test('ignores media records (its own output), removals, S3 test events and client events', () => {
    expect(matches(resize, s3Event(MEDIA, 'media/b1/f1/manifest.json'))).toBe(false);
    expect(matches(resize, s3Event(UPLOADS, 'uploads/b1/f1', 'ObjectRemoved:Delete'))).toBe(false);
    expect(matches(resize, testEvent)).toBe(false);
    expect(matches(resize, clientEvent('IMAGE_REQUESTED'))).toBe(false);
  });
});

describe('metadata subscription', () => {
  test('takes uploads (file status), manifests and failure records, and IMAGE_REQUESTED', () => {
    expect(matches(metadata, s3Event(UPLOADS, 'uploads/b1/f1', 'ObjectCreated:Post'))).toBe(true);
    expect(matches(metadata, s3Event(MEDIA, 'media/b1/f1/manifest.json'))).toBe(true);
    expect(matches(metadata, s3Event(MEDIA, 'media/b1/f1/failure.json'))).toBe(true);
    expect(matches(metadata, clientEvent('IMAGE_REQUESTED'))).toBe(true);
  });

  test('ignores variants and originals copied to media, other client events, test events', () => {
    expect(matches(metadata, s3Event(MEDIA, 'media/b1/f1/640w.webp'))).toBe(false);
    expect(matches(metadata, s3Event(MEDIA, 'media/b1/f1/original'))).toBe(false);
    expect(matches(metadata, clientEvent('batch.completed'))).toBe(false);
    expect(matches(metadata, testEvent)).toBe(false);
  });

  test('a manifest-named key in the uploads bucket is just an upload, not a result', () => {
    // Routed by the uploads branch; the media branch requires the media bucket.
    const policyWithoutUploads = metadataFilterPolicy('some-other-bucket', MEDIA, []);
    expect(matches(policyWithoutUploads, s3Event(UPLOADS, 'uploads/b1/manifest.json'))).toBe(false);
  });

  test('stays within SNS limits: at most 5 leaf keys', () => {
    const leafKeys = new Set<string>();
    const walk = (p: Record<string, unknown>, path: string[]) => {
      for (const [k, v] of Object.entries(p)) {
        if (k === '$or') (v as Record<string, unknown>[]).forEach((b) => walk(b, path));
        else if (Array.isArray(v)) leafKeys.add([...path, k].join('.'));
        else walk(v as Record<string, unknown>, [...path, k]);
      }
    };
    walk(metadata, []);
    expect(leafKeys.size).toBeLessThanOrEqual(5);
  });
});
