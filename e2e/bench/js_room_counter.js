// The official socket.io client (npm socket.io-client 4.8) as the referee of
// the loadgen smoke test: joins one room, counts the benchmark events it
// receives, and prints the count as JSON whenever a line arrives on stdin.
//   node js_room_counter.js URL TRANSPORT ROOM CONTRACT_JSON BENCH_EVENT
"use strict";
const { io } = require("socket.io-client");
const readline = require("node:readline");

const [url, transport, room, contractJson, benchEvent] = process.argv.slice(2);
const contract = JSON.parse(contractJson);
const socket = io(url, { path: contract.socketPath, transports: [transport], reconnection: false });
let received = 0;
const malformed = [];

socket.on(benchEvent, (data) => {
  received += 1;
  if (!data || typeof data.ts !== "number" || typeof data.step !== "number") malformed.push(data);
});
socket.on("connect", () => {
  socket.emit(contract.subscribeEvent, { rooms: [room] }, (ack) => {
    console.log(JSON.stringify({ ready: true, transport: socket.io.engine.transport.name, ack }));
  });
});
socket.on("connect_error", (e) => {
  console.log(JSON.stringify({ error: e.message }));
  process.exit(1);
});
readline.createInterface({ input: process.stdin }).on("line", () => {
  console.log(JSON.stringify({ received, malformed, connected: socket.connected }));
}).on("close", () => process.exit(0));
