import { describe, expect, it } from 'vitest';
import { DEMO_SIZES, generateDemoData, isLuhnValid, luhnCheckDigit, ORDER_STATUSES } from './seed-data.js';

describe('demo seed data', () => {
  it('computes Luhn check digits of known numbers', () => {
    expect(luhnCheckDigit('7992739871')).toBe(3);
    expect(luhnCheckDigit('411111111111111')).toBe(1);
    expect(isLuhnValid('4111111111111111')).toBe(true);
    expect(isLuhnValid('4111111111111112')).toBe(false);
    expect(isLuhnValid('')).toBe(false);
  });

  it('is the same on every run and differs by seed', () => {
    const a = generateDemoData();
    const b = generateDemoData();
    expect(b).toEqual(a);
    expect(generateDemoData(1, { customers: 5, orders: 5 }).customers).not.toEqual(
      generateDemoData(2, { customers: 5, orders: 5 }).customers,
    );
    // Pinned: docs and bug reports may name the first customer.
    expect(a.customers[0]).toMatchInlineSnapshot(`
      {
        "cardNumber": "5242809863074960",
        "createdAt": "2024-01-15T08:46:35.673Z",
        "email": "grace.adeyemi@example.net",
        "name": "Grace Adeyemi",
        "phone": "+1-415-555-0179",
      }
    `);
  });

  it('makes realistic, well-formed rows', () => {
    const { customers, orders, products } = generateDemoData();
    expect(customers).toHaveLength(DEMO_SIZES.customers);
    expect(orders).toHaveLength(DEMO_SIZES.orders);
    expect(products.length).toBeGreaterThanOrEqual(5);
    const emails = new Set<string>();
    for (const c of customers) {
      expect(c.cardNumber).toMatch(/^(4\d{15}|5[1-5]\d{14})$/);
      expect(isLuhnValid(c.cardNumber)).toBe(true);
      expect(c.email).toMatch(/^[a-z]+\.[a-z]+\d*@[a-z.]+\.(com|net|org|example)$/);
      expect(c.email.split('@')[1]).toMatch(/(^|\.)example(\.|$)/);
      expect(c.phone).toMatch(/^\+1-\d{3}-555-01\d{2}$/);
      emails.add(c.email.split('@')[0]!);
    }
    // Local parts are unique, so the email column could carry a unique index.
    expect(emails.size).toBe(customers.length);
    for (const o of orders) {
      expect(o.customerId).toBeGreaterThanOrEqual(1);
      expect(o.customerId).toBeLessThanOrEqual(customers.length);
      expect(o.amount).toMatch(/^\d+\.\d{2}$/);
      expect(ORDER_STATUSES).toContain(o.status);
      // An order never predates its customer.
      expect(Date.parse(o.createdAt)).toBeGreaterThanOrEqual(Date.parse(customers[o.customerId - 1]!.createdAt));
    }
  });
});
