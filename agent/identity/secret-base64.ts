// Standard base64 (RFC 4648 §4) between Buffers, for PEM bodies that carry a private key: Node's
// encoder only produces, and its decoder only takes, JS strings, which can never be zeroed. These
// work on bytes only, so every copy of the key is a buffer its owner fills with zeros.
const ALPHABET = Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "latin1");
const PAD = 0x3d; // '='
const VALUE = new Int16Array(256).fill(-1);
ALPHABET.forEach((c, i) => (VALUE[c] = i));

/** Encoded bytes, padded. */
export function encodeBase64(data: Uint8Array): Buffer {
  const out = Buffer.alloc(Math.ceil(data.length / 3) * 4);
  let o = 0;
  for (let i = 0; i < data.length; i += 3) {
    const n = (data[i]! << 16) | ((data[i + 1] ?? 0) << 8) | (data[i + 2] ?? 0);
    out[o++] = ALPHABET[(n >> 18) & 63]!;
    out[o++] = ALPHABET[(n >> 12) & 63]!;
    out[o++] = i + 1 < data.length ? ALPHABET[(n >> 6) & 63]! : PAD;
    out[o++] = i + 2 < data.length ? ALPHABET[n & 63]! : PAD;
  }
  return out;
}

/**
 * Decoded bytes of canonical padded base64 (length a multiple of 4, '=' only at the end, unused
 * bits zero), or the offset of the first bad character.
 */
export function decodeBase64(text: Uint8Array): Buffer | { badAt: number } {
  if (text.length === 0 || text.length % 4 !== 0) return { badAt: text.length };
  const pad = text[text.length - 1] === PAD ? (text[text.length - 2] === PAD ? 2 : 1) : 0;
  const out = Buffer.alloc((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const at = i + j;
      const isPad = at >= text.length - pad;
      const v = isPad ? (text[at] === PAD ? 0 : -1) : VALUE[text[at]!]!;
      if (v < 0) {
        out.fill(0);
        return { badAt: at };
      }
      n = (n << 6) | v;
    }
    const three = [(n >> 16) & 255, (n >> 8) & 255, n & 255];
    for (let j = 0; j < 3 && o < out.length; j++) out[o++] = three[j]!;
    // Non-canonical: bits under the padding must be zero.
    if (i + 4 === text.length && ((pad === 1 && (n & 0xff) !== 0) || (pad === 2 && (n & 0xffff) !== 0))) {
      out.fill(0);
      return { badAt: text.length - pad - 1 };
    }
  }
  return out;
}
