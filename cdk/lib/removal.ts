/**
 * Ephemeral (trial) deployments: `-c ephemeral=true` turns every retained resource of a stack
 * into one that `cdk destroy` deletes. Constructs whose delete needs more than a policy (buckets
 * must be emptied first, the table drops its deletion protection) take an `ephemeral` prop; this
 * aspect covers the rest (keys, topic, queues, secrets, log groups) so that no resource added
 * later is forgotten.
 */
import { Aspects, CfnResource, IAspect, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

class DestroyOnDelete implements IAspect {
  public visit(node: IConstruct): void {
    if (node instanceof CfnResource) node.applyRemovalPolicy(RemovalPolicy.DESTROY);
  }
}

/** Makes every resource of `stack` DESTROY on delete and replace (applied at synth). */
export function destroyOnDelete(stack: Stack): void {
  Aspects.of(stack).add(new DestroyOnDelete());
}

/** RETAIN (default) or, for an ephemeral deployment, DESTROY. */
export function removalPolicy(ephemeral: boolean): RemovalPolicy {
  return ephemeral ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;
}
