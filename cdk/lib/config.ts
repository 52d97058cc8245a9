/**
 * Deployment configuration: the only place that turns CDK context values (`cdk.json` or
 * `cdk deploy -c key=value`) into typed props. `bin/app.ts` calls {@link loadConfig}; stacks and
 * constructs receive plain props and never read context or the process environment themselves.
 */

/** Task count bounds for one auto-scaled service. */
export interface TaskBounds {
  /** Lowest task count; 0 lets a queue worker scale to zero when idle. */
  readonly min: number;
  /** Highest task count. */
  readonly max: number;
}

/** CPU architecture of the Fargate tasks and of the one image they all run. */
export type CpuArch = 'amd64' | 'arm64';

/** Everything an operator may change per deployment. */
export interface PrismConfig {
  /**
   * Deployment stage (`-c stage=dev`): lower-case letters, digits and hyphens, starting with a
   * letter, at most 16 characters. Empty (the default) keeps the stack names `PrismStateful` and
   * `PrismCompute`; a stage names them `Prism-<stage>-Stateful` and `Prism-<stage>-Compute`, so
   * several deployments share one account and region. CloudFormation derives every generated
   * resource name (buckets, queues, table, log groups, services) from the stack name, so those
   * carry the stage too; every resource is tagged `prism:stage`, and the EMF metrics go to the
   * namespace `prism/<stage>` (`prism` without a stage).
   */
  readonly stage: string;
  /**
   * A trial deployment (`-c ephemeral=true`) that `cdk destroy` removes completely: every
   * resource DESTROY instead of RETAIN, buckets emptied on delete (autoDeleteObjects), no table
   * deletion protection, no stack termination protection. Default false: production-safe
   * (stateful resources and logs are retained when a stack is deleted).
   */
  readonly ephemeral: boolean;
  /**
   * `amd64` (default) or `arm64` (Graviton: about 20% cheaper per vCPU-hour on Fargate). Sets the
   * task definitions' runtimePlatform and the platform the one image is built for. amd64 stays
   * the default because it builds natively on the usual x86 CI runners and laptops (an arm64
   * image built there runs the Rust build under emulation) and because Fargate Spot, which the
   * queue workers use by default, runs x86_64 tasks only.
   */
  readonly cpuArchitecture: CpuArch;
  /** Region the stacks deploy to (resolved, so ALB access logging can pick the ELB account). */
  readonly region: string;
  /** Browser origins allowed to POST/PUT straight to the uploads bucket. Empty: no CORS rule. */
  readonly allowedOrigins: string[];
  /** ACM certificate for the API's HTTPS listener; required unless `allowInsecureHttp`. */
  readonly certificateArn?: string;
  /**
   * Without a certificate, serve the API on plain HTTP (port 80). Only for a throwaway test stack:
   * bearer tokens would cross the network in clear. Must be set explicitly.
   */
  readonly allowInsecureHttp: boolean;
  /** Address subscribed (by email) to the alarm topic. */
  readonly alarmEmail?: string;
  /**
   * Existing Secrets Manager secret holding the API token hashes. Without it the stateful stack
   * creates one whose initial value matches no token (deny-all until an operator sets it).
   */
  readonly apiTokenSecretArn?: string;
  /**
   * Existing Secrets Manager secret holding the master key of prism-metadata's completion
   * callbacks (Standard Webhooks; each principal's key derives from it). Without it the stateful
   * stack generates one.
   */
  readonly callbackSecretArn?: string;
  /**
   * OTLP/HTTP collector every binary exports its spans to (e.g. an ADOT collector sidecar or a
   * reachable collector service). Without it no spans are exported (logs still carry trace ids).
   */
  readonly otlpEndpoint?: string;
  /** 0: public subnets, no NAT (default, cheapest). 1+: private subnets behind that many NATs. */
  readonly natGateways: number;
  /** API task bounds; `min` is also the desired count at deploy. */
  readonly api: TaskBounds;
  /** Queue worker task bounds. */
  readonly resize: TaskBounds;
  readonly archiver: TaskBounds;
  readonly metadata: TaskBounds;
  /** Run queue workers on Fargate Spot (they are at-least-once consumers and drain on SIGTERM). */
  readonly workerSpot: boolean;
  /**
   * Put a CloudFront distribution in front of the media bucket (Origin Access Control, the bucket
   * stays private) and hand out stable `https://<distribution>/<key>` variant URLs instead of
   * presigned GETs (the API's `media_base_url`).
   */
  readonly cdn: boolean;
}

/** `PrismStateful` / `PrismCompute` without a stage, `Prism-<stage>-Stateful` / `-Compute` with one. */
export function stackNames(stage: string): { stateful: string; compute: string } {
  return stage === ''
    ? { stateful: 'PrismStateful', compute: 'PrismCompute' }
    : { stateful: `Prism-${stage}-Stateful`, compute: `Prism-${stage}-Compute` };
}

/** The CloudWatch namespace of the binaries' EMF metrics: `prism`, or `prism/<stage>`. */
export function metricsNamespace(stage: string): string {
  return stage === '' ? 'prism' : `prism/${stage}`;
}

/** Reads one context value; `app.node.tryGetContext` in the app, a map lookup in tests. */
export type ContextGetter = (key: string) => unknown;

function str(get: ContextGetter, key: string): string | undefined {
  const v = get(key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new Error(`context '${key}' must be a string, got ${JSON.stringify(v)}`);
  const t = v.trim();
  return t === '' ? undefined : t;
}

function int(get: ContextGetter, key: string, fallback: number): number {
  const v = get(key);
  if (v === undefined || v === null || v === '') return fallback;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`context '${key}' must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

function bool(get: ContextGetter, key: string, fallback: boolean): boolean {
  const v = get(key);
  if (v === undefined || v === null || v === '') return fallback;
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new Error(`context '${key}' must be true or false, got ${JSON.stringify(v)}`);
}

/**
 * A complete Secrets Manager ARN (with the 6-character suffix Secrets Manager appends to the name).
 * A partial ARN would synthesize, but the execution role's grant names the complete ARN only, so
 * every task would then fail at start with AccessDenied while fetching the secret.
 */
function secretArn(get: ContextGetter, key: string): string | undefined {
  const v = str(get, key);
  if (v !== undefined && !/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$/.test(v)) {
    throw new Error(`context '${key}' must be the complete ARN of a Secrets Manager secret (ending in -XXXXXX), got '${v}'`);
  }
  return v;
}

/** Accepts a JSON array (cdk.json) or a comma-separated string (`-c allowedOrigins=a,b`). */
function list(get: ContextGetter, key: string): string[] {
  const v = get(key);
  if (v === undefined || v === null || v === '') return [];
  const items = Array.isArray(v) ? v : String(v).split(',');
  return items.map((s) => String(s).trim()).filter((s) => s !== '');
}

function bounds(get: ContextGetter, name: string, min: number, max: number): TaskBounds {
  const b = { min: int(get, `${name}MinTasks`, min), max: int(get, `${name}MaxTasks`, max) };
  if (b.max < 1 || b.max < b.min) throw new Error(`context ${name}MaxTasks (${b.max}) must be >= 1 and >= ${name}MinTasks (${b.min})`);
  return b;
}

/**
 * Builds the configuration from context, with the defaults documented in `cdk/README.md`.
 *
 * Throws on malformed values so a typo fails `cdk synth` instead of deploying something else.
 */
export function loadConfig(get: ContextGetter): PrismConfig {
  for (const origin of list(get, 'allowedOrigins')) {
    // Exactly as browsers send `Origin` (lower-case host, no path, no wildcard): the API
    // (`[http] cors_allowed_origins`) refuses anything else and would not start.
    if (!/^https?:\/\/([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$/.test(origin)) {
      throw new Error(`allowedOrigins entry '${origin}' must be scheme://host[:port] with no path, wildcard or upper case`);
    }
  }
  const otlpEndpoint = str(get, 'otlpEndpoint');
  if (otlpEndpoint !== undefined && !/^https?:\/\/[^/\s]+(\/[^\s]*)?$/.test(otlpEndpoint)) {
    throw new Error(`otlpEndpoint must be an http(s) URL, got '${otlpEndpoint}'`);
  }
  const certificateArn = str(get, 'certificateArn');
  const allowInsecureHttp = bool(get, 'allowInsecureHttp', false);
  if (certificateArn === undefined && !allowInsecureHttp) {
    throw new Error(
      'the API needs HTTPS: set certificateArn (an ACM certificate in the region), or -c allowInsecureHttp=true for a throwaway test stack',
    );
  }
  const stage = str(get, 'stage') ?? '';
  if (stage !== '' && !/^[a-z][a-z0-9-]{0,15}$/.test(stage)) {
    throw new Error(`context 'stage' must be 1 to 16 lower-case letters, digits or hyphens starting with a letter, got '${stage}'`);
  }
  const arch = str(get, 'cpuArchitecture') ?? 'amd64';
  if (arch !== 'amd64' && arch !== 'arm64') throw new Error(`context 'cpuArchitecture' must be amd64 or arm64, got '${arch}'`);
  const workerSpot = bool(get, 'workerSpot', arch === 'amd64');
  if (workerSpot && arch === 'arm64') {
    throw new Error('workerSpot=true needs cpuArchitecture=amd64: Fargate Spot runs x86_64 tasks only');
  }
  const apiMin = int(get, 'apiDesiredCount', 1);
  const api = { min: Math.max(1, apiMin), max: int(get, 'apiMaxCount', 4) };
  if (api.max < api.min) throw new Error(`apiMaxCount (${api.max}) must be >= apiDesiredCount (${api.min})`);
  return {
    stage,
    ephemeral: bool(get, 'ephemeral', false),
    cpuArchitecture: arch,
    region: str(get, 'region') ?? 'us-east-1',
    allowedOrigins: list(get, 'allowedOrigins'),
    certificateArn,
    allowInsecureHttp,
    alarmEmail: str(get, 'alarmEmail'),
    apiTokenSecretArn: secretArn(get, 'apiTokenSecretArn'),
    callbackSecretArn: secretArn(get, 'callbackSecretArn'),
    otlpEndpoint,
    natGateways: int(get, 'natGateways', 0),
    api,
    resize: bounds(get, 'resize', 0, 10),
    archiver: bounds(get, 'archiver', 0, 2),
    metadata: bounds(get, 'metadata', 1, 4),
    workerSpot,
    cdn: bool(get, 'cdn', false),
  };
}
