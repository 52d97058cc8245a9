/**
 * The optional media CDN (`-c cdn=true`): a CloudFront distribution in front of the private media
 * bucket through Origin Access Control, a cache policy that honours the objects' Cache-Control,
 * HTTPS only, compression, HTTP/2+3, and its `https://` domain as the API's media_base_url.
 * Without the flag nothing of it is synthesized.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { logicalId, synthPrism, Synthesized } from './helpers';
import { configKeys } from './rust-source';

let off: Synthesized;
let on: Synthesized;
beforeAll(() => {
  off = synthPrism();
  on = synthPrism({ cdn: true });
});

const taskEnv = (t: Template, prefix: string): Record<string, unknown> => {
  const entry = Object.entries(t.findResources('AWS::ECS::TaskDefinition')).find(([id]) => id.startsWith(`${prefix}Task`));
  if (!entry) throw new Error(`no task definition ${prefix}`);
  const env = entry[1].Properties.ContainerDefinitions[0].Environment as { Name: string; Value: unknown }[];
  return Object.fromEntries(env.map((e) => [e.Name, e.Value]));
};

type Stmt = { Effect: string; Principal?: { Service?: string }; Action: string | string[]; Resource: unknown; Condition?: Record<string, Record<string, unknown>> };

/** Statements of the media bucket's policy. */
const mediaBucketStatements = (s: Synthesized): Stmt[] => {
  const media = logicalId(s.stateful_, 'AWS::S3::Bucket', 'MediaBucket');
  const policy = Object.values(s.stateful_.findResources('AWS::S3::BucketPolicy')).find(
    (p) => JSON.stringify(p.Properties.Bucket) === JSON.stringify({ Ref: media }),
  );
  return (policy?.Properties.PolicyDocument.Statement ?? []) as Stmt[];
};

const cloudfrontStatements = (stmts: Stmt[]) => stmts.filter((st) => st.Principal?.Service === 'cloudfront.amazonaws.com');

const keyStatements = (s: Synthesized): Stmt[] => {
  const key = logicalId(s.stateful_, 'AWS::KMS::Key', 'DataKey');
  return s.stateful_.toJSON().Resources[key].Properties.KeyPolicy.Statement as Stmt[];
};

describe('without cdn (default)', () => {
  test('no distribution, no CloudFront access to the bucket or key, presigned URLs in the API', () => {
    for (const t of [off.stateful_, off.compute_]) {
      expect(Object.keys(t.findResources('AWS::CloudFront::Distribution'))).toEqual([]);
      expect(Object.keys(t.findResources('AWS::CloudFront::OriginAccessControl'))).toEqual([]);
      expect(Object.keys(t.findResources('AWS::CloudFront::CachePolicy'))).toEqual([]);
    }
    expect(cloudfrontStatements(mediaBucketStatements(off))).toEqual([]);
    expect(cloudfrontStatements(keyStatements(off))).toEqual([]);
    expect(taskEnv(off.compute_, 'Api')).not.toHaveProperty('PRISM__HTTP__MEDIA_BASE_URL');
    expect(Object.keys(off.stateful_.toJSON().Outputs)).not.toContain('MediaBaseUrl');
  });

  test('cdn=false synthesizes exactly the default templates', () => {
    const explicit = synthPrism({ cdn: false });
    expect(explicit.stateful_.toJSON()).toEqual(off.stateful_.toJSON());
    expect(explicit.compute_.toJSON()).toEqual(off.compute_.toJSON());
  });
});

describe('with cdn=true', () => {
  const distribution = () => {
    const ds = Object.entries(on.stateful_.findResources('AWS::CloudFront::Distribution'));
    expect(ds).toHaveLength(1);
    return { id: ds[0][0], config: ds[0][1].Properties.DistributionConfig };
  };

  test('one distribution: HTTPS only, GET/HEAD, compressed, HTTP/2 and 3, IPv6', () => {
    const { config } = distribution();
    expect(config.Enabled).toBe(true);
    expect(config.HttpVersion).toBe('http2and3');
    expect(config.IPV6Enabled).toBe(true);
    const b = config.DefaultCacheBehavior;
    expect(b.ViewerProtocolPolicy).toBe('https-only');
    expect(b.AllowedMethods).toEqual(['GET', 'HEAD']);
    expect(b.Compress).toBe(true);
    expect(b.ResponseHeadersPolicyId).toBeDefined();
  });

  test('the origin is the media bucket through Origin Access Control, no OAI', () => {
    const { config } = distribution();
    expect(config.Origins).toHaveLength(1);
    const origin = config.Origins[0];
    const media = logicalId(on.stateful_, 'AWS::S3::Bucket', 'MediaBucket');
    expect(origin.DomainName).toEqual({ 'Fn::GetAtt': [media, 'RegionalDomainName'] });
    expect(origin.S3OriginConfig.OriginAccessIdentity).toBe('');
    const oac = logicalId(on.stateful_, 'AWS::CloudFront::OriginAccessControl', 'MediaCdn');
    expect(origin.OriginAccessControlId).toEqual({ 'Fn::GetAtt': [oac, 'Id'] });
    on.stateful_.hasResourceProperties('AWS::CloudFront::OriginAccessControl', {
      OriginAccessControlConfig: { OriginAccessControlOriginType: 's3', SigningBehavior: 'always', SigningProtocol: 'sigv4' },
    });
    expect(Object.keys(on.stateful_.findResources('AWS::CloudFront::CloudFrontOriginAccessIdentity'))).toEqual([]);
  });

  test('the bucket stays private; its policy admits CloudFront for GetObject from this distribution only', () => {
    const media = logicalId(on.stateful_, 'AWS::S3::Bucket', 'MediaBucket');
    expect(on.stateful_.toJSON().Resources[media].Properties.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    const cf = cloudfrontStatements(mediaBucketStatements(on));
    expect(cf).toHaveLength(1);
    expect(cf[0].Effect).toBe('Allow');
    expect(cf[0].Action).toBe('s3:GetObject');
    expect(JSON.stringify(cf[0].Resource)).toContain(`${media}`);
    const sourceArn = JSON.stringify(cf[0].Condition?.StringEquals?.['AWS:SourceArn']);
    expect(sourceArn).toContain(':cloudfront::');
    expect(sourceArn).toContain(`{"Ref":"${distribution().id}"}`);
    // Every other bucket stays closed to CloudFront.
    for (const prefix of ['UploadsBucket', 'ArchiveBucket']) {
      const id = logicalId(on.stateful_, 'AWS::S3::Bucket', prefix);
      const policies = Object.values(on.stateful_.findResources('AWS::S3::BucketPolicy')).filter(
        (p) => JSON.stringify(p.Properties.Bucket) === JSON.stringify({ Ref: id }),
      );
      for (const p of policies) expect(cloudfrontStatements(p.Properties.PolicyDocument.Statement)).toEqual([]);
    }
  });

  test('the data key lets CloudFront decrypt, for distributions of this account only', () => {
    const cf = cloudfrontStatements(keyStatements(on));
    expect(cf).toHaveLength(1);
    expect(cf[0].Action).toBe('kms:Decrypt');
    expect(JSON.stringify(cf[0].Condition?.ArnLike?.['AWS:SourceArn'])).toMatch(/cloudfront::.*AccountId.*:distribution\/\*/);
  });

  test('the cache policy honours the origin Cache-Control: min 0, max one year, caches nothing but the path', () => {
    const { config } = distribution();
    const policies = Object.entries(on.stateful_.findResources('AWS::CloudFront::CachePolicy'));
    expect(policies).toHaveLength(1);
    expect(config.DefaultCacheBehavior.CachePolicyId).toEqual({ Ref: policies[0][0] });
    const c = policies[0][1].Properties.CachePolicyConfig;
    expect(c.MinTTL).toBe(0);
    expect(c.MaxTTL).toBe(31536000);
    expect(c.DefaultTTL).toBe(86400);
    const k = c.ParametersInCacheKeyAndForwardedToOrigin;
    expect(k.EnableAcceptEncodingGzip).toBe(true);
    expect(k.EnableAcceptEncodingBrotli).toBe(true);
    expect(k.QueryStringsConfig.QueryStringBehavior).toBe('none');
    expect(k.HeadersConfig.HeaderBehavior).toBe('none');
    expect(k.CookiesConfig.CookieBehavior).toBe('none');
  });

  test("the API hands out https://<distribution domain>/<key> (media_base_url); the workers don't get it", () => {
    const api = taskEnv(on.compute_, 'Api');
    const url = JSON.stringify(api.PRISM__HTTP__MEDIA_BASE_URL);
    expect(url).toContain('https://');
    // The distribution's DomainName, exported by the stateful stack.
    expect(url).toContain('Fn::ImportValue');
    expect(url).toContain(`${distribution().id}DomainName`);
    // A key the API's Rust config deserializes (its sections deny unknown keys).
    expect(configKeys('prism-api').has('PRISM__HTTP__MEDIA_BASE_URL')).toBe(true);
    for (const w of ['Resize', 'Archiver', 'Metadata']) {
      expect(taskEnv(on.compute_, w)).not.toHaveProperty('PRISM__HTTP__MEDIA_BASE_URL');
    }
    expect(JSON.stringify(on.stateful_.toJSON().Outputs.MediaBaseUrl.Value)).toContain('https://');
  });
});

test('the cdn context value is a boolean', () => {
  const { loadConfig } = jest.requireActual('../lib/config') as typeof import('../lib/config');
  const get = (cdn: unknown) => (k: string) => (k === 'cdn' ? cdn : k === 'allowInsecureHttp' ? true : undefined);
  expect(loadConfig(get(undefined)).cdn).toBe(false);
  expect(loadConfig(get('true')).cdn).toBe(true);
  expect(loadConfig(get(true)).cdn).toBe(true);
  expect(() => loadConfig(get('yes'))).toThrow(/cdn/);
});
