/** The version printed by `jit --version` and reported by agents. Kept equal to package.json by a test. */
export const VERSION = '0.1.0';
