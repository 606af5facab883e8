// Reading a /v1 request's body (JSON, or multipart for audio uploads): its type, its size limit and a safe parse; each failure is the
// OpenAIError to answer with.
import type { IncomingMessage } from 'node:http';
import getRawBody from 'raw-body';
import { parse as secureJsonParse } from 'secure-json-parse';
import { Form, readForm } from '../common/multipart';
import type { OpenAIError } from './errors';

const JSON_TYPE = /^application\/json\s*(?:;|$)/i;

const bad = (status: number, code: string, message: string): OpenAIError => ({
  ok: false,
  status,
  type: 'invalid_request_error',
  code,
  message,
});

/**
 * Reads a /v1 request's JSON body, at most `limitBytes` (raw-body: the
 * Content-Length is checked before anything is read, then the bytes as they
 * come). Resolves to the parsed value (undefined when the request has no body)
 * or the error to answer with: 415 for a body that is not application/json, 413
 * past the limit, 400 for an empty, cut short or malformed body, or JSON that
 * carries `__proto__` or `constructor.prototype` keys. Never rejects. A body
 * refused part-way is read to its end and dropped, so the connection stays
 * usable for the client's next request.
 */
export async function readJsonBody(req: IncomingMessage, limitBytes: number): Promise<{ value: unknown } | OpenAIError> {
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return { value: undefined };
  const type = req.headers['content-type'];
  if (!type || !JSON_TYPE.test(type))
    return bad(415, 'invalid_body', `Content-Type must be application/json${type ? `, not ${type.slice(0, 100)}` : ''}`);
  let text: string;
  try {
    text = await getRawBody(req, { length, limit: limitBytes, encoding: 'utf-8' });
  } catch (err) {
    req.resume();
    const e = err as getRawBody.RawBodyError;
    if (e.type === 'entity.too.large') return bad(413, 'request_too_large', `request body is larger than ${limitBytes} bytes`);
    return bad(400, 'invalid_body', `request body could not be read: ${e.message}`);
  }
  if (text.trim() === '') return bad(400, 'invalid_body', 'request body is empty; send a JSON object');
  try {
    return { value: secureJsonParse(text, undefined, { protoAction: 'error', constructorAction: 'error' }) };
  } catch (err) {
    return bad(400, 'invalid_body', `invalid request body: ${(err as Error).message}`);
  }
}

/**
 * Reads a multipart/form-data body (an audio upload) whole, at most `limitBytes`, into its fields and files: 415 for
 * another type, 413 past the limit, 400 for a body that does not parse. Never rejects.
 */
export async function readFormBody(req: IncomingMessage, limitBytes: number): Promise<{ value: Form } | OpenAIError> {
  const type = req.headers['content-type'];
  if (!type || !/^multipart\/form-data/i.test(type)) {
    return bad(415, 'invalid_body', `Content-Type must be multipart/form-data${type ? `, not ${type.slice(0, 100)}` : ''}`);
  }
  let raw: Buffer;
  try {
    raw = await getRawBody(req, { length: req.headers['content-length'], limit: limitBytes });
  } catch (err) {
    req.resume();
    const e = err as getRawBody.RawBodyError;
    if (e.type === 'entity.too.large') return bad(413, 'request_too_large', `request body is larger than ${limitBytes} bytes`);
    return bad(400, 'invalid_body', `request body could not be read: ${e.message}`);
  }
  try {
    return { value: await readForm(req.headers, raw, limitBytes) };
  } catch (err) {
    return bad(400, 'invalid_body', `invalid multipart body: ${(err as Error).message}`);
  }
}
