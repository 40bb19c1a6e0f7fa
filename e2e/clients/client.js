// One or more official socket.io clients (socket.io-client 4.8), driven by a JSON
// spec (argv[2]) and reporting every happening as one JSON line on stdout.
//
// Spec: { url, count=1, transports?: ["websocket"] | ["polling"] (default: polling
//         then upgrade), upgrade?: bool, auth?: {...}, headers?: {...} (Node only:
//         sent on every request, e.g. a Cookie), rooms?: [..] (subscribed on connect),
//         reconnection?: bool (default false), sourceAddress?: "127.0.0.x" }
// Lines: {type: open|connected|subscribed|event|upgrade|connect_error|disconnect|ready, i, t, ...}
// stdin: JSON commands {cmd: "emit", i?, event, data, ack?: true} | {cmd: "raw_ws", ...}.
// Stops on stdin EOF or SIGTERM.
"use strict";
const { io } = require("socket.io-client");
const http = require("http");
const readline = require("readline");

const spec = JSON.parse(process.argv[2] || "{}");
const count = spec.count || 1;
// t: wall clock in ms; us: wall clock in µs (for latency against another process' clock).
const { performance } = require("perf_hooks");
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const out = (obj) => process.stdout.write(JSON.stringify({ t: Date.now(), us: nowUs(), ...obj }) + "\n");

const agentOpts = spec.sourceAddress ? { localAddress: spec.sourceAddress } : undefined;
const sockets = [];
let connectedOnce = 0;
for (let i = 0; i < count; i++) {
  const opts = {
    forceNew: true,
    reconnection: spec.reconnection === true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    auth: spec.auth || {},
    extraHeaders: spec.headers || {},
    timeout: 10000,
  };
  if (spec.transports) opts.transports = spec.transports;
  if (spec.upgrade === false) opts.upgrade = false;
  if (agentOpts) opts.agent = new http.Agent(agentOpts);
  const socket = io(spec.url, opts);
  sockets.push(socket);
  // Registered on "open" (before the socket.io CONNECT): the upgrade may finish first.
  socket.io.on("open", () => {
    out({ type: "open", i, transport: socket.io.engine.transport.name });
    socket.io.engine.once("upgrade", (transport) => out({ type: "upgrade", i, transport: transport.name }));
  });
  socket.on("connect", () => {
    const engine = socket.io.engine;
    out({ type: "connected", i, id: socket.id, transport: engine.transport.name });
    if (spec.rooms && spec.rooms.length) {
      socket.emit("subscribe", { rooms: spec.rooms }, (ack) => out({ type: "subscribed", i, ack }));
    }
    connectedOnce += 1;
    if (connectedOnce === count) out({ type: "ready", count });
  });
  socket.on("connect_error", (err) => out({ type: "connect_error", i, message: err.message }));
  socket.on("disconnect", (reason) => out({ type: "disconnect", i, reason }));
  socket.onAny((event, data) => out({ type: "event", i, event, data }));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch { return; }
  const targets = cmd.i === undefined ? sockets : [sockets[cmd.i]];
  if (cmd.cmd === "emit") {
    for (const [n, s] of targets.entries()) {
      const i = cmd.i === undefined ? n : cmd.i;
      if (cmd.ack) s.emit(cmd.event, cmd.data, (ack) => out({ type: "ack", i, event: cmd.event, ack }));
      else s.emit(cmd.event, cmd.data);
    }
  }
});
const stop = () => { for (const s of sockets) s.close(); process.exit(0); };
rl.on("close", stop);
process.on("SIGTERM", stop);
