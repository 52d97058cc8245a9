/**
 * Stateful stack: buckets, topic, notifications, queues, subscriptions, table, keys, secret.
 * Fine-grained assertions on the properties the workers and operators rely on.
 */
import { Match } from 'aws-cdk-lib/assertions';
import { logicalId, synthPrism, Synthesized } from './helpers';

let s: Synthesized;
beforeAll(() => {
  s = synthPrism({ allowedOrigins: ['https://app.example.com', 'http://localhost:3000'] });
});

const kmsEncryptedWith = (keyId: string) => ({
  ServerSideEncryptionConfiguration: [
    {
      ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [keyId, 'Arn'] } },
      BucketKeyEnabled: true,
    },
  ],
});
const allPublicAccessBlocked = {
  BlockPublicAcls: true,
  BlockPublicPolicy: true,
  IgnorePublicAcls: true,
  RestrictPublicBuckets: true,
};

describe('stateful resources are retained', () => {
  test.each([
    ['AWS::S3::Bucket', 4],
    ['AWS::SQS::Queue', 6],
    ['AWS::DynamoDB::Table', 1],
    ['AWS::KMS::Key', 2],
    ['AWS::SNS::Topic', 1],
    ['AWS::SecretsManager::Secret', 2],
  ])('every %s (%d of them) is RETAIN on delete and replace', (type, count) => {
    const resources = s.stateful_.findResources(type);
    expect(Object.keys(resources)).toHaveLength(count);
    for (const r of Object.values(resources)) {
      expect(r.DeletionPolicy).toBe('Retain');
      expect(r.UpdateReplacePolicy).toBe('Retain');
    }
  });

  test('no resource has a physical name', () => {
    s.stateful_.resourcePropertiesCountIs('AWS::S3::Bucket', { BucketName: Match.anyValue() }, 0);
    s.stateful_.resourcePropertiesCountIs('AWS::SQS::Queue', { QueueName: Match.anyValue() }, 0);
    s.stateful_.resourcePropertiesCountIs('AWS::SNS::Topic', { TopicName: Match.anyValue() }, 0);
    s.stateful_.resourcePropertiesCountIs('AWS::DynamoDB::Table', { TableName: Match.anyValue() }, 0);
  });

  test('both KMS keys rotate', () => {
    s.stateful_.resourcePropertiesCountIs('AWS::KMS::Key', { EnableKeyRotation: true }, 2);
  });
});

describe('buckets', () => {
  test.each(['UploadsBucket', 'MediaBucket', 'ArchiveBucket'])('%s: private, versioned, SSE-KMS with the data key, access-logged', (prefix) => {
    const id = logicalId(s.stateful_, 'AWS::S3::Bucket', prefix);
    const props = s.stateful_.toJSON().Resources[id].Properties;
    expect(props.PublicAccessBlockConfiguration).toEqual(allPublicAccessBlocked);
    expect(props.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(props.BucketEncryption).toEqual(kmsEncryptedWith(logicalId(s.stateful_, 'AWS::KMS::Key', 'DataKey')));
    expect(props.LoggingConfiguration).toEqual({
      DestinationBucketName: { Ref: logicalId(s.stateful_, 'AWS::S3::Bucket', 'AccessLogs') },
      LogFilePrefix: `${prefix.replace('Bucket', '').toLowerCase()}/`,
    });
    expect(props.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
  });

  test.each(['UploadsBucket', 'MediaBucket', 'ArchiveBucket', 'AccessLogs'])('%s policy denies non-TLS requests', (prefix) => {
    const bucketId = logicalId(s.stateful_, 'AWS::S3::Bucket', prefix);
    s.stateful_.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucketId },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  test('uploads expire after 30 days, noncurrent versions and incomplete multipart uploads too', () => {
    const id = logicalId(s.stateful_, 'AWS::S3::Bucket', 'UploadsBucket');
    const rules = s.stateful_.toJSON().Resources[id].Properties.LifecycleConfiguration.Rules;
    expect(rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Status: 'Enabled', ExpirationInDays: 30, NoncurrentVersionExpiration: { NoncurrentDays: 1 } }),
        expect.objectContaining({ Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
        expect.objectContaining({ Status: 'Enabled', ExpiredObjectDeleteMarker: true }),
      ]),
    );
  });

  test('media objects never expire (only overwritten versions do)', () => {
    const id = logicalId(s.stateful_, 'AWS::S3::Bucket', 'MediaBucket');
    const rules = s.stateful_.toJSON().Resources[id].Properties.LifecycleConfiguration.Rules as Record<string, unknown>[];
    expect(rules.some((r) => 'ExpirationInDays' in r || 'ExpirationDate' in r)).toBe(false);
    expect(rules).toEqual(expect.arrayContaining([expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 } })]));
  });

  test('archive moves to Standard-IA after 30 days and never expires', () => {
    const id = logicalId(s.stateful_, 'AWS::S3::Bucket', 'ArchiveBucket');
    const rules = s.stateful_.toJSON().Resources[id].Properties.LifecycleConfiguration.Rules as Record<string, unknown>[];
    expect(rules).toEqual(
      expect.arrayContaining([expect.objectContaining({ Transitions: [{ StorageClass: 'STANDARD_IA', TransitionInDays: 30 }] })]),
    );
    expect(rules.some((r) => 'ExpirationInDays' in r)).toBe(false);
  });

  test('uploads CORS allows browser POST and PUT from the configured origins only', () => {
    s.stateful_.hasResourceProperties('AWS::S3::Bucket', {
      CorsConfiguration: {
        CorsRules: [
          Match.objectLike({
            AllowedMethods: ['POST', 'PUT'],
            AllowedOrigins: ['https://app.example.com', 'http://localhost:3000'],
            ExposedHeaders: ['ETag', 'Location'],
          }),
        ],
      },
    });
    // The uploads bucket (POST, PUT) and the media bucket (GET: test/cors.test.ts).
    s.stateful_.resourcePropertiesCountIs('AWS::S3::Bucket', { CorsConfiguration: Match.anyValue() }, 2);
  });

  test('without configured origins there is no CORS rule at all', () => {
    const bare = synthPrism();
    bare.stateful_.resourcePropertiesCountIs('AWS::S3::Bucket', { CorsConfiguration: Match.anyValue() }, 0);
  });
});

describe('events topic and notifications', () => {
  test('topic is encrypted with the topic key and refuses non-TLS publishers', () => {
    s.stateful_.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TopicKey'), 'Arn'] } });
    s.stateful_.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  test('only the uploads and media buckets (of this account) may publish as S3', () => {
    const policy = Object.values(s.stateful_.findResources('AWS::SNS::TopicPolicy'))[0];
    const s3Statements = (policy.Properties.PolicyDocument.Statement as Record<string, any>[]).filter(
      (st) => st.Principal?.Service === 's3.amazonaws.com',
    );
    const allows = s3Statements.filter((st) => st.Effect === 'Allow');
    expect(allows.map((st) => JSON.stringify(st.Condition.ArnLike['aws:SourceArn'])).sort()).toEqual(
      [
        JSON.stringify({ 'Fn::GetAtt': [logicalId(s.stateful_, 'AWS::S3::Bucket', 'MediaBucket'), 'Arn'] }),
        JSON.stringify({ 'Fn::GetAtt': [logicalId(s.stateful_, 'AWS::S3::Bucket', 'UploadsBucket'), 'Arn'] }),
      ].sort(),
    );
    expect(s3Statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Effect: 'Deny', Condition: { StringNotEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } } }),
      ]),
    );
  });

  test('topic key policy lets S3 encrypt for exactly our two buckets (S3 → KMS topic trap)', () => {
    s.stateful_.hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 's3.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
            Condition: {
              ArnLike: {
                'aws:SourceArn': [
                  { 'Fn::GetAtt': [logicalId(s.stateful_, 'AWS::S3::Bucket', 'UploadsBucket'), 'Arn'] },
                  { 'Fn::GetAtt': [logicalId(s.stateful_, 'AWS::S3::Bucket', 'MediaBucket'), 'Arn'] },
                ],
              },
              StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
            },
          }),
          Match.objectLike({ Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'] }),
        ]),
      },
    });
  });

  test('uploads: every ObjectCreated goes to the topic', () => {
    s.stateful_.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: { Ref: logicalId(s.stateful_, 'AWS::S3::Bucket', 'UploadsBucket') },
      NotificationConfiguration: {
        TopicConfigurations: [{ Events: ['s3:ObjectCreated:*'], TopicArn: { Ref: logicalId(s.stateful_, 'AWS::SNS::Topic', 'EventsTopic') } }],
      },
    });
  });

  test('media: only manifest.json and failure.json creations go to the topic', () => {
    const topic = { Ref: logicalId(s.stateful_, 'AWS::SNS::Topic', 'EventsTopic') };
    s.stateful_.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: { Ref: logicalId(s.stateful_, 'AWS::S3::Bucket', 'MediaBucket') },
      NotificationConfiguration: {
        TopicConfigurations: [
          { Events: ['s3:ObjectCreated:*'], TopicArn: topic, Filter: { Key: { FilterRules: [{ Name: 'suffix', Value: 'manifest.json' }] } } },
          { Events: ['s3:ObjectCreated:*'], TopicArn: topic, Filter: { Key: { FilterRules: [{ Name: 'suffix', Value: 'failure.json' }] } } },
        ],
      },
    });
  });

  test('the archive bucket publishes nothing', () => {
    s.stateful_.resourceCountIs('Custom::S3BucketNotifications', 2);
  });
});

describe('queues', () => {
  const queues: [string, number][] = [
    ['ResizeQueue', 300],
    ['ArchiveQueue', 180],
    ['MetadataQueue', 60],
  ];

  test.each(queues)('%s: visibility %d s, redrive after 5 receives to its own DLQ, SSE-SQS, 256 KiB, long polling', (prefix, visibility) => {
    const dlq = logicalId(s.stateful_, 'AWS::SQS::Queue', `${prefix}DeadLetterQueue`);
    s.stateful_.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: visibility,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlq, 'Arn'] }, maxReceiveCount: 5 },
      SqsManagedSseEnabled: true,
      MaximumMessageSize: 262144,
      MessageRetentionPeriod: 4 * 24 * 3600,
      ReceiveMessageWaitTimeSeconds: 20,
    });
  });

  test.each(queues)('%s DLQ keeps messages 14 days, SSE-SQS', (prefix) => {
    const dlq = logicalId(s.stateful_, 'AWS::SQS::Queue', `${prefix}DeadLetterQueue`);
    expect(s.stateful_.toJSON().Resources[dlq].Properties).toEqual(
      expect.objectContaining({ MessageRetentionPeriod: 14 * 24 * 3600, SqsManagedSseEnabled: true, MaximumMessageSize: 262144 }),
    );
  });

  test('no queue uses the AWS-managed alias/aws/sqs key', () => {
    for (const q of Object.values(s.stateful_.findResources('AWS::SQS::Queue'))) {
      expect(JSON.stringify(q.Properties.KmsMasterKeyId ?? '')).not.toContain('alias/aws/sqs');
    }
  });

  test('the archive queue hides a message longer than the archiver 60 s flush interval', () => {
    const archive = Object.entries(s.stateful_.findResources('AWS::SQS::Queue')).find(
      ([id]) => id.startsWith('ArchiveQueue') && !id.includes('DeadLetter'),
    );
    expect(archive?.[1].Properties.VisibilityTimeout).toBeGreaterThan(60);
  });

  test('every queue policy denies non-TLS access', () => {
    const policies = Object.values(s.stateful_.findResources('AWS::SQS::QueuePolicy'));
    expect(policies).toHaveLength(6);
    for (const p of policies) {
      expect(p.Properties.PolicyDocument.Statement).toEqual(
        expect.arrayContaining([expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      );
    }
  });
});

describe('subscriptions', () => {
  test('three SQS subscriptions, all with raw message delivery', () => {
    s.stateful_.resourceCountIs('AWS::SNS::Subscription', 3);
    s.stateful_.resourcePropertiesCountIs('AWS::SNS::Subscription', { Protocol: 'sqs', RawMessageDelivery: true }, 3);
  });

  test('resize ← ObjectCreated records of the uploads bucket (message-body filter)', () => {
    const uploads = { Ref: logicalId(s.stateful_, 'AWS::S3::Bucket', 'UploadsBucket') };
    s.stateful_.hasResourceProperties('AWS::SNS::Subscription', {
      Endpoint: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ResizeQueue(?!DeadLetter)'), 'Arn'] },
      RawMessageDelivery: true,
      FilterPolicyScope: 'MessageBody',
      FilterPolicy: { Records: { eventName: [{ prefix: 'ObjectCreated:' }], s3: { bucket: { name: [uploads] } } } },
    });
  });

  test('metadata ← uploads records, media manifest/failure records, and IMAGE_REQUESTED client events', () => {
    const uploads = { Ref: logicalId(s.stateful_, 'AWS::S3::Bucket', 'UploadsBucket') };
    const media = { Ref: logicalId(s.stateful_, 'AWS::S3::Bucket', 'MediaBucket') };
    s.stateful_.hasResourceProperties('AWS::SNS::Subscription', {
      Endpoint: { 'Fn::GetAtt': [Match.stringLikeRegexp('^MetadataQueue(?!DeadLetter)'), 'Arn'] },
      RawMessageDelivery: true,
      FilterPolicyScope: 'MessageBody',
      FilterPolicy: {
        $or: [
          { Records: { eventName: [{ prefix: 'ObjectCreated:' }], s3: { bucket: { name: [uploads] } } } },
          {
            Records: {
              eventName: [{ prefix: 'ObjectCreated:' }],
              s3: { bucket: { name: [media] }, object: { key: [{ suffix: 'manifest.json' }, { suffix: 'failure.json' }] } },
            },
          },
          { event_name: ['IMAGE_REQUESTED'] },
        ],
      },
    });
  });

  test('archive ← everything (no filter policy)', () => {
    const subs = Object.values(s.stateful_.findResources('AWS::SNS::Subscription')).filter((r) =>
      JSON.stringify(r.Properties.Endpoint).includes('ArchiveQueue'),
    );
    expect(subs).toHaveLength(1);
    expect(subs[0].Properties.RawMessageDelivery).toBe(true);
    expect(subs[0].Properties.FilterPolicy).toBeUndefined();
  });

  test('queue policies let only the events topic send', () => {
    const topic = { Ref: logicalId(s.stateful_, 'AWS::SNS::Topic', 'EventsTopic') };
    s.stateful_.resourcePropertiesCountIs(
      'AWS::SQS::QueuePolicy',
      {
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Allow',
              Action: 'sqs:SendMessage',
              Principal: { Service: 'sns.amazonaws.com' },
              Condition: { ArnEquals: { 'aws:SourceArn': topic } },
            }),
          ]),
        },
      },
      3,
    );
  });
});

describe('metadata table', () => {
  test('pk/sk strings, on-demand, PITR, KMS with the data key, TTL on ttl, deletion protection', () => {
    s.stateful_.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: {
        SSEEnabled: true,
        SSEType: 'KMS',
        KMSMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^DataKey'), 'Arn'] },
      },
      TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      DeletionProtectionEnabled: true,
    });
  });
});

describe('API token secret', () => {
  test('generated value is 64 lowercase hex digits: a well-formed digest of no token (deny-all)', () => {
    s.stateful_.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: {
        PasswordLength: 64,
        ExcludeUppercase: true,
        ExcludePunctuation: true,
        IncludeSpace: false,
        ExcludeCharacters: 'ghijklmnopqrstuvwxyz',
      },
    });
  });

  test('an existing secret can be supplied instead', () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:111111111111:secret:prism-tokens-AbCdEf';
    const withSecret = synthPrism({ apiTokenSecretArn: arn });
    expect(Object.keys(withSecret.stateful_.findResources('AWS::SecretsManager::Secret'))).toEqual([
      expect.stringMatching(/^CallbackSigningSecret/),
    ]);
    withSecret.stateful_.hasOutput('ApiTokenSecretArn', { Value: arn });
  });
});

describe('callback signing secret', () => {
  test('generated: 64 letters and digits, retained, described', () => {
    const id = logicalId(s.stateful_, 'AWS::SecretsManager::Secret', 'CallbackSigningSecret');
    const secret = s.stateful_.toJSON().Resources[id];
    expect(secret.Properties.GenerateSecretString).toEqual({ PasswordLength: 64, ExcludePunctuation: true, IncludeSpace: false });
    expect(secret.Properties.Description).toContain('PRISM__CALLBACK__SIGNING_SECRET');
    expect([secret.DeletionPolicy, secret.UpdateReplacePolicy]).toEqual(['Retain', 'Retain']);
    s.stateful_.hasOutput('CallbackSecretArn', { Value: { Ref: id } });
  });

  test('an existing secret can be supplied instead', () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:111111111111:secret:prism-callback-key-AbCdEf';
    const withSecret = synthPrism({ callbackSecretArn: arn });
    expect(Object.keys(withSecret.stateful_.findResources('AWS::SecretsManager::Secret'))).toEqual([
      expect.stringMatching(/^ApiTokenHashes/),
    ]);
    withSecret.stateful_.hasOutput('CallbackSecretArn', { Value: arn });
  });
});

test('outputs name every resource the CLI and operators need', () => {
  for (const name of [
    'UploadsBucketName',
    'MediaBucketName',
    'ArchiveBucketName',
    'EventsTopicArn',
    'TableName',
    'ResizeQueueUrl',
    'ResizeDlqUrl',
    'ArchiveQueueUrl',
    'ArchiveDlqUrl',
    'MetadataQueueUrl',
    'MetadataDlqUrl',
    'ApiTokenSecretArn',
    'CallbackSecretArn',
  ]) {
    s.stateful_.hasOutput(name, {});
  }
});
