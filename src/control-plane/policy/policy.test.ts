import { describe, expect, it } from 'vitest';
import { Policy } from '#shared/config/policy.js';
import { JitError } from '#shared/errors/jit-error.js';
import { PolicyEngine } from './policy.js';

const policy = Policy.parse({
  targets: [
    { name: 'prod-db', type: 'postgres', agent: 'a1', database: 'app', maxDuration: '4h' },
    { name: 'staging-db', type: 'postgres', agent: 'a1' },
  ],
  access: [
    { name: 'dba', targets: ['*'], users: ['dana'], grantRoles: ['admin_role'] },
    { name: 'eng-prod', targets: ['prod-db'], groups: ['engineers'], grantRoles: ['reader'], maxDuration: '1h' },
  ],
});

describe('PolicyEngine', () => {
  const engine = new PolicyEngine(policy, 8 * 3600);

  it('grants through the first matching rule, with the smallest duration limit', () => {
    const d = engine.decide({ username: 'erin', groups: ['engineers'] }, 'prod-db');
    expect(d.rule.name).toBe('eng-prod');
    expect(d.grantRoles).toEqual(['reader']);
    expect(d.maxDurationSeconds).toBe(3600);
  });

  it('denies by default, and an unknown target looks the same as a forbidden one', () => {
    const forbidden = () => engine.decide({ username: 'erin', groups: ['engineers'] }, 'staging-db');
    const unknown = () => engine.decide({ username: 'erin', groups: ['engineers'] }, 'nope');
    expect(forbidden).toThrow(JitError);
    expect(unknown).toThrow(JitError);
    const msg = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as JitError).code;
      }
    };
    expect(msg(forbidden)).toBe(msg(unknown));
  });

  it('lists only targets the caller may use', () => {
    expect(engine.visibleTargets({ username: 'erin', groups: ['engineers'] }).map((d) => d.target.name)).toEqual(['prod-db']);
    expect(engine.visibleTargets({ username: 'dana', groups: [] }).map((d) => d.target.name)).toEqual(['prod-db', 'staging-db']);
    expect(engine.visibleTargets({ username: 'mallory', groups: ['Engineers'] })).toEqual([]);
  });
});
