// Starts CongoDB, the wire-compatible MongoDB stand-in inside @push.rocks/smartmongo 2.2.0,
// for tracker-mongo's tests. Started by .ci/mongo-server.sh, which installs the package.
//
//   node server.mjs <install dir> [port]
//
// In-memory storage: everything is gone when the process ends.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [installDir, portArg] = process.argv.slice(2);
if (!installDir) {
    console.error('usage: node server.mjs <install dir> [port]');
    process.exit(2);
}
const port = Number(portArg ?? 27018);
const entry = join(installDir, 'node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js');
const { CongoServer } = await import(pathToFileURL(entry).href);

const server = new CongoServer({ host: '127.0.0.1', port, storage: 'memory' });
await server.start();
console.log(`congodb: listening on 127.0.0.1:${port}`);

const stop = async (signal) => {
    console.log(`congodb: ${signal}, stopping`);
    try {
        await server.stop();
    } finally {
        process.exit(0);
    }
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
