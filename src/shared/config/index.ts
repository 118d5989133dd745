export * from './agent.js';
export * from './load.js';
export * from './policy.js';
export * from './server.js';
