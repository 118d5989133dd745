/**
 * Request notifications over webhooks, delivered from a durable outbox: a row is written in the
 * same transaction as the request's state change, and a worker POSTs it until the receiver
 * answers 2xx, with capped exponential backoff and jitter. Pending rows survive a restart (the
 * worker picks them up again); after `maxAttempts` the row is given up and that is audited.
 *
 * Every POST carries `X-Jit-Timestamp: <unix seconds>` and, when the webhook has a secret,
 * `X-Jit-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`. Payloads never carry secrets,
 * tokens or statement text (approvers see the statement with `jit requests <id>`).
 */
import { createHmac } from 'node:crypto';
import type { Notifications, Webhook } from '#shared/config/server.js';
import type { AccessRequest } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Selectable } from 'kysely';
import type { Db, OutboxTable } from '../store/db.js';
import { describeApprovers, type RequestNotifier } from './approval-service.js';

export type WebhookEvent = 'request.created' | 'request.decided';

/** The jit-format payload (what is stored in the outbox; the slack format is rendered from it). */
export interface WebhookPayload {
  event: WebhookEvent;
  request: Omit<AccessRequest, 'statement' | 'canReview'> & { statement?: { digest: string; kind?: string | undefined } };
  approve: { command: string; url: string };
  deny: { command: string };
}

export interface WebhookDeps {
  db: Db;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  fetch: typeof fetch;
  random(bytes: number): Buffer;
  config: Notifications;
  /** Environment, for `secretEnv`. */
  env: Readonly<Record<string, string | undefined>>;
  /** Base of the default link in notifications. */
  publicUrl: string;
  /** Per-POST timeout (default 10 s). */
  timeoutMs?: number;
}

interface ResolvedHook {
  url: string;
  secret: string | undefined;
  format: Webhook['format'];
  events: Set<string>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const BATCH = 20;

/** `sha256=<hex>`: the X-Jit-Signature of a body. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** The Slack incoming-webhook form of a notification: `{ text, blocks }`. */
export function slackMessage(p: WebhookPayload): { text: string; blocks: unknown[] } {
  const r = p.request;
  const what =
    r.kind === 'statement' ? `a ${r.statement?.kind ?? ''} statement on ${r.target}`.replace('a  ', 'a ') : `access to ${r.target}`;
  let text: string;
  if (p.event === 'request.created') {
    text = `${r.requester.username} requests ${what}${r.reason ? `: ${r.reason}` : ''} (request ${r.id})`;
  } else if (r.state === 'approved') {
    text = `Request ${r.id} (${r.requester.username}, ${what}) was approved by ${r.approvals.map((a) => a.approver).join(', ')}`;
  } else if (r.state === 'denied') {
    text = `Request ${r.id} (${r.requester.username}, ${what}) was denied by ${r.denial?.approver}: ${r.denial?.reason}`;
  } else {
    text = `Request ${r.id} (${r.requester.username}, ${what}) ${r.state}`;
  }
  // Slack's mrkdwn treats <, > and & specially: escape what users typed.
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const fields = [
    `*Requester*\n${esc(r.requester.username)}`,
    `*Target*\n${esc(r.target)}`,
    `*Rule*\n${esc(r.rule)}`,
    `*Approvers*\n${esc(describeApprovers(r.approvers))}`,
  ];
  const blocks: unknown[] = [
    { type: 'section', text: { type: 'mrkdwn', text: esc(text) } },
    { type: 'section', fields: fields.map((f) => ({ type: 'mrkdwn', text: f })) },
  ];
  if (p.event === 'request.created') {
    blocks.push({
      type: 'context',
      elements: [{ type: 'mrkdwn', text: `\`${p.approve.command}\` · \`${p.deny.command}\` · <${p.approve.url}|details>` }],
    });
  }
  return { text: esc(text), blocks };
}

/** The outbox (written inside request transactions) and its delivery worker. */
export class Webhooks implements RequestNotifier {
  private readonly hooks: ResolvedHook[];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(private readonly deps: WebhookDeps) {
    this.hooks = deps.config.webhooks.map((w, i) => {
      const u = new URL(w.url);
      if (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK.has(u.hostname))) {
        throw new JitError('JIT_CONFIG_INVALID', {
          message: `notifications.webhooks[${i}].url: plain http is allowed only on loopback`,
          hint: 'use an https:// URL',
        });
      }
      let secret = w.secret;
      if (w.secretEnv) {
        secret = deps.env[w.secretEnv];
        if (!secret) {
          throw new JitError('JIT_CONFIG_INVALID', {
            message: `notifications.webhooks[${i}].secretEnv: ${w.secretEnv} is not set`,
            hint: `set ${w.secretEnv} in the server's environment`,
          });
        }
      }
      return { url: w.url, secret, format: w.format, events: new Set(w.events) };
    });
  }

  /** Start the worker: a pass now (rows left by a previous run) and then periodically. */
  start(): void {
    const every = Math.max(200, Math.min(5000, (this.deps.config.retryInitial * 1000) / 2));
    this.timer = this.deps.clock.setInterval(() => this.kick(), every);
    this.timer.unref?.();
    this.kick();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.deps.clock.clearInterval(this.timer);
    await this.running;
  }

  /** Add one row per subscribed webhook, inside the caller's transaction. */
  async enqueue(trx: Db, event: WebhookEvent, request: AccessRequest): Promise<void> {
    const targets = this.hooks.filter((h) => h.events.has(event));
    if (targets.length === 0) return;
    const payload = JSON.stringify(this.payload(event, request));
    const now = this.deps.clock.now();
    for (const h of targets) {
      await trx
        .insertInto('webhook_outbox')
        .values({
          url: h.url,
          event,
          request_id: request.id,
          payload,
          state: 'pending',
          attempts: 0,
          next_attempt_at: now,
          last_error: null,
          created_at: now,
          delivered_at: null,
        })
        .execute();
    }
  }

  /** Run a delivery pass soon (after a commit, and on the timer). */
  kick(): void {
    if (this.closed || this.hooks.length === 0) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((err) => this.deps.logger.error({ err }, 'webhook delivery pass failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again && !this.closed) {
          this.again = false;
          this.kick();
        }
      });
  }

  private payload(event: WebhookEvent, r: AccessRequest): WebhookPayload {
    const { statement, canReview: _c, ...rest } = r;
    const tmpl = this.deps.config.approveUrl;
    return {
      event,
      request: { ...rest, ...(statement ? { statement: { digest: statement.digest, kind: statement.kind } } : {}) },
      approve: {
        command: `jit approve ${r.id}`,
        url: tmpl ? tmpl.replaceAll('{id}', r.id) : `${this.deps.publicUrl}/v1/requests/${r.id}`,
      },
      deny: { command: `jit deny ${r.id} --reason "…"` },
    };
  }

  private async pass(): Promise<void> {
    const now = this.deps.clock.now();
    const rows = await this.deps.db
      .selectFrom('webhook_outbox')
      .selectAll()
      .where('state', '=', 'pending')
      .where('next_attempt_at', '<=', now)
      .orderBy('id')
      .limit(BATCH)
      .execute();
    await Promise.all(rows.map((r) => this.deliver(r)));
  }

  private async deliver(row: Selectable<OutboxTable>): Promise<void> {
    const { db, clock, config } = this.deps;
    const hook = this.hooks.find((h) => h.url === row.url);
    if (!hook) {
      // The webhook was removed from the configuration: nobody to deliver to.
      await db
        .updateTable('webhook_outbox')
        .set({ state: 'dropped', last_error: 'webhook no longer configured' })
        .where('id', '=', row.id)
        .execute();
      return;
    }
    const attempt = row.attempts + 1;
    const timestamp = Math.floor(clock.now() / 1000);
    const stored = JSON.parse(row.payload) as WebhookPayload;
    const body = JSON.stringify(
      hook.format === 'slack' ? slackMessage(stored) : { ...stored, delivery: { id: row.id, attempt, timestamp } },
    );
    let error: string | undefined;
    const ac = new AbortController();
    const timer = clock.setTimeout(() => ac.abort(), this.deps.timeoutMs ?? 10_000);
    try {
      const res = await this.deps.fetch(hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'jit-webhooks/1',
          'x-jit-event': row.event,
          'x-jit-delivery': String(row.id),
          'x-jit-timestamp': String(timestamp),
          ...(hook.secret ? { 'x-jit-signature': signBody(hook.secret, body) } : {}),
        },
        body,
        signal: ac.signal,
        redirect: 'manual',
      });
      await res.body?.cancel().catch(() => {});
      if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`;
    } catch (err) {
      error = ac.signal.aborted ? 'timed out' : (((err as Error)?.cause as Error)?.message ?? (err as Error)?.message ?? 'failed');
    } finally {
      clock.clearTimeout(timer);
    }
    if (!error) {
      await db
        .updateTable('webhook_outbox')
        .set({ state: 'delivered', attempts: attempt, delivered_at: clock.now(), last_error: null })
        .where('id', '=', row.id)
        .execute();
      return;
    }
    const host = new URL(hook.url).host;
    if (attempt >= config.maxAttempts) {
      await this.deps.audit.append({
        type: 'webhook.failed',
        actor: 'jit',
        outcome: 'failure',
        data: { host, event: row.event, request: row.request_id, attempts: attempt, error: error.slice(0, 200) },
      });
      await db
        .updateTable('webhook_outbox')
        .set({ state: 'failed', attempts: attempt, last_error: error.slice(0, 500) })
        .where('id', '=', row.id)
        .execute();
      this.deps.logger.warn({ host, event: row.event, attempts: attempt }, 'webhook delivery given up');
      return;
    }
    // Exponential backoff, capped, with ±50% jitter so many rows do not retry in lockstep.
    const base = Math.min(config.retryMax, config.retryInitial * 2 ** (attempt - 1));
    const jitter = 0.5 + this.deps.random(2).readUInt16BE(0) / 65535;
    const delayMs = Math.max(100, Math.round(Math.min(config.retryMax, base * jitter) * 1000));
    await db
      .updateTable('webhook_outbox')
      .set({ attempts: attempt, next_attempt_at: clock.now() + delayMs, last_error: error.slice(0, 500) })
      .where('id', '=', row.id)
      .execute();
    this.deps.logger.info({ host, event: row.event, attempt, retryInMs: delayMs }, 'webhook delivery failed; will retry');
  }
}
