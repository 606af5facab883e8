// multipart/form-data (what /v1/audio/transcriptions takes) read into fields and files, for the gateway and the
// simulator alike. Parsing is @fastify/busboy's.
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import Busboy from '@fastify/busboy';

export interface FormFile {
  data: Buffer;
  filename: string;
  mimeType: string;
}

export interface Form {
  fields: Record<string, string>;
  files: Record<string, FormFile>;
}

/** Reads a multipart body (a stream, or bytes already read) whole; a file past `fileLimit` bytes fails it. */
export function readForm(headers: IncomingHttpHeaders, body: Readable | Buffer, fileLimit: number): Promise<Form> {
  return new Promise((resolve, reject) => {
    const type = headers['content-type'];
    if (!type || !/^multipart\/form-data/i.test(type)) return reject(new Error('the body must be multipart/form-data'));
    let bb: InstanceType<typeof Busboy>;
    try {
      bb = new Busboy({ headers: { ...headers, 'content-type': type }, limits: { fileSize: fileLimit, files: 4, fields: 64 } });
    } catch (err) {
      return reject(err as Error);
    }
    const form: Form = { fields: {}, files: {} };
    bb.on('field', (name, value) => (form.fields[name] = value));
    bb.on('file', (name, stream, filename, _encoding, mimeType) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('limit', () => reject(new Error(`file '${name}' is larger than ${fileLimit} bytes`)));
      stream.on('end', () => (form.files[name] = { data: Buffer.concat(chunks), filename, mimeType }));
    });
    bb.on('error', reject);
    bb.on('finish', () => resolve(form));
    (Buffer.isBuffer(body) ? Readable.from([body]) : body).pipe(bb);
  });
}

/** A form as a multipart body again (with its boundary in the content type), to send on. */
export async function encodeForm(form: Form): Promise<{ body: Buffer; contentType: string }> {
  const fd = new FormData();
  for (const [k, v] of Object.entries(form.fields)) fd.append(k, v);
  for (const [k, f] of Object.entries(form.files)) fd.append(k, new Blob([new Uint8Array(f.data)], { type: f.mimeType }), f.filename);
  const r = new Response(fd);
  return { body: Buffer.from(await r.arrayBuffer()), contentType: r.headers.get('content-type')! };
}
