#!/usr/bin/env node
// Thin entry: the real program is the bundle built by `npm run build` (tsup → dist/jit.js).
import { run } from '../dist/jit.js';

process.exitCode = await run(process.argv);
