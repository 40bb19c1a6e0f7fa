// One or more official socket.io clients (socket.io-client 4.8), driven by a JSON
// spec (argv[2]) and reporting every happening as one JSON line on stdout. The one
// driver of the official client for every suite (harness/node_clients.py runs it).
//
// Spec: { url, count=1, transports?: ["websocket"] | ["polling"] (default: polling
//         then upgrade), upgrade?: bool, auth?: {...} (or auths: [{...}, ...], client i
//         gets auths[i % length]), headers?: {...} (Node only:
//         sent on every request, e.g. a Cookie), withCredentials?: bool (Node's cookie
//         jar: what cookie affinity needs), rooms?: [..] (subscribed on connect),
//         sourceAddress?: "127.0.0.x" (every client binds it), sources?: ["127.0.0.2", ...]
//         (client i binds sources[i % n] over keep-alive connections, so client-address
//         affinity sees several clients),
//         reconnection?: bool (default false), reconnectionDelay?: ms (default 200),
//         reconnectionDelayMax?: ms (default 1000), randomizationFactor?: (library default),
//         rejoinAfterServerDisconnect?: bool (default false: a server-side disconnect is
//         final for the library; true connects again, as the demo page does),
//         dataBytes?: bool (event lines carry `bytes`, the length of the data's JSON,
//         instead of the data: for payloads too large to echo),
//         subscribeOnRecover?: [..] (on a recovered connect, emits subscribe {rooms: these}
//         right in the connect handler, as an app adding a room on every connect would;
//         its ack is reported as an `ack` line with event "subscribe" and onRecover: true,
//         after an `emitted` line once the subscribe is written) }
// Rooms are subscribed on every connect but a recovered one (`socket.recovered`: the
// server restored them, as an app using connection state recovery would do).
// Lines: {type: open|connected (+recovered)|subscribed|event (+offset)|ack (+sentUs: when
//         its emit was written)|emitted|upgrade|connect_error|disconnect|ready,
//         i, t (wall clock, ms), us (wall clock, µs: latency against another process'
//         clock), ...}; `ready` once every client has connected at least once.
// stdin: JSON commands {cmd: "emit", i?, event, data, ack?: true} (or args: [..], several
//        arguments, no ack); {cmd: "disconnect", i?}
//        and {cmd: "connect", i?} (the app's socket.disconnect() / socket.connect(): the
//        client keeps its recovery pid and offset for the next connect, but a disconnect
//        of its own ends its session on the server, as in socket.io); {cmd: "drop", i?}
//        closes the transport under the socket (a network blip: the server keeps the
//        session; with reconnection on the client comes back by itself, else "connect");
//        {cmd: "auth", i?, auth: {...}} replaces `socket.auth`, what the next CONNECT sends
//        (e.g. a new token; the library adds its recovery pid and offset to it);
//        {cmd: "reconnection", i?, on: bool} turns the library's own reconnection on or
//        off from now (e.g. off while the test keeps a client away, on once it is back).
// Stops on stdin EOF or SIGTERM.
"use strict";
const path = require("path");
const http = require("http");
const readline = require("readline");
const { performance } = require("perf_hooks");

// e2e/node_modules first, the demo page's copy as a fallback (both from npm).
const { io } = require(require.resolve("socket.io-client", {
  paths: [path.join(__dirname, ".."), path.join(__dirname, "..", "..", "push-server", "web")],
}));

const spec = JSON.parse(process.argv[2] || "{}");
const count = spec.count || 1;
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const out = (obj) => process.stdout.write(JSON.stringify({ t: Date.now(), us: nowUs(), ...obj }) + "\n");

const agentFor = (i) => {
  if (spec.sources && spec.sources.length) {
    return new http.Agent({ localAddress: spec.sources[i % spec.sources.length], keepAlive: true });
  }
  if (spec.sourceAddress) return new http.Agent({ localAddress: spec.sourceAddress });
  return undefined;
};

const sockets = [];
let firstConnects = 0;
for (let i = 0; i < count; i++) {
  const opts = {
    forceNew: true,
    reconnection: spec.reconnection === true,
    reconnectionDelay: spec.reconnectionDelay ?? 200,
    reconnectionDelayMax: spec.reconnectionDelayMax ?? 1000,
    auth: spec.auths ? spec.auths[i % spec.auths.length] : (spec.auth || {}),
    extraHeaders: spec.headers || {},
    withCredentials: spec.withCredentials === true,
    timeout: 10000,
  };
  if (spec.randomizationFactor !== undefined) opts.randomizationFactor = spec.randomizationFactor;
  if (spec.transports) opts.transports = spec.transports;
  if (spec.upgrade === false) opts.upgrade = false;
  const agent = agentFor(i);
  if (agent) opts.agent = agent;
  const socket = io(spec.url, opts);
  sockets.push(socket);
  // Registered on "open" (before the socket.io CONNECT): the upgrade may finish first.
  socket.io.on("open", () => {
    out({ type: "open", i, transport: socket.io.engine.transport.name });
    socket.io.engine.once("upgrade", (transport) => out({ type: "upgrade", i, transport: transport.name }));
  });
  let connectedBefore = false;
  socket.on("connect", () => {
    out({ type: "connected", i, id: socket.id, transport: socket.io.engine.transport.name, recovered: socket.recovered });
    if (spec.rooms && spec.rooms.length && !socket.recovered) {
      socket.emit("subscribe", { rooms: spec.rooms }, (ack) => out({ type: "subscribed", i, ack }));
    }
    if (spec.subscribeOnRecover && socket.recovered) {
      socket.emit("subscribe", { rooms: spec.subscribeOnRecover },
        (ack) => out({ type: "ack", i, event: "subscribe", onRecover: true, ack }));
      out({ type: "emitted", i, event: "subscribe", onRecover: true });
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
    if (spec.rejoinAfterServerDisconnect === true && reason === "io server disconnect") socket.connect();
  });
  // A string last argument after the data is the event's offset (history on).
  socket.onAny((event, data, ...rest) => {
    const offset = typeof rest[rest.length - 1] === "string" ? rest[rest.length - 1] : undefined;
    out(spec.dataBytes
      ? { type: "event", i, event, offset, bytes: JSON.stringify(data === undefined ? null : data).length }
      : { type: "event", i, event, offset, data });
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch { return; }
  const targets = cmd.i === undefined ? sockets : [sockets[cmd.i]];
  if (cmd.cmd === "emit") {
    for (const [n, s] of targets.entries()) {
      const i = cmd.i === undefined ? n : cmd.i;
      const sentUs = nowUs();
      if (cmd.ack) s.emit(cmd.event, cmd.data, (ack) => out({ type: "ack", i, event: cmd.event, ack, sentUs }));
      else if (cmd.args) s.emit(cmd.event, ...cmd.args);
      else s.emit(cmd.event, cmd.data);
    }
  } else if (cmd.cmd === "disconnect") {
    for (const s of targets) s.disconnect();
  } else if (cmd.cmd === "connect") {
    for (const s of targets) s.connect();
  } else if (cmd.cmd === "drop") {
    for (const s of targets) if (s.io.engine) s.io.engine.close();
  } else if (cmd.cmd === "auth") {
    for (const s of targets) s.auth = cmd.auth;
  } else if (cmd.cmd === "reconnection") {
    for (const s of targets) s.io.reconnection(cmd.on === true);
  }
});
const stop = () => { for (const s of sockets) s.close(); process.exit(0); };
rl.on("close", stop);
process.on("SIGTERM", stop);
