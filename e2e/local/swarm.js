// A swarm of official socket.io clients (socket.io-client 4.8) for the local-mode
// suite, reporting every happening as one JSON line on stdout.
//
// Spec (argv[2], JSON): { url, count=1, transports?: ["polling"] | ["websocket"],
//   upgrade?: bool, withCredentials?: bool (Node cookie jar: needed for cookie
//   affinity), sources?: ["127.0.0.2", ...] (client i binds sources[i % n], so
//   client-address affinity sees several clients), rooms?: [...], auth?: {...},
//   reconnection?: bool (default true) }
// Lines: {t, type: connected|subscribed|event|disconnect|connect_error|ready, i, ...}
// Stops on stdin EOF or SIGTERM.
"use strict";
const path = require("path");
const http = require("http");
const readline = require("readline");

// e2e/node_modules first, the demo page's copy as a fallback (both from npm).
const { io } = require(require.resolve("socket.io-client", {
  paths: [path.join(__dirname, ".."), path.join(__dirname, "..", "..", "push-server", "web")],
}));

const spec = JSON.parse(process.argv[2] || "{}");
const count = spec.count || 1;
const out = (obj) => process.stdout.write(JSON.stringify({ t: Date.now(), ...obj }) + "\n");

const sockets = [];
let firstConnects = 0;
for (let i = 0; i < count; i++) {
  const opts = {
    forceNew: true,
    reconnection: spec.reconnection !== false,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    randomizationFactor: 0.2,
    auth: spec.auth || {},
    timeout: 10000,
    withCredentials: spec.withCredentials === true,
  };
  if (spec.transports) opts.transports = spec.transports;
  if (spec.upgrade === false) opts.upgrade = false;
  if (spec.sources && spec.sources.length) {
    opts.agent = new http.Agent({ localAddress: spec.sources[i % spec.sources.length], keepAlive: true });
  }
  const socket = io(spec.url, opts);
  sockets.push(socket);
  let connectedBefore = false;
  socket.on("connect", () => {
    const engine = socket.io.engine;
    out({ type: "connected", i, id: socket.id, transport: engine.transport.name, recovered: connectedBefore });
    if (spec.rooms && spec.rooms.length) {
      socket.emit("subscribe", { rooms: spec.rooms }, (ack) => out({ type: "subscribed", i, ack }));
    }
    if (!connectedBefore) {
      connectedBefore = true;
      firstConnects += 1;
      if (firstConnects === count) out({ type: "ready", count });
    }
  });
  socket.on("connect_error", (err) => out({ type: "connect_error", i, message: err.message }));
  socket.on("disconnect", (reason) => {
    out({ type: "disconnect", i, reason });
    // A server-side disconnect is final for the client library: come back, as the demo page does.
    if (reason === "io server disconnect") socket.connect();
  });
  socket.onAny((event, data) => out({ type: "event", i, event, data }));
}

const stop = () => {
  for (const s of sockets) s.close();
  process.exit(0);
};
readline.createInterface({ input: process.stdin }).on("close", stop);
process.on("SIGTERM", stop);
