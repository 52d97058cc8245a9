#!/usr/bin/env node
/**
 * The CDK app: reads deployment settings from context (cdk.json, or `-c key=value`), builds the
 * stateful and compute stacks, and runs the cdk-nag AwsSolutions pack over both. Only this file
 * reads the environment (the CDK CLI's account); stacks and constructs get plain props.
 */
import * as path from 'path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { buildPrism } from '../lib/app-builder';
import { loadConfig } from '../lib/config';

const app = new App();
const config = loadConfig((key) => app.node.tryGetContext(key));
// The repository root is the Docker build context (docker/worker.Dockerfile builds the workspace).
const repoRoot = path.resolve(__dirname, '..', '..');
// Undefined offline (no credentials): the stacks are then account-agnostic, which synth allows.
buildPrism(app, config, repoRoot, process.env.CDK_DEFAULT_ACCOUNT);

Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
