// Requests that wait on their work time out through one sweep timer (src/fs/deadlines.ts).
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { Deadlines } from '../../src/fs/deadlines.js';
import { Errno } from '../../src/fs/errno.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('deadlines', () => {
  test('a request unanswered past the timeout gets ETIMEDOUT once, and its late answer is dropped', () => {
    const deadlines = new Deadlines(1000);
    const replies: unknown[][] = [];
    const reply = deadlines.track((...args) => replies.push(args));
    vi.advanceTimersByTime(900);
    expect(replies).toEqual([]);
    vi.advanceTimersByTime(400);
    expect(replies).toEqual([[Errno.ETIMEDOUT]]);
    expect(reply.timedOut).toBe(true);
    reply(0, 'late');
    expect(replies).toEqual([[Errno.ETIMEDOUT]]);
    expect(deadlines.timedOut).toBe(1);
    expect(deadlines.size).toBe(0);
  });

  test('an answer in time goes through once; nothing times out later, and the sweep stops', () => {
    const deadlines = new Deadlines(1000);
    const replies: unknown[][] = [];
    const reply = deadlines.track((...args) => replies.push(args));
    reply(5);
    reply(6);
    vi.advanceTimersByTime(5000);
    expect(replies).toEqual([[5]]);
    expect(reply.timedOut).toBe(false);
    expect(deadlines.timedOut).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
