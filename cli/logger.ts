import { pino, type Logger } from 'pino';
import { countLogLine, startCountingLogLines } from '../site/log-problems.js';

/** JSON logs to stderr (stdout stays for a command's own output), or to a file for the demo. */
export function createLogger(options: { level?: string; file?: string } = {}): Logger {
  const destination = options.file === undefined ? pino.destination(2) : pino.destination({ dest: options.file, mkdir: true, sync: false });
  startCountingLogLines();
  return pino(
    {
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      // Defence in depth: no code logs these, but a configuration or a request logged whole
      // one day must not carry a token or a password (test/secrets-not-logged.test.ts).
      redact: {
        paths: [
          'token',
          'password',
          'secret',
          'authorization',
          'controlToken',
          'handoffToken',
          '*.token',
          '*.password',
          '*.secret',
          '*.authorization',
          '*.controlToken',
          '*.handoffToken',
          '*.headers.authorization',
          'req.headers.authorization',
        ],
        censor: '[redacted]',
      },
      // Warn and error lines of the last hour, for `portcall status` (site/log-problems.ts).
      hooks: {
        logMethod(args, method, level) {
          countLogLine(level);
          method.apply(this, args);
        },
      },
    },
    destination,
  );
}
