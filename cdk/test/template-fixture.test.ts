/**
 * The stateful template the Rust end-to-end tests deploy onto moto
 * (`workers/cli/tests/support/cfn_moto.rs`): a `dev`, ephemeral stage, kept in
 * `test/fixtures/` so the cargo tests need no Node. This test fails when the CDK app declares
 * anything else, so the shape the pipeline is tested on cannot drift from the shape deployed.
 *
 * After a deliberate change to the stateful stack, rewrite the fixture:
 *   PRISM_UPDATE_FIXTURES=1 npx jest test/template-fixture.test.ts
 */
import * as fs from 'fs';
import * as path from 'path';
import { synthPrism } from './helpers';

const FIXTURE = path.join(__dirname, 'fixtures', 'Prism-dev-Stateful.template.json');

test('the moto fixture is the stateful template the app synthesizes for a dev stage', () => {
  const s = synthPrism({ stage: 'dev', ephemeral: true });
  expect(s.stateful.stackName).toBe('Prism-dev-Stateful');
  const now = JSON.stringify(s.stateful_.toJSON(), null, 1) + '\n';
  if (process.env.PRISM_UPDATE_FIXTURES === '1') {
    fs.writeFileSync(FIXTURE, now);
  }
  const kept = fs.existsSync(FIXTURE) ? fs.readFileSync(FIXTURE, 'utf8') : '(missing)';
  if (kept !== now) {
    throw new Error(
      `${path.relative(process.cwd(), FIXTURE)} is not what the app synthesizes: if the change to the stateful ` +
        'stack is deliberate, run PRISM_UPDATE_FIXTURES=1 npx jest test/template-fixture.test.ts and commit the fixture ' +
        '(the moto end-to-end tests deploy it)',
    );
  }
});
