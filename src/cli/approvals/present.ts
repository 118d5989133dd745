/**
 * How the requester sees the wait: an ink view on a TTY (loaded lazily), plain lines on stderr
 * otherwise. The reason prompt also lives here: only when stdin and stdout are TTYs.
 */
import type { AccessRequest, ApprovalRequirement } from '#shared/contract/http.js';
import { formatDuration } from '#shared/duration.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import type { OutputMode } from '../output/mode.js';
import { clean } from '../output/style.js';
import type { MountedView } from '../ui/mount.js';
import { type ApprovalObserver, approversText } from './wait.js';

export interface ApprovalPresenter extends ApprovalObserver {
  /** Leave the last frame on screen (the view), before the session's own output. */
  stop(): Promise<void>;
}

/** Ask for a reason on a TTY; without one, fail with exit 2 naming --reason. */
export async function askReason(ctx: Pick<Ctx, 'io'>, requirement: ApprovalRequirement): Promise<string> {
  const why = `A reason is required to request access to ${requirement.target} (rule ${requirement.rule})`;
  if (!ctx.io.stdin.isTTY || !ctx.io.stdout.isTTY) {
    throw new JitError('JIT_USAGE', { message: why, hint: `pass --reason "…" (shown to the approvers, kept in the audit log)` });
  }
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: ctx.io.stdin, output: ctx.io.stderr });
  try {
    for (let i = 0; i < 3; i++) {
      const answer = (await rl.question(`${why}.\nReason: `)).trim();
      if (answer.length > 0 && answer.length <= 1000) return answer;
    }
  } finally {
    rl.close();
  }
  throw new JitError('JIT_USAGE', { message: why, hint: 'pass --reason "…"' });
}

function approvalLine(r: AccessRequest): string {
  const a = r.approvals.at(-1);
  if (!a) return '';
  return `Approved by ${clean(a.approver)} (${r.approvals.length} of ${r.approvers.required})${a.comment ? `: "${clean(a.comment)}"` : ''}`;
}

/** The requester's view of the wait, for `mode`. */
export function createApprovalPresenter(ctx: Ctx, mode: OutputMode, opts: { wait: boolean } = { wait: true }): ApprovalPresenter {
  const ask = (req: ApprovalRequirement) => askReason(ctx, req);
  if (!mode.interactive || !opts.wait) {
    let seen = 0;
    return {
      askReason: ask,
      onRequestFiled(r, requirement) {
        seen = r.approvals.length;
        const left = (Date.parse(r.expiresAt) - ctx.clock.now()) / 1000;
        mode.status(
          requirement
            ? `Access to ${clean(r.target)} needs approval (rule ${clean(r.rule)}): request ${r.id} filed`
            : `Request ${r.id} for ${clean(r.target)} is ${r.state}`,
        );
        if (r.state === 'pending') {
          mode.status(
            opts.wait
              ? `Approvers: ${clean(approversText(r.approvers))}; waiting up to ${formatDuration(left)}. Ctrl-C cancels the request.`
              : `Approvers: ${clean(approversText(r.approvers))}; it expires in ${formatDuration(left)} unless decided.`,
          );
        }
      },
      onRequestUpdate(r) {
        // One line per new approval, then the decision (errors say denied / expired themselves).
        while (seen < r.approvals.length) {
          seen++;
          mode.status(approvalLine({ ...r, approvals: r.approvals.slice(0, seen) }));
        }
        if (r.state === 'approved') mode.status(`Request ${r.id} approved; opening the session`);
      },
      onWaitWarning(w) {
        if (w) mode.status(`! ${w}`);
      },
      stop: async () => {},
    };
  }
  let view: MountedView | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let latest: AccessRequest | undefined;
  let warning: string | undefined;
  let started = ctx.clock.now();
  let element: (() => import('react').ReactElement) | undefined;
  let mounting: Promise<void> | undefined;
  const render = () => {
    if (view && element) view.update(element());
  };
  return {
    askReason: ask,
    onRequestFiled(r) {
      latest = r;
      started = Date.parse(r.createdAt) || ctx.clock.now();
      mounting = mount(r);
    },
    onRequestUpdate(r) {
      latest = r;
      render();
    },
    onWaitWarning(w) {
      warning = w;
      render();
    },
    async stop() {
      await mounting?.catch(() => {});
      ctx.clock.clearInterval(ticker);
      render();
      await view?.done();
      view = undefined;
    },
  };

  async function mount(r: AccessRequest): Promise<void> {
    const [{ mountView }, react, { RequestView }] = await Promise.all([
      import('../ui/mount.js'),
      import('react'),
      import('../ui/request-view.js'),
    ]);
    element = () => {
      const cur = latest ?? r;
      return react.createElement(RequestView, {
        requestId: cur.id,
        target: cur.target,
        approvers: approversText(cur.approvers),
        required: cur.approvers.required,
        approvals: cur.approvals,
        elapsedSeconds: (ctx.clock.now() - started) / 1000,
        secondsLeft: (Date.parse(cur.expiresAt) - ctx.clock.now()) / 1000,
        approved: cur.state === 'approved',
        warning,
        color: mode.statusColor,
      });
    };
    view = await mountView(ctx, element());
    ticker = ctx.clock.setInterval(render, 1000);
  }
}
