/**
 * The baseline the gateway's peak throughput is compared with: a bare
 * pass-through proxy (node:http in, the same undici pool out, body piped), with
 * no auth, limits, routing, usage or metrics. Run by bench/gateway.ts.
 *
 *   node dist/bench/passthrough.js <port> <upstream base URL>
 */
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, upstream] = [Number(process.argv[2]), process.argv[3]];
const pool = new Pool(upstream, { connections: null, pipelining: 1, keepAliveTimeout: 30_000 });

createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    pool
      .request({
        path: req.url ?? '/',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: Buffer.concat(chunks),
        signal: ac.signal,
      })
      .then((up) => {
        res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'application/json') });
        up.body.pipe(res);
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
  });
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
