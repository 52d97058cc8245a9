/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    // tsconfig sets isolatedModules, so ts-jest transpiles file by file (fast); type checking is
    // `tsc --noEmit`'s job, which scripts/test-cdk.sh runs first.
    '^.+\\.tsx?$': ['ts-jest', {}],
  },
  // Every test synthesises whole stacks; give slow CI machines room.
  testTimeout: 120000,
};
