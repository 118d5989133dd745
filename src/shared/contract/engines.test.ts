import { describe, expect, it } from 'vitest';
import { AgentConfig } from '../config/agent.js';
import { parseYamlConfig } from '../config/load.js';
import { Policy } from '../config/policy.js';
import { AgentHello } from './agent.js';
import { ENGINES, TARGET_TYPES, verbRefusal } from './engines.js';

const policyWith = (target: string) => `targets:\n  - name: t1\n    agent: a1\n${target}access: []\n`;
const loadPolicy = (text: string) => parseYamlConfig(text, Policy, 'policy.yaml');
const message = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  return 'accepted';
};

describe('engine registry', () => {
  it('lists exactly the types an engine serves', () => {
    expect(TARGET_TYPES).toEqual(['postgres', 'ssh']);
  });

  it('refuses a tcp target in the policy with a message that says why', () => {
    const m = message(() => loadPolicy(policyWith('    type: tcp\n')));
    expect(m).toMatch(/^policy\.yaml:\d+: targets\.0\.type: type "tcp" is not supported: jit inspects every session at Layer 7/);
    expect(m).toContain('the types are postgres, ssh');
  });

  it('refuses an unknown type and names the known ones', () => {
    expect(message(() => loadPolicy(policyWith('    type: mysql\n')))).toContain(
      'unknown target type "mysql": the types are postgres, ssh',
    );
  });

  it('refuses a field of another engine on a target', () => {
    expect(message(() => loadPolicy(policyWith('    type: ssh\n    database: app\n')))).toContain(
      'targets.0.database: database applies to postgres targets only, not to a ssh target',
    );
    expect(message(() => loadPolicy(policyWith('    type: postgres\n    recordInput: true\n')))).toContain(
      'recordInput applies to ssh targets only',
    );
    expect(loadPolicy(policyWith('    type: postgres\n    database: app\n')).targets[0]).toMatchObject({
      type: 'postgres',
      database: 'app',
    });
  });

  it('refuses a tcp target in the agent config and in an agent hello', () => {
    const agent = 'name: a1\ncontrolPlane: http://127.0.0.1:1\ntargets:\n  raw:\n    type: tcp\n    host: h\n';
    expect(message(() => parseYamlConfig(agent, AgentConfig, 'agent.yaml'))).toMatch(
      /agent\.yaml:\d+: targets\.raw\.type: type "tcp" is not supported/,
    );
    const hello = { type: 'hello', agent: 'a1', version: '1', protocol: 1, capabilities: [], targets: [{ name: 'raw', type: 'tcp' }] };
    expect(AgentHello.safeParse(hello).success).toBe(false);
    expect(AgentHello.safeParse({ ...hello, targets: [{ name: 'db', type: 'postgres' }] }).success).toBe(true);
  });

  it('says which verb opens which type', () => {
    expect(verbRefusal('connect', 'prod-db', 'postgres')).toBeUndefined();
    expect(verbRefusal('ssh', 'web-1', 'ssh')).toBeUndefined();
    expect(verbRefusal('connect', 'web-1', 'ssh')).toBe('web-1 is an SSH host, which jit connect does not open (use jit ssh or jit exec)');
    expect(verbRefusal('ssh', 'prod-db', 'postgres')).toContain('use jit connect or jit exec');
    for (const spec of Object.values(ENGINES)) expect(spec.verbs).toContain('exec');
  });
});
