/** Context parsing: defaults, CLI-style strings, and rejection of malformed values. */
import { loadConfig } from '../lib/config';
import { cdkJsonContext } from './helpers';

/** Plain HTTP allowed unless a test says otherwise: most tests are about other keys. */
const from = (ctx: Record<string, unknown>) => loadConfig((k) => ({ allowInsecureHttp: true, ...ctx })[k]);

test('HTTPS is required: no certificate and no explicit opt-out fails the synth', () => {
  expect(() => loadConfig((k) => cdkJsonContext()[k])).toThrow(/certificateArn.*allowInsecureHttp=true/);
  expect(() => loadConfig(() => undefined)).toThrow(/HTTPS/);
  const cert = 'arn:aws:acm:us-east-1:111111111111:certificate/abc';
  const withCert = loadConfig((k) => ({ ...cdkJsonContext(), certificateArn: cert })[k]);
  expect([withCert.certificateArn, withCert.allowInsecureHttp]).toEqual([cert, false]);
  const optedOut = loadConfig((k) => ({ ...cdkJsonContext(), allowInsecureHttp: 'true' })[k]);
  expect([optedOut.certificateArn, optedOut.allowInsecureHttp]).toEqual([undefined, true]);
});

test('cdk.json defaults', () => {
  const c = from({ ...cdkJsonContext(), allowInsecureHttp: true });
  expect(c).toEqual(
    expect.objectContaining({
      region: 'us-east-1',
      allowedOrigins: [],
      natGateways: 0,
      api: { min: 1, max: 4 },
      resize: { min: 0, max: 10 },
      archiver: { min: 0, max: 2 },
      metadata: { min: 1, max: 4 },
      workerSpot: true,
      stage: '',
      ephemeral: false,
      cpuArchitecture: 'amd64',
    }),
  );
  expect(c.certificateArn).toBeUndefined();
  expect(c.alarmEmail).toBeUndefined();
  expect(c.apiTokenSecretArn).toBeUndefined();
  expect(c.callbackSecretArn).toBeUndefined();
});

test('secret ARNs are taken when complete', () => {
  const api = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:prism/tokens-AbC123';
  const callback = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:prism_callback.key-xYz789';
  const c = from({ apiTokenSecretArn: api, callbackSecretArn: ` ${callback} ` });
  expect([c.apiTokenSecretArn, c.callbackSecretArn]).toEqual([api, callback]);
});

test('otlpEndpoint is optional and taken as given', () => {
  expect(from({}).otlpEndpoint).toBeUndefined();
  expect(from({ otlpEndpoint: ' http://collector.internal:4318 ' }).otlpEndpoint).toBe('http://collector.internal:4318');
});

test('`-c` values arrive as strings: comma lists, numbers, booleans', () => {
  const c = from({ allowedOrigins: 'https://a.example, http://localhost:3000', resizeMaxTasks: '20', workerSpot: 'false', natGateways: '1' });
  expect(c.allowedOrigins).toEqual(['https://a.example', 'http://localhost:3000']);
  expect(c.resize.max).toBe(20);
  expect(c.workerSpot).toBe(false);
  expect(c.natGateways).toBe(1);
});

test.each([
  [{ allowedOrigins: ['https://a.example/path'] }, /scheme:\/\/host/],
  [{ resizeMaxTasks: 'ten' }, /non-negative integer/],
  [{ resizeMinTasks: 5, resizeMaxTasks: 2 }, /must be >= 1 and >= resizeMinTasks/],
  [{ workerSpot: 'yes' }, /true or false/],
  [{ otlpEndpoint: 'collector:4318' }, /otlpEndpoint must be an http\(s\) URL/],
  [{ apiDesiredCount: 5, apiMaxCount: 2 }, /apiMaxCount/],
  // Partial ARN (no -XXXXXX suffix): the grant would not match the secret, tasks would fail to start.
  [{ callbackSecretArn: 'arn:aws:secretsmanager:us-east-1:111111111111:secret:prism-callback-key' }, /callbackSecretArn.*complete ARN/],
  [{ apiTokenSecretArn: 'prism-tokens' }, /apiTokenSecretArn.*complete ARN/],
  [{ callbackSecretArn: 'arn:aws:ssm:us-east-1:111111111111:parameter/prism-callback-key-AbCdEf' }, /complete ARN/],
])('rejects %j', (ctx, message) => {
  expect(() => from(ctx)).toThrow(message);
});
