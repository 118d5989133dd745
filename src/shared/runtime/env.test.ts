import { describe, expect, it } from 'vitest';
import { JIT_ENV, readEnv, readEnvFlag, readEnvText, SECRET_ENV } from './env.js';

describe('the JIT_* environment table', () => {
  it('reads switches, text and raw values', () => {
    for (const on of ['1', 'true', 'YES', 'on']) expect(readEnvFlag({ JIT_DEBUG: on }, 'JIT_DEBUG')).toBe(true);
    for (const off of [undefined, '', '0', 'false', 'no', '1 ']) expect(readEnvFlag({ JIT_DEBUG: off }, 'JIT_DEBUG')).toBe(false);
    expect(readEnvText({ JIT_SERVER: '  https://x  ' }, 'JIT_SERVER')).toBe('https://x');
    expect(readEnvText({ JIT_SERVER: '   ' }, 'JIT_SERVER')).toBeUndefined();
    expect(readEnv({ JIT_KEYRING: ' file' }, 'JIT_KEYRING')).toBe(' file');
  });

  it('marks every credential secret, so jit exec withholds it from the child', () => {
    expect([...SECRET_ENV].sort()).toEqual(['JIT_AGENT_TOKEN', 'JIT_CLIENT_SECRET', 'JIT_ID_TOKEN', 'JIT_TOKEN']);
    for (const name of Object.keys(JIT_ENV)) expect(name).toMatch(/^JIT_[A-Z_]+$/);
  });
});
