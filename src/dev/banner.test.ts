import { describe, expect, it } from 'vitest';
import { bannerText } from './banner.js';

const users = [
  { username: 'alice', password: 'abcd-efgh-jkmn', groups: ['engineers'] },
  { username: 'bob', password: 'pqrs-tuvw-xyz2', groups: ['engineers', 'jit-admins'] },
];

describe('jit dev banner', () => {
  it('shows the URL, users, port and the README walkthrough', () => {
    const text = bannerText({
      serverUrl: 'http://127.0.0.1:8443',
      serverPort: 8443,
      pgPort: 54321,
      dirShown: '.jit-dev',
      users,
      inCheckout: true,
      agentConnected: true,
      color: false,
    });
    expect(text).toMatchInlineSnapshot(`
      "
      ● jit dev is running  (state in .jit-dev)

        Control plane  http://127.0.0.1:8443
        PostgreSQL     127.0.0.1:54321  database demo, target demo-db — reach it through jit connect
        Dev users      alice  abcd-efgh-jkmn  engineer; groups: engineers
                       bob    pqrs-tuvw-xyz2  administrator; groups: engineers, jit-admins

      Next, in a second terminal in this folder:

        alias jit="node $PWD/bin/jit.js"  # run the CLI from this checkout
        jit login                         # open the URL it prints; log in as alice
        jit connect demo-db               # prints a postgresql:// URL; leave it running
        psql "<that URL>"                 # in a third terminal; try: select count(*) from customers;

      Ctrl-C stops everything (data is kept); --reset starts from scratch. Details: docs/getting-started.md
      "
    `);
  });

  it('names the server on login when not on the default port, and warns about a missing agent', () => {
    const text = bannerText({
      serverUrl: 'http://127.0.0.1:9000',
      serverPort: 9000,
      pgPort: 5432,
      dirShown: '/tmp/x',
      users,
      inCheckout: false,
      agentConnected: false,
      color: false,
    });
    expect(text).toContain('jit login --server http://127.0.0.1:9000');
    expect(text).toContain('the agent has not connected yet');
    expect(text).not.toContain('alias jit=');
  });
});
