/**
 * The metadata table: one item collection per batch (`pk` = batch, `sk` = batch record or file
 * record), written by the API and the metadata worker. On-demand billing (traffic is bursty and
 * idles at zero), point-in-time recovery, SSE with the customer-managed data key, TTL on `ttl`
 * (epoch seconds; expired items linger up to ~2 days, so readers filter on `ttl > now`),
 * deletion protection and RETAIN (neither for an ephemeral deployment).
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';

/** Attribute names the Rust `DynamoMetadataStore` relies on. */
export const TABLE_KEYS = { partitionKey: 'pk', sortKey: 'sk', ttl: 'ttl' } as const;

export interface MetadataTableProps {
  /** Customer-managed key for table encryption. */
  readonly encryptionKey: kms.IKey;
  /** A trial deployment: no deletion protection, DESTROY. @default false */
  readonly ephemeral?: boolean;
}

/** The batch/file metadata table. */
export class MetadataTable extends Construct {
  /** The table, for grants. */
  public readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string, props: MetadataTableProps) {
    super(scope, id);
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: TABLE_KEYS.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TABLE_KEYS.sortKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: props.encryptionKey,
      timeToLiveAttribute: TABLE_KEYS.ttl,
      deletionProtection: !props.ephemeral,
      removalPolicy: props.ephemeral ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    });
  }
}
