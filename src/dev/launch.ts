/**
 * The composition root for the long-running parts. `jit server`, `jit agent` and `jit hash-password`
 * reach the control plane and the agent only through this module, loaded with a dynamic import()
 * so that `jit connect` never loads fastify, oidc-provider or the engines. The CLI, the control
 * plane and the agent do not import each other (enforced by the layer rules in biome.json).
 */
export { startAgent } from '#agent/main.js';
export { startServer } from '#control-plane/main.js';
export { hashPassword } from '#control-plane/identity/password.js';
