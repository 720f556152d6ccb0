import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons (fuse-native, decompressors) and real mounts are safest in child processes.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Two cores: more parallel files only fight over CPU and loop devices.
    maxWorkers: 2,
  },
});
