/**
 * getfattr's quoting, which `setfattr --restore` undoes: backslash, control characters, spaces
 * and non-ASCII bytes as \ooo octal (so names with newlines or leading/trailing spaces survive).
 */
export function quoteForSetfattr(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out +=
      byte <= 0x20 || byte === 0x5c || byte === 0x3d || byte >= 0x7f
        ? `\\${byte.toString(8).padStart(3, '0')}`
        : String.fromCharCode(byte);
  }
  return out;
}
