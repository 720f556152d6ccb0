import type { Profile, WorkloadId } from './config.js';
import { RESTORE_ORDER } from './report.js';
import { find, MILESTONES, type RunResult } from './results.js';

/**
 * A dependency-free SVG: one panel per (profile, workload), one group of horizontal bars per
 * milestone, one bar per peer. Each group has its own scale (the longest bar of the group is full
 * width) and every bar carries its value, so short and long times are both readable.
 */

const COLORS: Record<string, string> = {
  us: '#e4572e',
  'us-warm': '#f3a712',
  A: '#4c6085',
  B: '#39a0ed',
  C: '#76b041',
  'us-cold': '#e4572e',
  'us-record': '#f0a58f',
  'us-prefetch': '#b8321a',
  'us-cachefill': '#f7cf7a',
  'us-cachewarm': '#f3a712',
  'us-cachewarm-lower': '#c98a00',
  'us-hydrate': '#9c27b0',
  'A+ovl': '#4c6085',
  'B+ovl': '#39a0ed',
  'C+ovl': '#76b041',
  'C-bare': '#a6d47a',
};
const PEERS = ['us', 'us-warm', 'A', 'B', 'C'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderChart(results: RunResult[], profiles: Profile[], workloads: WorkloadId[], title: string): string {
  const width = 820;
  const labelW = 190;
  const barMax = width - labelW - 110;
  const barH = 12;
  const parts: string[] = [];
  let y = 40;
  parts.push(`<text x="10" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`);
  // legend
  let lx = 10;
  y += 4;
  for (const p of PEERS) {
    parts.push(
      `<rect x="${lx}" y="${y - 10}" width="12" height="12" fill="${COLORS[p]}"/><text x="${lx + 16}" y="${y}" font-size="12">${p}</text>`,
    );
    lx += 90;
  }
  y += 20;
  for (const prof of profiles) {
    for (const w of workloads) {
      const peers = (w === 'W2R' ? RESTORE_ORDER : PEERS).filter((peer) => find(results, prof, w, peer));
      if (peers.length === 0) continue;
      parts.push(
        `<text x="10" y="${y + 14}" font-size="14" font-weight="bold">${esc(`${w} — ${prof.name} (RTT ${prof.rttMs} ms)`)}</text>`,
      );
      y += 24;
      for (const m of MILESTONES[w]) {
        const values = peers.map((peer) => {
          const r = find(results, prof, w, peer)!;
          return peer === 'us-warm' && m.key === 'mounted' ? undefined : r.milestones[m.key];
        });
        const max = Math.max(1e-9, ...values.filter((v): v is number => v !== undefined && !Number.isNaN(v)));
        parts.push(`<text x="10" y="${y + barH}" font-size="12">${esc(m.label)}</text>`);
        peers.forEach((peer, i) => {
          const v = values[i];
          if (v === undefined || Number.isNaN(v)) return;
          const len = Math.max(1, (v / max) * barMax);
          const by = y + i * (barH + 2);
          parts.push(
            `<rect x="${labelW}" y="${by}" width="${len.toFixed(1)}" height="${barH}" fill="${COLORS[peer]}"><title>${peer}: ${(v / 1000).toFixed(3)} s</title></rect>`,
          );
          parts.push(
            `<text x="${labelW + len + 4}" y="${by + barH - 2}" font-size="10">${peer} ${(v / 1000).toFixed(2)} s</text>`,
          );
        });
        y += peers.length * (barH + 2) + 10;
      }
      y += 10;
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`;
}
