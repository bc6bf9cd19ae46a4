// The demo's seed data: a handful of users and a few thousand products, generated from word lists with a
// fixed-seed generator so every fresh database is the same (screenshots and tests can count on it).

export interface SeedUser {
  readonly login: string;
  readonly name: string;
  readonly email: string;
  readonly team: string;
}

export interface SeedProduct {
  readonly sku: string;
  readonly name: string;
  readonly category: string;
  readonly priceCents: number;
  readonly stock: number;
}

export const SEED_USERS: readonly SeedUser[] = [
  { login: 'alice', name: 'Alice Martin', email: 'alice@stockroom.example', team: 'Sales' },
  { login: 'bob', name: 'Bob Nguyen', email: 'bob@stockroom.example', team: 'Purchasing' },
  { login: 'carol', name: 'Carol Díaz', email: 'carol@stockroom.example', team: 'Warehouse' },
  { login: 'dave', name: 'Dave Okafor', email: 'dave@stockroom.example', team: 'Finance' },
  { login: 'erin', name: 'Erin Schulz', email: 'erin@stockroom.example', team: 'Support' },
  { login: 'frank', name: "Frank O'Neill", email: 'frank@stockroom.example', team: 'Sales' },
];

const CATALOG: Readonly<Record<string, readonly string[]>> = {
  Lighting: ['Desk Lamp', 'Floor Lamp', 'Pendant Light', 'Wall Sconce', 'LED Strip', 'Lantern'],
  Furniture: ['Side Table', 'Bookshelf', 'Writing Desk', 'Bar Stool', 'Armchair', 'Bench'],
  Kitchen: ["Chef's Knife", 'Cutting Board', 'Saucepan', 'Kettle', 'Colander', 'Mixing Bowl'],
  Garden: ['Planter', 'Watering Can', 'Hose Reel', 'Pruning Shears', 'Bird Feeder', 'Trowel'],
  Office: ['Notebook', 'Desk Organizer', 'Stapler', 'Monitor Stand', 'Pen Set', 'File Box'],
  Tools: ['Claw Hammer', 'Screwdriver Set', 'Tape Measure', 'Spirit Level', 'Utility Knife', 'Socket Set'],
  Textiles: ['Throw Blanket', 'Cushion Cover', 'Table Runner', 'Bath Towel', 'Rug', 'Curtain'],
  Storage: ['Storage Bin', 'Shoe Rack', 'Wall Hook', 'Basket', 'Crate', 'Drawer Divider'],
};

export const CATEGORIES: readonly string[] = Object.keys(CATALOG);

const MATERIALS = ['Oak', 'Walnut', 'Brass', 'Linen', 'Ceramic', 'Steel', 'Bamboo', 'Cotton', 'Copper', 'Slate', 'Birch', 'Wool'];
const VARIANTS = ['Small', 'Medium', 'Large', 'Black', 'White', 'Sage'];

/** Mulberry32: a tiny deterministic generator, plenty for seed data. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` products, the same ones for the same count. */
export function seedProducts(count: number): SeedProduct[] {
  const random = generator(20260101);
  const all: { name: string; category: string }[] = [];
  for (const [category, nouns] of Object.entries(CATALOG)) {
    for (const noun of nouns) for (const material of MATERIALS) for (const variant of VARIANTS) all.push({ name: `${material} ${noun} — ${variant}`, category });
  }
  // Fisher–Yates with the fixed generator: a mixed catalogue, not one category after another.
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [all[i], all[j]] = [all[j] as (typeof all)[number], all[i] as (typeof all)[number]];
  }
  return all.slice(0, count).map((p, i) => ({
    sku: `${p.category.slice(0, 3).toUpperCase()}-${String(10001 + i)}`,
    name: p.name,
    category: p.category,
    priceCents: 199 + Math.floor(random() * 300) * 50,
    stock: Math.floor(random() * random() * 400),
  }));
}
