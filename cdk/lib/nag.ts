/**
 * cdk-nag (v3) acknowledgements shared by the stacks.
 *
 * cdk-nag v3 runs as a CDK policy-validation plugin and needs every finding acknowledged
 * individually (`AwsSolutions-IAM5[Action::s3:GetObject*]`, not `AwsSolutions-IAM5`). Finding IDs
 * of resource wildcards embed CloudFormation logical IDs (`Resource::<UploadsBucketC4B27CC7.Arn>/*`),
 * so they are computed here from the constructs instead of being pasted in, and stay correct when
 * an ID changes. Acknowledgements are attached to the narrowest construct that owns the finding
 * (a task role, a task definition, a security group), never to a whole stack.
 */
import { CfnElement, Stack, Token, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { IConstruct } from 'constructs';

/** How cdk-nag renders a `Ref`/`GetAtt` to `resource` in a finding ID: `<LogicalId>`. */
export function nagRef(resource: IConstruct): string {
  const cfn = (resource.node.defaultChild ?? resource) as CfnElement;
  return `<${Stack.of(cfn).getLogicalId(cfn)}>`;
}

/**
 * The object wildcard every bucket grant produces, as cdk-nag names it for a policy in the stack
 * of `scope`: `<BucketLogicalId.Arn>/*` in the bucket's own stack, or
 * `<ExportName>/*` when the ARN arrives through a cross-stack `Fn::ImportValue`.
 * The export name is CDK's own (Stack.exportValue reuses the export the reference creates).
 */
export function nagBucketObjects(bucket: s3.IBucket, scope: IConstruct): string {
  const producer = Stack.of(bucket);
  if (producer === Stack.of(scope)) {
    const ref = nagRef(bucket);
    return `${ref.slice(0, -1)}.Arn>/*`;
  }
  const imported = Stack.of(scope).resolve(producer.exportValue(bucket.bucketArn)) as { 'Fn::ImportValue': string };
  return `${imported['Fn::ImportValue']}/*`;
}

/** The stack's account and region as cdk-nag prints them (pseudo parameter or literal). */
export function nagAccountRegion(scope: IConstruct): { account: string; region: string } {
  const stack = Stack.of(scope);
  return {
    account: Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account,
    region: Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region,
  };
}

/** Why each wildcard action that `grant*` emits is acceptable. */
const GRANT_ACTION_REASONS: Record<string, string> = {
  's3:GetObject*': 'From bucket.grantRead: GetObject plus version/tagging/ACL reads, on one bucket only.',
  's3:GetBucket*': 'From bucket.grantRead: bucket-level reads (location, versioning) needed by the SDK, one bucket only.',
  's3:List*': 'From bucket.grantRead: listing one bucket (HeadObject returns 404 instead of 403 with it).',
  's3:Abort*': 'From bucket.grantPut: AbortMultipartUpload so a failed multipart write can be cleaned up.',
  'kms:GenerateDataKey*': 'From the grants on SSE-KMS resources: data keys for writes, limited to the one key.',
  'kms:ReEncrypt*': 'From the grants on SSE-KMS resources: re-encryption under the same key only.',
};

/**
 * Acknowledges the wildcard findings that CDK `grant*` methods produce on `role`: the listed
 * actions and the object wildcard of each bucket.
 */
export function acknowledgeGrantWildcards(role: iam.IRole, actions: (keyof typeof GRANT_ACTION_REASONS)[], buckets: s3.IBucket[]): void {
  const v = Validations.of(role);
  for (const action of actions) {
    v.acknowledge({ id: `AwsSolutions-IAM5[Action::${action}]`, reason: GRANT_ACTION_REASONS[action] });
  }
  for (const bucket of buckets) {
    v.acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagBucketObjects(bucket, role)}]`,
      reason: 'Object keys are per batch and per file (uploads/{batch}/{file}, media/{batch}/{file}/...), so access is to all objects of this one purpose-built bucket.',
    });
  }
}

/**
 * Acknowledges the findings every ECS task definition here shares: plain (non-secret) environment
 * variables, and the execution role's `Resource::*` (ecr:GetAuthorizationToken has no resource).
 */
export function acknowledgeTaskDefinition(taskDefinition: IConstruct, executionRole: iam.IRole | undefined): void {
  Validations.of(taskDefinition).acknowledge({
    id: 'AwsSolutions-ECS2',
    reason:
      'The plain environment is non-secret configuration (region, resource names, log format, ports, drain deadline); ' +
      'the secrets (API token hashes, callback signing key) are injected from Secrets Manager through `secrets`.',
  });
  if (executionRole) {
    Validations.of(executionRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'CDK-generated execution role: ecr:GetAuthorizationToken does not support resource-level permissions.',
    });
  }
}
