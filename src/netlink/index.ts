/** The kernel boundary: every network change of the product goes through here. */
export * from './errors.js';
export * from './handle.js';
export * from './ip.js';
export * from './netns.js';
export * from './sysctl.js';
export * from './bridge.js';
