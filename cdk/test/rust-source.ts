/**
 * Reads what the Rust binaries expect straight from their sources, so the binary-contract test
 * fails when the Rust side changes and the CDK app does not follow:
 *
 * - {@link configKeys}: every `PRISM__SECTION__KEY` a binary's config deserializes. Config
 *   sections are `deny_unknown_fields`, so a variable the binary does not know stops it at start.
 * - {@link secretKeys}: the keys whose Rust type is `Secret` (must never be plain environment).
 * - {@link requiredWithAws}: the keys named in a "… required with backend = aws" error of the
 *   binary's crate, plus those of `CommonConfig::validate_worker` when the crate calls it.
 * - {@link dynamoActions}: the IAM actions behind the DynamoDB calls of the AWS adapter.
 *
 * This is a deliberately small reader of the house style (`pub field: Type,` lines inside
 * `pub struct Name { … }`, `#[serde(flatten)]` on its own line), not a Rust parser; it throws when
 * it finds nothing, so a reshaped source fails loudly instead of passing vacuously.
 */
import * as fs from 'fs';
import * as path from 'path';
import { REPO_ROOT } from './helpers';

/** One deployed binary: its crate directory and the file holding its `Config`. */
export interface BinarySource {
  readonly crate: string;
  readonly configFile: string;
}

/** The deployed binaries and their crates. */
const CRATES: Record<string, string> = {
  'prism-api': 'workers/api',
  'prism-resize': 'workers/resize',
  'prism-archiver': 'workers/archiver',
  'prism-metadata': 'workers/metadata',
};

/** Every crate has one shape: its `Config` lives in `src/config.rs`. */
export const BINARIES: Record<string, BinarySource> = Object.fromEntries(
  Object.entries(CRATES).map(([binary, crate]) => [binary, { crate, configFile: `${crate}/src/config.rs` }]),
);

/** Files defining the shared config sections (`CommonConfig`, `ConsumerConfig`, …). */
const SHARED_CONFIG_FILES = ['shared/src/config.rs', 'shared/src/consumer.rs'];

const read = (rel: string): string => fs.readFileSync(path.join(REPO_ROOT, rel), 'utf8');

interface Field {
  readonly name: string;
  readonly type: string;
  readonly flatten: boolean;
}

/** `pub struct Name { pub field: Type, … }` of `source`, by struct name. */
export function structs(source: string): Map<string, Field[]> {
  const out = new Map<string, Field[]>();
  for (const m of source.matchAll(/pub struct (\w+)\s*\{([\s\S]*?)\n\}/g)) {
    const fields: Field[] = [];
    let flatten = false;
    for (const line of m[2].split('\n')) {
      const t = line.trim();
      if (t.startsWith('#[serde(flatten)]')) flatten = true;
      const f = /^pub (\w+): (.+),$/.exec(t);
      if (f) {
        fields.push({ name: f[1], type: f[2], flatten });
        flatten = false;
      }
    }
    out.set(m[1], fields);
  }
  return out;
}

function binaryStructs(binary: string): Map<string, Field[]> {
  const all = new Map<string, Field[]>();
  for (const file of SHARED_CONFIG_FILES) structs(read(file)).forEach((v, k) => all.set(k, v));
  // The binary's own file last: its `Config` is the one that counts.
  structs(read(BINARIES[binary].configFile)).forEach((v, k) => all.set(k, v));
  if (!all.has('Config') || !all.has('CommonConfig')) throw new Error(`no Config/CommonConfig found for ${binary}`);
  return all;
}

/** Top-level fields of the binary's `Config`, with `#[serde(flatten)]` fields expanded. */
function topLevel(all: Map<string, Field[]>): Field[] {
  return (all.get('Config') ?? []).flatMap((f) => (f.flatten ? all.get(f.type) ?? [] : [f]));
}

const envName = (...parts: string[]) => ['PRISM', ...parts.map((p) => p.toUpperCase())].join('__');

/**
 * Every environment variable the binary's config accepts: `PRISM__FIELD` for plain top-level
 * fields, `PRISM__SECTION__FIELD` for the fields of each section struct.
 */
export function configKeys(binary: string): Set<string> {
  const all = binaryStructs(binary);
  const keys = new Set<string>();
  for (const f of topLevel(all)) {
    const section = all.get(f.type);
    if (section) section.forEach((s) => keys.add(envName(f.name, s.name)));
    else keys.add(envName(f.name));
  }
  if (keys.size < 10) throw new Error(`suspiciously few config keys for ${binary}: ${[...keys].join(', ')}`);
  return keys;
}

/** The keys whose Rust type is `shared::config::Secret` (redacted, never plain environment). */
export function secretKeys(binary: string): Set<string> {
  const all = binaryStructs(binary);
  const keys = new Set<string>();
  for (const f of topLevel(all)) {
    if (f.type === 'Secret') keys.add(envName(f.name));
    for (const s of all.get(f.type) ?? []) if (s.type === 'Secret') keys.add(envName(f.name, s.name));
  }
  return keys;
}

/** `section.key` names inside string literals that say "required with backend = aws". */
function requiredIn(source: string): string[] {
  const literals = [...source.matchAll(/"([^"\n]*required with backend = aws[^"\n]*)"/g)].map((m) => m[1]);
  return literals.flatMap((l) => [...l.matchAll(/\b([a-z_]+)\.([a-z_]+)\b/g)].map((m) => envName(m[1], m[2])));
}

function rustFiles(dir: string): string[] {
  return fs
    .readdirSync(path.join(REPO_ROOT, dir), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? rustFiles(path.join(dir, e.name)) : e.name.endsWith('.rs') ? [path.join(dir, e.name)] : []));
}

/** What the binary refuses to start without when `backend = aws`, as its own error messages say. */
export function requiredWithAws(binary: string): Set<string> {
  const sources = rustFiles(path.join(BINARIES[binary].crate, 'src')).map(read);
  const keys = new Set(sources.flatMap(requiredIn));
  if (sources.some((s) => s.includes('validate_worker()'))) {
    const shared = requiredIn(read('shared/src/config.rs'));
    if (shared.length === 0) throw new Error('no "required with backend = aws" message in shared/src/config.rs');
    shared.forEach((k) => keys.add(k));
  }
  return keys;
}

const pascal = (snake: string) => snake.replace(/(^|_)([a-z])/g, (_m, _u, c: string) => c.toUpperCase());

/**
 * IAM actions of the DynamoDB calls in the adapter: `.get_item()` → `dynamodb:GetItem`, …; a
 * `TransactWriteItems` is authorized per item, as `PutItem`/`UpdateItem`/`DeleteItem`/`ConditionCheckItem`.
 */
export function dynamoActions(): Set<string> {
  const source = read('shared/src/adapter/aws/dynamo_metadata_store.rs');
  const actions = new Set<string>();
  for (const m of source.matchAll(/\.(get_item|put_item|update_item|delete_item|query|scan|batch_get_item|batch_write_item|transact_get_items|transact_write_items)\(\)/g)) {
    if (m[1] !== 'transact_write_items') actions.add(`dynamodb:${pascal(m[1])}`);
  }
  const itemKinds: Record<string, string> = { put: 'PutItem', update: 'UpdateItem', delete: 'DeleteItem', condition_check: 'ConditionCheckItem' };
  for (const m of source.matchAll(/TransactWriteItem::builder\(\)\s*\.(put|update|delete|condition_check)\(/g)) {
    actions.add(`dynamodb:${itemKinds[m[1]]}`);
  }
  if (actions.size === 0) throw new Error('no DynamoDB calls found in dynamo_metadata_store.rs');
  return actions;
}
