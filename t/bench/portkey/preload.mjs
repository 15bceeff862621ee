// Loaded with "node --import" before Portkey's gateway in the aihub
// benchmark: its server listens on 127.0.0.1 only (the gateway passes no
// host, so Node would listen on every interface), and any outgoing fetch
// to a host other than 127.0.0.1/localhost fails: the benchmark never
// reaches the internet.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'object' && args[0] !== null && !Array.isArray(args[0])) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  } else if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    if (typeof args[1] !== 'string') {
      args.splice(1, 0, '127.0.0.1');
    }
  }
  return listen.apply(this, args);
};

const realFetch = globalThis.fetch;
globalThis.fetch = function (input, init) {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  if (url.hostname !== '127.0.0.1' && url.hostname !== 'localhost') {
    return Promise.reject(new Error(`bench: refusing to fetch ${url.origin}`));
  }
  return realFetch(input, init);
};
