/**
 * The test harness, one import away:
 *
 *   import { useNetnsFixture, runCnitool, snapshot, addressesOf } from '../helpers/index.js';
 */
export * from './exec.js';
export * from './paths.js';
export * from './netns.js';
export * from './cnitool.js';
export * from './snapshot.js';
