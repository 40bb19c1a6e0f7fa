// The Node reference cluster node: what users run today (socket.io 4.8 with
// @socket.io/redis-adapter), exposing the same client event and publish API
// shape as push-server, so the same load generator drives both.
//
// All names (listen address, paths, event names) come in one JSON argument
// that push-loadgen builds from push-server's contract crate, so nothing here
// copies the contract's strings:
//   node server.js '{"listen":"127.0.0.1:3000","redisUrl":null,"apiToken":"t",
//     "socketPath":"/socket.io/","publishPath":"/api/v1/publish",
//     "subscribeEvent":"subscribe","unsubscribeEvent":"unsubscribe",
//     "userRoomPrefix":"user:","maxPayloadBytes":1000000}'
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

function parseConfig(argv) {
  if (argv.length < 3) {
    throw new Error("usage: node server.js '<json config>'");
  }
  const cfg = JSON.parse(argv[2]);
  for (const key of ["listen", "socketPath", "publishPath", "subscribeEvent", "unsubscribeEvent", "userRoomPrefix"]) {
    if (typeof cfg[key] !== "string" || cfg[key] === "") {
      throw new Error(`config: "${key}" must be a non-empty string`);
    }
  }
  const at = cfg.listen.lastIndexOf(":");
  cfg.host = cfg.listen.slice(0, at);
  cfg.port = Number(cfg.listen.slice(at + 1));
  cfg.maxPayloadBytes = cfg.maxPayloadBytes || 1_000_000;
  return cfg;
}

// Returns [status, body] for one publish request; a pure function of its input.
function planPublish(cfg, authorization, rawBody) {
  if (!cfg.apiToken) return [404, { error: "publish API disabled" }];
  if (authorization !== `Bearer ${cfg.apiToken}`) return [401, { error: "bad or missing bearer token" }];
  let msg;
  try {
    msg = JSON.parse(rawBody);
  } catch (e) {
    return [400, { error: `body is not JSON: ${e.message}` }];
  }
  if (!msg || typeof msg.event !== "string" || msg.event === "") return [400, { error: "event must be a non-empty string" }];
  const targets = [typeof msg.room === "string", typeof msg.user === "string", msg.broadcast === true].filter(Boolean);
  if (targets.length !== 1) return [400, { error: "exactly one of room, user, broadcast" }];
  return [202, { accepted: true }, msg];
}

async function main() {
  const cfg = parseConfig(process.argv);
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    path: cfg.socketPath,
    maxHttpBufferSize: cfg.maxPayloadBytes,
    cors: { origin: true },
  });

  if (cfg.redisUrl) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    // node-redis does not take push-server's `?protocol=resp3` query.
    const url = cfg.redisUrl.split("?")[0];
    const pub = createClient({ url });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on("error", (e) => console.error("redis:", e.message));
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }

  io.on("connection", (socket) => {
    socket.on(cfg.subscribeEvent, (payload, ack) => {
      const rooms = payload && Array.isArray(payload.rooms) ? payload.rooms.filter((r) => typeof r === "string") : [];
      socket.join(rooms);
      if (typeof ack === "function") ack({ rooms });
    });
    socket.on(cfg.unsubscribeEvent, (payload, ack) => {
      const rooms = payload && Array.isArray(payload.rooms) ? payload.rooms : [];
      for (const r of rooms) socket.leave(r);
      if (typeof ack === "function") ack({ rooms });
    });
  });

  // socket.io attaches its own "request" listener for its path; answer the rest.
  httpServer.on("request", (req, res) => {
    if (req.url.startsWith(cfg.socketPath)) return;
    if (req.method !== "POST" || req.url !== cfg.publishPath) {
      res.writeHead(404).end();
      return;
    }
    let size = 0;
    const chunks = [];
    req.on("data", (c) => {
      size += c.length;
      if (size > cfg.maxPayloadBytes) {
        res.writeHead(413).end();
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (res.writableEnded) return;
      const [status, body, msg] = planPublish(cfg, req.headers.authorization, Buffer.concat(chunks).toString("utf8"));
      if (msg) {
        const to = msg.room !== undefined ? io.to(msg.room) : msg.user !== undefined ? io.to(cfg.userRoomPrefix + msg.user) : io;
        to.emit(msg.event, msg.data === undefined ? null : msg.data);
      }
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    });
  });

  httpServer.listen(cfg.port, cfg.host, () => {
    console.log(`node reference listening on ${cfg.listen} (pid ${process.pid})`);
  });
  const stop = () => io.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(2);
});
