const SIZE = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i;
const POWER: Record<string, number> = { '': 0, k: 1, m: 2, g: 3, t: 4 };

/** "64M", "1G", "512k", "1GiB", "1.5g", "1048576" -> bytes (binary units). Throws on anything else. */
export function parseSize(text: string): number {
  const m = SIZE.exec(text.trim());
  if (!m) throw new Error(`invalid size ${JSON.stringify(text)} (examples: 64M, 1G)`);
  const bytes = Math.floor(Number(m[1]) * 1024 ** (POWER[(m[2] as string).toLowerCase()] as number));
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`invalid size ${JSON.stringify(text)}`);
  return bytes;
}
