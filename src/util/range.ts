/** Whether `[offset, offset + length)` is a range of safe integers inside an object of `size` bytes. */
export function rangeInside(offset: number, length: number, size: number): boolean {
  return Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= size;
}
