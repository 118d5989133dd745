import { beforeAll, describe, expect, it } from 'vitest';
import { InspectionRules } from '#shared/contract/agent.js';
import { classifySql, loadSqlParser } from './classify.js';
import {
  admitStatement,
  type Carrier,
  functionCallStatement,
  type GateHooks,
  type GateRequest,
  type HoldDecision,
  ruleRefusal,
} from './gate.js';
import { judge } from './guard.js';

beforeAll(async () => {
  await loadSqlParser();
});

const rules = InspectionRules.parse({
  guardrails: [
    { name: 'no-drop', match: { kinds: ['drop'] }, action: 'block', message: 'Dropping is not allowed here' },
    { name: 'billing-writes', match: { relationsWritten: ['billing.*'] }, action: 'require-approval' },
    { name: 'kill-needs-approval', match: { functions: ['pg_terminate_backend'] }, action: 'require-approval' },
    { name: 'no-sleep', match: { functions: ['pg_sleep'] }, action: 'block' },
  ],
});

/** What the gate did, in order: the steps a statement went through. */
function run(req: GateRequest, opts: { decision?: HoldDecision; recorder?: boolean } = {}) {
  const steps: string[] = [];
  const hooks: GateHooks = {
    blocked: () => void steps.push('blocked'),
    hold: async (r) => {
      steps.push(`hold ${r.sql}${r.params ? ` [${r.params.join(',')}]` : ''}`);
      return opts.decision ?? { approved: false, reason: 'nobody answered' };
    },
    recorderReady: () => {
      steps.push('recorder?');
      return opts.recorder ?? true;
    },
  };
  return { steps, outcome: admitStatement(req, hooks) };
}

function sqlRequest(carrier: Carrier, sql: string, params?: (string | null)[]): GateRequest {
  const c = classifySql(sql);
  return { carrier, sql, c, verdict: judge(c, rules), params };
}

function fcallRequest(fn: string, params: (string | null)[]): GateRequest {
  const { sql, c } = functionCallStatement(fn);
  return { carrier: 'function-call', sql, c, verdict: judge(c, rules), params };
}

describe('the PostgreSQL gate', () => {
  it('forwards an allowed statement synchronously, only with the recorder connected', () => {
    const ok = run(sqlRequest('simple', 'select 1'));
    expect(ok.outcome).toEqual({ forward: true });
    expect(ok.steps).toEqual(['recorder?']);
    const down = run(sqlRequest('simple', 'select 1'), { recorder: false });
    expect(down.outcome).toMatchObject({ forward: false, refusal: { code: '57P03' } });
  });

  it('refuses a blocked statement before anything else, recording it, whatever the carrier', () => {
    for (const req of [
      sqlRequest('simple', 'drop table t'),
      sqlRequest('extended', 'drop table t'),
      fcallRequest('pg_catalog.pg_sleep', ['1']),
    ]) {
      const r = run(req);
      expect(r.steps).toEqual(['blocked']);
      expect(r.outcome).toMatchObject({ forward: false, refusal: { code: '42501', detail: expect.stringMatching(/^rule: no-/) } });
    }
  });

  it('holds require-approval the same way for Query, Execute and FunctionCall', async () => {
    const reqs = [
      sqlRequest('simple', 'update billing.invoices set paid = true'),
      sqlRequest('extended', 'update billing.invoices set paid = $1', ['true']),
      fcallRequest('pg_catalog.pg_terminate_backend', ['4242']),
    ];
    for (const req of reqs) {
      const denied = run(req);
      expect(denied.outcome).toBeInstanceOf(Promise);
      expect(await denied.outcome).toMatchObject({
        forward: false,
        refusal: { code: '42501', message: expect.stringContaining('needs approval') },
      });
      expect(denied.steps).toHaveLength(1);
      expect(denied.steps[0]).toContain(`hold ${req.sql}`);

      const approved = run(req, { decision: { approved: true, request: 'r1', scope: 'statement' } });
      expect(await approved.outcome).toEqual({ forward: true, approved: { request: 'r1', scope: 'statement' } });
      expect(approved.steps.at(-1)).toBe('recorder?');
    }
  });

  it('an approved statement is still refused when the recorder is gone; a cancel is 57014', async () => {
    const req = fcallRequest('pg_catalog.pg_terminate_backend', ['1']);
    expect(await run(req, { decision: { approved: true }, recorder: false }).outcome).toMatchObject({ refusal: { code: '57P03' } });
    expect(await run(req, { decision: { approved: false, reason: 'x', cancelled: true } }).outcome).toMatchObject({
      refusal: { code: '57014' },
    });
  });

  it('shows approvers the function call with its arguments', async () => {
    const r = run(fcallRequest('pg_catalog.pg_terminate_backend', ['4242']));
    await r.outcome;
    expect(r.steps).toEqual(['hold FUNCTION CALL pg_catalog.pg_terminate_backend [4242]']);
  });
});

describe('refusal wording', () => {
  it('names the deciding rule, or every rule that matched at that strictness', () => {
    const two = InspectionRules.parse({
      guardrails: [
        { name: 'no-drop', match: { kinds: ['drop'] }, action: 'block' },
        { name: 'no-billing', match: { relations: ['billing.*'] }, action: 'block' },
      ],
    });
    const both = ruleRefusal(judge(classifySql('drop table billing.invoices'), two));
    expect(both).toMatchObject({ code: '42501', message: 'jit: blocked by rule no-drop', detail: 'rules: no-drop, no-billing' });
    expect(ruleRefusal(judge(classifySql('drop table t'), two)).detail).toBe('rule: no-drop');
  });
});
