// ClientGone: tells the upstream request and the queue that a request's client left.
import { EventEmitter } from 'node:events';

/**
 * What an AbortController does, as an EventEmitter (undici takes either as `signal`): `abort` fires at most once.
 * Not an AbortController on purpose, see bench/README.md "Why the request path looks the way it does".
 */
export class ClientGone extends EventEmitter {
  aborted = false;

  abort() {
    if (this.aborted) return;
    this.aborted = true;
    this.emit('abort');
  }
}
