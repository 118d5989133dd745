import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseYamlConfig } from '#shared/config/load.js';
import { Policy } from '#shared/config/policy.js';
import { agentTokenHash, devAgentConfig, policyYaml, writeDevConfig } from './config.js';

const HASH = 'scrypt$16384$8$1$c2FsdA==$aGFzaA==';

describe('jit dev configuration', () => {
  it('writes a server config the real schema accepts, with hashes only', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-dev-config-'));
    const config = writeDevConfig(dir, {
      port: 8443,
      users: [{ username: 'alice', name: 'Alice', email: 'alice@jit.example', groups: ['engineers'], passwordHash: HASH }],
      agentTokenHash: agentTokenHash('jat_secret-token'),
      heartbeatTimeoutSeconds: 7,
    });
    expect(config.listen).toBe('127.0.0.1:8443');
    expect(config.sessions.heartbeatTimeout).toBe(7);
    expect(config.admins.groups).toEqual(['jit-admins']);
    expect(config.agents).toEqual([{ name: 'local', tokenHash: agentTokenHash('jat_secret-token') }]);
    const text = readFileSync(path.join(dir, 'server.yaml'), 'utf8');
    expect(text).not.toContain('jat_secret-token');
    expect(statSync(path.join(dir, 'server.yaml')).mode & 0o077).toBe(0);
  });

  it('lets engineers reach demo-db as demo_writer for at most 8h, and demo-db-admin as demo_admin once bob approves', () => {
    const policy = parseYamlConfig(policyYaml(), Policy, 'policy.yaml');
    expect(policy.targets).toEqual([
      expect.objectContaining({ name: 'demo-db', type: 'postgres', agent: 'local', database: 'demo' }),
      expect.objectContaining({ name: 'demo-db-admin', type: 'postgres', agent: 'local', database: 'demo' }),
    ]);
    expect(policy.access).toEqual([
      expect.objectContaining({ targets: ['demo-db'], groups: ['engineers'], grantRoles: ['demo_writer'], maxDuration: 8 * 3600 }),
      expect.objectContaining({ targets: ['demo-db-admin'], groups: ['engineers'], grantRoles: ['demo_admin'], maxDuration: 3600 }),
    ]);
    expect(policy.approvals).toEqual([
      expect.objectContaining({ targets: ['demo-db-admin'], approvers: expect.objectContaining({ users: ['bob'] }) }),
    ]);
  });

  it('points the agent at the embedded PostgreSQL without TLS', () => {
    const cfg = devAgentConfig({
      controlPlane: 'http://127.0.0.1:8443',
      pgPort: 5555,
      adminUrl: 'postgresql://jit_admin:x@127.0.0.1:5555/demo',
    });
    expect(cfg.targets['demo-db']).toMatchObject({ type: 'postgres', host: '127.0.0.1', port: 5555, database: 'demo', sslmode: 'disable' });
    expect(agentTokenHash('abc')).toBe('sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
