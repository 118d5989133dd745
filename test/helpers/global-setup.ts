/**
 * Starts one real PostgreSQL for the whole test run; tests read its address with
 * `inject('pg')` and make their own database / roles in it.
 */
import type { TestProject } from 'vitest/node';
import { startPostgres, type TestPostgres } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pg: { host: string; port: number; superUrl: string };
  }
}

let pg: TestPostgres | undefined;

export async function setup(project: TestProject): Promise<void> {
  pg = await startPostgres();
  project.provide('pg', { host: pg.host, port: pg.port, superUrl: pg.superUrl });
}

export async function teardown(): Promise<void> {
  await pg?.stop();
}
