// The few media facts the simulator and the gateway share: a PNG of one colour (what the simulated image model
// draws), and WAV/PCM durations (what audio is billed by).
import { crc32, deflateSync } from 'node:zlib';

/** A valid PNG of `width` x `height` pixels of one RGB colour. */
export function solidPng(width: number, height: number, rgb: [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const row = Buffer.alloc(1 + width * 3);
  for (let x = 0; x < width; x++) row.set(rgb, 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The simulated speech format: 24 kHz, 16-bit, mono (OpenAI's `pcm`). */
export const SPEECH_SAMPLE_RATE = 24_000;
const BYTES_PER_SECOND = SPEECH_SAMPLE_RATE * 2;

/** A 44-byte WAV header for `dataBytes` of 16-bit mono PCM at `sampleRate`. */
export function wavHeader(dataBytes: number, sampleRate = SPEECH_SAMPLE_RATE): Buffer {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(36 + dataBytes, 4);
  h.write('WAVEfmt ', 8, 'ascii');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE(sampleRate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36, 'ascii');
  h.writeUInt32LE(dataBytes, 40);
  return h;
}

/** The byte rate a WAV file declares, or null when the bytes are not a WAV header. */
export function wavByteRate(head: Buffer): number | null {
  if (head.length < 44 || head.toString('ascii', 0, 4) !== 'RIFF' || head.toString('ascii', 8, 12) !== 'WAVE') return null;
  const rate = head.readUInt32LE(28);
  return rate > 0 ? rate : null;
}

/**
 * Seconds of audio in a whole file or stream of `totalBytes` that began with `head`: a WAV by its declared byte rate,
 * anything else as OpenAI's raw `pcm` (24 kHz, 16-bit mono).
 */
export function audioSeconds(head: Buffer, totalBytes: number): number {
  const rate = wavByteRate(head);
  return rate ? Math.max(0, totalBytes - 44) / rate : totalBytes / BYTES_PER_SECOND;
}
