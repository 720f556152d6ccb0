/** Case `index` of a run with `seed`: which base image and which mutation. Pure function of its inputs. */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import type { BaseImage } from './base-images.js';
import { type ImageLayout, mapImage } from './image-layout.js';
import { type Strategy, mutate } from './mutations.js';
import { Prng } from './prng.js';

export interface LoadedBase extends BaseImage {
  bytes: Buffer;
  layout: ImageLayout;
}

export interface FuzzCase {
  index: number;
  base: string;
  strategy: Strategy | 'as-is';
  edits: string[];
  bytes: Buffer;
}

export function loadBases(bases: BaseImage[]): LoadedBase[] {
  return bases.map((b) => {
    const bytes = readFileSync(b.path);
    return { ...b, bytes, layout: mapImage(bytes) };
  });
}

export function makeCase(seed: number, index: number, bases: LoadedBase[]): FuzzCase {
  const rng = Prng.forCase(seed, index);
  const base = rng.weighted(bases.map((b) => [b, b.weight] as const));
  const m = mutate(rng, base.bytes, base.layout);
  return { index, base: base.name, strategy: m.strategy, edits: m.edits, bytes: m.bytes };
}

/** A stored image (regression fixture), gunzipped when it ends in .gz. */
export function readImageFile(path: string): Buffer {
  const raw = readFileSync(path);
  return path.endsWith('.gz') ? gunzipSync(raw) : raw;
}
