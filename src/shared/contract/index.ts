export * from './agent.js';
export * from './grant.js';
export * from './http.js';
