/**
 * SNS subscription filter policies (scope `MessageBody`) for the events topic.
 *
 * Everything on the topic is JSON: S3 event notifications (`{"Records":[...]}`) from the uploads
 * and media buckets, and client events published by prism-api (`{"event_name":"IMAGE_REQUESTED",
 * ...}`). S3 publishes no message attributes, so attribute-scoped policies would never match;
 * body-scoped policies match nested keys, and for the `Records` array a key matches when any
 * element matches. Policies that require `Records` also drop the `s3:TestEvent` message S3 sends
 * when notifications are configured (it has no `Records`).
 *
 * The CDK typed API (`filterPolicyWithMessageBody`) has no `$or`, which the metadata policy needs,
 * so the policies are written here as the raw JSON SNS receives. SNS limits: at most 5 leaf keys
 * and 150 value combinations per policy; the largest here uses 4 keys and 4 combinations.
 */

/** `ObjectCreated:Put`, `:Post`, `:Copy`, `:CompleteMultipartUpload` (no `s3:` prefix in events). */
const OBJECT_CREATED = [{ prefix: 'ObjectCreated:' }];

/** Object keys the resize worker writes last; only these media objects concern the metadata worker. */
export const MEDIA_RESULT_SUFFIXES = ['manifest.json', 'failure.json'] as const;

/** Resize consumes only objects created in the uploads bucket. */
export function resizeFilterPolicy(uploadsBucketName: string): Record<string, unknown> {
  return {
    Records: {
      eventName: OBJECT_CREATED,
      s3: { bucket: { name: [uploadsBucketName] } },
    },
  };
}

/**
 * Metadata consumes uploads (file status `uploaded`), the resize worker's manifest/failure records
 * in the media bucket (variants or failure reason), and the client events it counts.
 */
export function metadataFilterPolicy(
  uploadsBucketName: string,
  mediaBucketName: string,
  clientEventNames: readonly string[],
): Record<string, unknown> {
  return {
    $or: [
      { Records: { eventName: OBJECT_CREATED, s3: { bucket: { name: [uploadsBucketName] } } } },
      {
        Records: {
          eventName: OBJECT_CREATED,
          s3: {
            bucket: { name: [mediaBucketName] },
            object: { key: MEDIA_RESULT_SUFFIXES.map((suffix) => ({ suffix })) },
          },
        },
      },
      { event_name: [...clientEventNames] },
    ],
  };
}
