#!/usr/bin/env node
import { PortcallError } from '../core/index.js';
import { buildProgram } from './program.js';

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  if (error instanceof PortcallError) {
    process.stderr.write(`portcall: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
