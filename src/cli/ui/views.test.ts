// A .ts file (not .tsx) so the project's vitest include pattern picks it up; elements via createElement.
import { renderToString } from 'ink';
import { createElement } from 'react';
import { describe, expect, it } from 'vitest';
import { ConnectView } from './connect-view.js';
import { LoginView } from './login-view.js';

const login = { server: 'http://127.0.0.1:8443', userCode: 'ABCD-EFGH', color: false };

describe('ink views (no colour)', () => {
  it('login shows the complete URL, the code and the wait', () => {
    const out = renderToString(
      createElement(LoginView, { ...login, url: 'http://127.0.0.1:8443/oidc/device?user_code=ABCD-EFGH', secondsLeft: 599 }),
      { columns: 120 },
    );
    expect(out.replace(/^[^\n]*Waiting/m, '* Waiting')).toMatchInlineSnapshot(`
      "Logging in to http://127.0.0.1:8443
        Open http://127.0.0.1:8443/oidc/device?user_code=ABCD-EFGH
        and check that it shows the code ABCD-EFGH
      * Waiting for you to finish in the browser (code expires in 9m 59s)"
    `);
  });

  it('login, once finished, replaces the spinner with a check mark', () => {
    const out = renderToString(createElement(LoginView, { ...login, url: 'http://x/device', secondsLeft: 0, finished: true }), {
      columns: 120,
    });
    expect(out.split('\n').at(-1)).toMatchInlineSnapshot(`"✓ Finished in the browser"`);
  });

  it('connect shows target, address, counters and time left', () => {
    const out = renderToString(
      createElement(ConnectView, {
        target: 'prod-db',
        sessionId: 'abcdefghij0123456789',
        address: '127.0.0.1:5433',
        active: 1,
        total: 3,
        bytesIn: 2048,
        bytesOut: 512,
        secondsLeft: 1799,
        warning: 'heartbeat failed: The jit server cannot be reached',
        color: false,
      }),
      { columns: 120 },
    );
    expect(out).toMatchInlineSnapshot(`
      "● prod-db on 127.0.0.1:5433 (session abcdefghij0123456789)
        connections 1 open, 3 total · in 2.0 KiB · out 512 B · 29m 59s left
        ! heartbeat failed: The jit server cannot be reached
        Ctrl-C ends the session and removes its credential"
    `);
  });
});
