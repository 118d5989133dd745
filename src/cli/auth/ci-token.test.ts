import { describe, expect, it } from 'vitest';
import { ciCredentialFrom } from './ci-token.js';

const GH = { ACTIONS_ID_TOKEN_REQUEST_URL: 'https://gh.example/token?x=1', ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'req' };

describe('ciCredentialFrom: which CI identity wins', () => {
  it('none of the variables → the stored login', () => {
    expect(ciCredentialFrom({ HOME: '/h', JIT_SERVER: 'https://jit.example' })).toBeUndefined();
  });

  it('follows the documented order: --id-token-file, JIT_TOKEN, JIT_ID_TOKEN, JIT_ID_TOKEN_FILE, client credentials, GitHub Actions', () => {
    const all = {
      ...GH,
      JIT_TOKEN: 'jit',
      JIT_ID_TOKEN: 'id',
      JIT_ID_TOKEN_FILE: '/f',
      JIT_CLIENT_ID: 'c',
      JIT_CLIENT_SECRET: 's',
    };
    expect(ciCredentialFrom(all, { idTokenFile: '/flag' })).toMatchObject({
      kind: 'id-token-file',
      from: '--id-token-file',
      file: '/flag',
    });
    expect(ciCredentialFrom(all)).toMatchObject({ kind: 'jit-token', token: 'jit' });
    const { JIT_TOKEN: _a, ...noJit } = all;
    expect(ciCredentialFrom(noJit)).toMatchObject({ kind: 'id-token', token: 'id' });
    const { JIT_ID_TOKEN: _b, ...noId } = noJit;
    expect(ciCredentialFrom(noId)).toMatchObject({ kind: 'id-token-file', from: 'JIT_ID_TOKEN_FILE' });
    const { JIT_ID_TOKEN_FILE: _c, ...noFile } = noId;
    expect(ciCredentialFrom(noFile)).toMatchObject({ kind: 'client-credentials', clientId: 'c' });
    const { JIT_CLIENT_ID: _d, JIT_CLIENT_SECRET: _e, ...onlyGh } = noFile;
    expect(ciCredentialFrom(onlyGh)).toMatchObject({ kind: 'github-actions', requestUrl: GH.ACTIONS_ID_TOKEN_REQUEST_URL });
    expect(ciCredentialFrom({ ...onlyGh, JIT_ID_TOKEN_AUDIENCE: 'aud' })).toMatchObject({ audience: 'aud' });
  });

  it('ignores empty values, and GitHub Actions needs both variables', () => {
    expect(ciCredentialFrom({ JIT_TOKEN: '  ', JIT_ID_TOKEN: '' })).toBeUndefined();
    expect(ciCredentialFrom({ ACTIONS_ID_TOKEN_REQUEST_URL: GH.ACTIONS_ID_TOKEN_REQUEST_URL })).toBeUndefined();
  });

  it('refuses half a service account rather than silently using the stored login', () => {
    expect(() => ciCredentialFrom({ JIT_CLIENT_ID: 'c' })).toThrow(/JIT_CLIENT_ID and JIT_CLIENT_SECRET go together/);
  });
});
