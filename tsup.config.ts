import { defineConfig } from 'tsup';

// One ESM bundle for the CLI, control plane and agent: `bin/jit.js` imports it.
// Dependencies stay external (installed by npm), so native addons and wasm files load from node_modules.
export default defineConfig({
  entry: { jit: 'src/cli/main.ts' },
  format: ['esm'],
  platform: 'node',
  target: 'node22',
  outDir: 'dist',
  sourcemap: true,
  clean: true,
  splitting: true,
  removeNodeProtocol: false,
  dts: false,
});
