/**
 * The optional CloudFront distribution in front of the media bucket (`-c cdn=true`).
 *
 * - **The bucket stays private.** The origin is the bucket's regional endpoint through Origin
 *   Access Control (SigV4-signed origin requests). The bucket policy admits the CloudFront service
 *   principal for `s3:GetObject` only, and only for requests from this distribution
 *   (`AWS:SourceArn` = its ARN); the public-access block stays on. The media bucket is SSE-KMS,
 *   so the data key's policy admits CloudFront for `kms:Decrypt` (CDK scopes that statement to the
 *   account's distributions: naming this one would be a key → distribution → bucket → key cycle).
 * - **Caching follows the objects.** prism writes variants and kept originals with
 *   `Cache-Control: public, max-age=31536000, immutable` (their keys change whenever their bytes
 *   can) and manifests/failure records with `no-cache`; the cache policy honours the origin's
 *   header (minimum TTL 0, maximum one year) and caches an object that carries none for a day. No
 *   query string, header or cookie is part of the cache key.
 * - HTTPS only (plain HTTP is refused, not redirected: URLs are handed out as `https://`),
 *   GET/HEAD only, gzip/brotli compression for compressible types, HTTP/2 and HTTP/3, the
 *   managed security-headers response policy (nosniff, HSTS, frame options).
 */
import { Duration, Validations } from 'aws-cdk-lib';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface MediaCdnProps {
  /** The media bucket (private, SSE-KMS with a key of the same stack). */
  readonly bucket: s3.IBucket;
}

/** Longest time CloudFront keeps an object: the immutable variants' `max-age`. */
export const MEDIA_MAX_TTL = Duration.days(365);
/** How long an object without `Cache-Control` is cached. */
export const MEDIA_DEFAULT_TTL = Duration.days(1);

export class MediaCdn extends Construct {
  public readonly distribution: cloudfront.Distribution;
  /** `https://<distribution domain>`: the API's `media_base_url`. */
  public readonly baseUrl: string;

  constructor(scope: Construct, id: string, props: MediaCdnProps) {
    super(scope, id);

    const cachePolicy = new cloudfront.CachePolicy(this, 'CachePolicy', {
      comment: 'prism media: honour the origin Cache-Control (immutable variants, no-cache records)',
      minTtl: Duration.seconds(0),
      defaultTtl: MEDIA_DEFAULT_TTL,
      maxTtl: MEDIA_MAX_TTL,
      queryStringBehavior: cloudfront.CacheQueryStringBehavior.none(),
      headerBehavior: cloudfront.CacheHeaderBehavior.none(),
      cookieBehavior: cloudfront.CacheCookieBehavior.none(),
      enableAcceptEncodingGzip: true,
      enableAcceptEncodingBrotli: true,
    });

    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: 'prism media bucket (variants, kept originals)',
      defaultBehavior: {
        origin: origins.S3BucketOrigin.withOriginAccessControl(props.bucket, {
          originAccessLevels: [cloudfront.AccessLevel.READ],
        }),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
        allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
        cachedMethods: cloudfront.CachedMethods.CACHE_GET_HEAD,
        cachePolicy,
        compress: true,
        responseHeadersPolicy: cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
      },
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      priceClass: cloudfront.PriceClass.PRICE_CLASS_100,
      enableIpv6: true,
    });
    this.baseUrl = `https://${this.distribution.distributionDomainName}`;

    const v = Validations.of(this.distribution);
    v.acknowledge({
      id: 'AwsSolutions-CFR1',
      reason: 'Media URLs are meant to be fetched by any browser, wherever it is; no geo restriction applies to public images.',
    });
    v.acknowledge({
      id: 'AwsSolutions-CFR2',
      reason:
        'GET/HEAD of immutable objects from a private bucket, no query strings or cookies forwarded: nothing for a WAF rule ' +
        'set to inspect. Attach a web ACL (us-east-1) if abuse shows in the request metrics.',
    });
    v.acknowledge({
      id: 'AwsSolutions-CFR3',
      reason:
        'Standard (legacy) CloudFront logs need an ACL-enabled bucket and the access-log bucket enforces bucket-owner ' +
        'ownership; the distribution metrics and the media bucket access logs (origin fetches) stand in on this trial distribution.',
    });
    v.acknowledge({
      id: 'AwsSolutions-CFR4',
      reason:
        'The default *.cloudfront.net certificate cannot be pinned to a minimum TLS version; a custom domain with an ACM ' +
        'certificate would take TLSv1.2_2021. Every request is HTTPS (HTTPS_ONLY) and origin requests are SigV4-signed.',
    });
  }
}
