// Loaded before NocoDB (start.mjs imports it; in Docker: NODE_OPTIONS=--require).
//
// NocoDB 0.301 answers a database error it does not know (any SQLSTATE outside its own
// list) with {"error": "ERR_DATABASE_OP_FAILED", "code": ...} and no text, unless the
// message contains "--": then it shows what follows (DefaultDBErrorExtractor). The CRM's
// rules raise SQLSTATE class CR (CRM01: an order status transition that is not allowed,
// ...) and row-level security refuses with 42501; their Spanish message is what staff need
// to read. This marks those messages with "--" so NocoDB passes them on. Nothing else
// changes: the error, its code and its fields stay as PostgreSQL sent them.
'use strict';
// NocoDB's own copy of pg: resolved from its app folder (the working directory; in the
// official image /usr/src/app), else from next to this file (nocodb/node_modules here).
const messages = require(require.resolve('pg-protocol/dist/messages', { paths: [process.cwd(), __dirname] }));

const Original = messages.DatabaseError;
const SHOWN = /^(CR...|42501)$/;

class DatabaseError extends Original {}
Object.defineProperty(DatabaseError.prototype, 'code', {
  configurable: true,
  enumerable: true,
  get() {
    return this._crmCode;
  },
  set(code) {
    this._crmCode = code;
    if (typeof code === 'string' && SHOWN.test(code) && !String(this.message).startsWith('--')) {
      this.message = `--${this.message}`;
    }
  },
});
messages.DatabaseError = DatabaseError;
