import { LoggerService } from '@nestjs/common';
import pino, { Logger } from 'pino';

/** Structured JSON lines. Secrets are redacted by path wherever they could appear. */
export function createLogger(level: string, name: string): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', '*.apiKey', '*.token', '*.key', 'apiKey', 'token'],
      censor: '[redacted]',
    },
  });
}

/** Nest's logger interface over pino, so framework lines are structured too. */
export class PinoNestLogger implements LoggerService {
  constructor(private readonly pino: Logger) {}
  log_(level: 'info' | 'error' | 'warn' | 'debug' | 'trace', message: unknown, context?: unknown) {
    this.pino[level]({ context }, typeof message === 'string' ? message : JSON.stringify(message));
  }
  log(message: unknown, context?: string) {
    this.log_('info', message, context);
  }
  error(message: unknown, trace?: string, context?: string) {
    this.pino.error({ context, trace }, String(message));
  }
  warn(message: unknown, context?: string) {
    this.log_('warn', message, context);
  }
  debug(message: unknown, context?: string) {
    this.log_('debug', message, context);
  }
  verbose(message: unknown, context?: string) {
    this.log_('trace', message, context);
  }
}
