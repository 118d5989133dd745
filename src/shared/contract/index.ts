export * from './agent.js';
export * from './engines.js';
export * from './grant.js';
export * from './http.js';
