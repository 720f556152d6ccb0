/** Messages between the fuzz supervisor and its worker process (IPC, one JSON object each). */
import type { BaseImage } from './base-images.js';
import type { Budget, ExerciseResult } from './exercise.js';

export interface WorkerConfig {
  /** Mutations of these bases, from case `start` on... */
  bases?: BaseImage[];
  seed: number;
  start: number;
  /** ...or these stored images as they are (regression mode). */
  images?: string[];
  budget: Budget;
}

export type WorkerMessage =
  | { t: 'ready'; pristine: { base: string; result: ExerciseResult }[] }
  | { t: 'start'; index: number }
  | {
      t: 'done';
      index: number;
      base: string;
      strategy: string;
      edits: string[];
      result: ExerciseResult;
      ms: number;
      peakRss: number;
      peakHeap: number;
    };
