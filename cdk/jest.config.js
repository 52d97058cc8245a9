/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    // Type checking is `tsc --noEmit`'s job (scripts/test-cdk.sh runs it first); transpiling
    // per file keeps the jest run fast on small CI machines.
    '^.+\\.tsx?$': ['ts-jest', { isolatedModules: true }],
  },
  // Every test synthesises whole stacks; give slow CI machines room.
  testTimeout: 120000,
};
