export * from './codes.js';
export * from './jit-error.js';
