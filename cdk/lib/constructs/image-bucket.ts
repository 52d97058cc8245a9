/**
 * One S3 bucket with the baseline every prism bucket shares: all public access blocked, TLS
 * required (bucket policy deny on `aws:SecureTransport=false`), versioned, SSE-KMS with the
 * customer-managed data key (S3 Bucket Keys on, so KMS is called per bucket-key period rather than
 * per object), bucket-owner-enforced ownership, server access logs, and RETAIN (DESTROY with its objects
 * auto-deleted for an ephemeral deployment).
 *
 * Per-bucket differences (expiry, storage-class transition, CORS) come in through props.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface ImageBucketProps {
  /** Customer-managed key for SSE-KMS. */
  readonly encryptionKey: kms.IKey;
  /** Bucket receiving server access logs. */
  readonly accessLogsBucket: s3.IBucket;
  /**
   * Expire current objects after this long (uploads: 30 days). Noncurrent versions then expire
   * one day after they stop being current, so the bytes are really gone.
   * @default - objects never expire
   */
  readonly expireAfter?: Duration;
  /**
   * Move current objects to S3 Standard-IA after this long (archive bucket).
   * @default - no transition
   */
  readonly infrequentAccessAfter?: Duration;
  /**
   * How long an overwritten (noncurrent) version is kept when objects themselves never expire.
   * Deterministic keys mean a replay overwrites variants; old versions are only a safety net.
   * @default Duration.days(30)
   */
  readonly noncurrentVersionRetention?: Duration;
  /**
   * CORS rules (see `lib/cors.ts`, which derives them from `allowedOrigins`). Absent: no CORS
   * configuration at all, so browsers cannot call the bucket cross-origin.
   */
  readonly cors?: s3.CorsRule[];
  /**
   * A trial deployment: DESTROY, and the objects (every version) deleted before the bucket.
   * @default false (RETAIN)
   */
  readonly ephemeral?: boolean;
}

/** An encrypted, private, versioned bucket; see the module doc for the baseline. */
export class ImageBucket extends Construct {
  /** The bucket itself, for grants and notifications. */
  public readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: ImageBucketProps) {
    super(scope, id);

    const rules: s3.LifecycleRule[] = [
      {
        id: 'abort-incomplete-multipart-uploads',
        // A browser that dies mid-upload leaves parts that are billed but invisible.
        abortIncompleteMultipartUploadAfter: Duration.days(1),
      },
    ];
    if (props.expireAfter) {
      rules.push({
        id: 'expire-objects',
        expiration: props.expireAfter,
        noncurrentVersionExpiration: Duration.days(1),
      });
      rules.push({
        // Once every version of a key has expired, only the delete marker remains; remove it.
        id: 'remove-expired-delete-markers',
        expiredObjectDeleteMarker: true,
      });
    } else {
      rules.push({
        id: 'expire-noncurrent-versions',
        noncurrentVersionExpiration: props.noncurrentVersionRetention ?? Duration.days(30),
      });
    }
    if (props.infrequentAccessAfter) {
      rules.push({
        id: 'transition-to-infrequent-access',
        transitions: [{ storageClass: s3.StorageClass.INFREQUENT_ACCESS, transitionAfter: props.infrequentAccessAfter }],
      });
    }

    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: props.encryptionKey,
      bucketKeyEnabled: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: props.accessLogsBucket,
      serverAccessLogsPrefix: `${id.toLowerCase()}/`,
      lifecycleRules: rules,
      cors: props.cors,
      removalPolicy: props.ephemeral ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      autoDeleteObjects: props.ephemeral ?? false,
    });
  }
}
