/**
 * setupFiles entry of the integration project: runs in each test file's
 * worker. After the file, anything the file's tests created through the
 * helpers and did not delete is removed, so one file's leak cannot change
 * the next file's world; a leak is reported rather than silently fixed.
 */
import { afterAll } from 'vitest';
import { releaseProcessResources } from './netns.js';

afterAll(async () => {
  const leaked = await releaseProcessResources();
  if (leaked.length > 0) {
    console.warn(`harness: deleted netns left behind by this file's tests: ${leaked.join(', ')}`);
  }
});
