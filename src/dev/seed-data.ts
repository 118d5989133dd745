/**
 * The demo database's rows, generated in code from a fixed seed: every `jit dev` on every machine
 * gets the same customers and orders, so docs and bug reports can name rows. Names, emails and
 * phone numbers look real but are not: emails use reserved example domains (RFC 2606) and phone
 * numbers the 555-01xx range reserved for fiction; card numbers pass the Luhn check (so masking
 * detectors have something to find) but use the documented test prefixes.
 */

export interface DemoCustomer {
  name: string;
  email: string;
  phone: string;
  cardNumber: string;
  /** ISO timestamp. */
  createdAt: string;
}

export interface DemoProduct {
  sku: string;
  name: string;
  /** Decimal string, two places. */
  price: string;
}

export interface DemoOrder {
  /** 1-based: customers get ids 1..n in insertion order. */
  customerId: number;
  /** Decimal string, two places. */
  amount: string;
  status: OrderStatus;
  createdAt: string;
}

export const ORDER_STATUSES = ['pending', 'paid', 'shipped', 'delivered', 'refunded', 'cancelled'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export interface DemoData {
  customers: DemoCustomer[];
  products: DemoProduct[];
  orders: DemoOrder[];
}

export const DEMO_SIZES = { customers: 3000, orders: 10_000 } as const;

const FIRST = [
  'Aaliyah',
  'Ahmed',
  'Aiko',
  'Alejandro',
  'Amara',
  'Anders',
  'Ana',
  'Arjun',
  'Beatriz',
  'Ben',
  'Camille',
  'Carlos',
  'Chen',
  'Chloe',
  'Daniel',
  'Dmitri',
  'Elena',
  'Emeka',
  'Emma',
  'Fatima',
  'Felix',
  'Grace',
  'Hana',
  'Hugo',
  'Ines',
  'Isaac',
  'Jamal',
  'Jana',
  'Javier',
  'Julia',
  'Kai',
  'Kenji',
  'Lara',
  'Liam',
  'Lucia',
  'Mateo',
  'Maya',
  'Mei',
  'Mohammed',
  'Nadia',
  'Noah',
  'Nora',
  'Olga',
  'Omar',
  'Paula',
  'Priya',
  'Rafael',
  'Rosa',
  'Sami',
  'Sara',
  'Sofia',
  'Tariq',
  'Thomas',
  'Tomas',
  'Valentina',
  'Wei',
  'Yara',
  'Yusuf',
  'Zara',
  'Zoe',
];
const LAST = [
  'Abe',
  'Adeyemi',
  'Almeida',
  'Andersson',
  'Bauer',
  'Becker',
  'Brown',
  'Castro',
  'Chen',
  'Costa',
  'Dubois',
  'Fischer',
  'Garcia',
  'Gonzalez',
  'Haddad',
  'Hansen',
  'Hernandez',
  'Ito',
  'Jensen',
  'Johnson',
  'Kaur',
  'Khan',
  'Kim',
  'Kowalski',
  'Larsen',
  'Lee',
  'Lopez',
  'Martin',
  'Meyer',
  'Moreau',
  'Müller',
  'Nakamura',
  'Nguyen',
  'Novak',
  'Okafor',
  'Olsen',
  'Patel',
  'Perez',
  'Petrov',
  'Popescu',
  'Rossi',
  'Santos',
  'Schmidt',
  'Silva',
  'Singh',
  'Smith',
  'Sousa',
  'Suzuki',
  'Tanaka',
  'Taylor',
  'Thompson',
  'Vargas',
  'Wagner',
  'Walker',
  'Wang',
  'Weber',
  'Williams',
  'Wilson',
  'Yilmaz',
  'Zhang',
];
const DOMAINS = ['example.com', 'example.net', 'example.org', 'mail.example', 'shop.example'];
const AREA_CODES = ['202', '212', '303', '312', '415', '503', '617', '646', '702', '808'];
const PRODUCTS: Array<[string, string, number]> = [
  ['KB-001', 'Mechanical keyboard', 8900],
  ['MS-002', 'Wireless mouse', 2900],
  ['MN-003', '27" monitor', 24900],
  ['HD-004', 'Noise-cancelling headphones', 19900],
  ['CB-005', 'USB-C cable (2 m)', 1200],
  ['DK-006', 'Laptop dock', 13900],
  ['WC-007', 'Webcam 1080p', 5900],
  ['LS-008', 'Laptop stand', 3900],
  ['SD-009', 'SSD 1 TB', 7900],
  ['CH-010', 'Desk chair', 32900],
  ['LM-011', 'Desk lamp', 3400],
  ['MP-012', 'Mouse pad XL', 1900],
];
// Weighted so that most orders are settled, as in a real shop.
const STATUS_WEIGHTS: Array<[OrderStatus, number]> = [
  ['pending', 6],
  ['paid', 14],
  ['shipped', 15],
  ['delivered', 55],
  ['refunded', 4],
  ['cancelled', 6],
];

const START = Date.UTC(2023, 0, 1);
const SPAN_MS = 730 * 86_400_000;

/** mulberry32: tiny, fast, and the same sequence everywhere for a given seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The Luhn check digit for a string of digits. */
export function luhnCheckDigit(digits: string): number {
  let sum = 0;
  // Walk from the right; the check digit will sit to the right of these, so double every first one.
  for (let i = digits.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

/** Whether a digit string passes the Luhn check. */
export function isLuhnValid(number: string): boolean {
  return /^\d{2,}$/.test(number) && luhnCheckDigit(number.slice(0, -1)) === Number(number.at(-1));
}

function asciiFold(s: string): string {
  return s
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase();
}

function money(cents: number): string {
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}

/** Generate the demo data set; the same output for the same seed. */
export function generateDemoData(seed = 20240601, sizes: { customers: number; orders: number } = DEMO_SIZES): DemoData {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const digits = (n: number) => {
    let s = '';
    for (let i = 0; i < n; i++) s += String(Math.floor(rnd() * 10));
    return s;
  };

  const customers: DemoCustomer[] = [];
  const createdMs: number[] = [];
  const emailsSeen = new Map<string, number>();
  for (let i = 0; i < sizes.customers; i++) {
    const first = pick(FIRST);
    const last = pick(LAST);
    const local = `${asciiFold(first)}.${asciiFold(last)}`;
    const n = (emailsSeen.get(local) ?? 0) + 1;
    emailsSeen.set(local, n);
    // Visa test range 4xxx or Mastercard 51-55: 15 digits plus the Luhn check digit.
    const prefix = rnd() < 0.6 ? `4${digits(5)}` : `5${1 + Math.floor(rnd() * 5)}${digits(4)}`;
    const body = prefix + digits(9);
    const created = START + Math.floor(rnd() * SPAN_MS);
    createdMs.push(created);
    customers.push({
      name: `${first} ${last}`,
      email: `${n === 1 ? local : `${local}${n}`}@${pick(DOMAINS)}`,
      phone: `+1-${pick(AREA_CODES)}-555-01${digits(2)}`,
      cardNumber: body + String(luhnCheckDigit(body)),
      createdAt: new Date(created).toISOString(),
    });
  }

  const products = PRODUCTS.map(([sku, name, cents]) => ({ sku, name, price: money(cents) }));

  const totalWeight = STATUS_WEIGHTS.reduce((n, [, w]) => n + w, 0);
  const orders: DemoOrder[] = [];
  const end = START + SPAN_MS;
  for (let i = 0; i < sizes.orders; i++) {
    const customerId = 1 + Math.floor(rnd() * sizes.customers);
    const since = createdMs[customerId - 1]!;
    let w = rnd() * totalWeight;
    let status: OrderStatus = 'delivered';
    for (const [s, weight] of STATUS_WEIGHTS) {
      w -= weight;
      if (w < 0) {
        status = s;
        break;
      }
    }
    // One to four items' worth of the catalogue's price range.
    const cents = 1200 + Math.floor(rnd() * 60_000);
    orders.push({
      customerId,
      amount: money(cents),
      status,
      createdAt: new Date(since + Math.floor(rnd() * (end - since))).toISOString(),
    });
  }
  return { customers, products, orders };
}
