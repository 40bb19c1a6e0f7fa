// Writes a shared session the way a real Express app of the classic recipe does:
// express-session + connect-redis into the given Redis, with passport's user at
// `passport.user`. Prints {"cookie": "<name>=<signed value>", "sid": "<id>"}.
// argv[2] = JSON {redisUrl, secret, user, cookieName?, prefix?}
"use strict";
const http = require("http");
const session = require("express-session");
const { RedisStore } = require("connect-redis");
const { createClient } = require("redis");

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const redis = createClient({ url: spec.redisUrl });
  await redis.connect();
  const store = new RedisStore({ client: redis, prefix: spec.prefix || "sess:" });
  const middleware = session({
    store,
    secret: spec.secret,
    name: spec.cookieName || "connect.sid",
    resave: false,
    saveUninitialized: false,
  });
  const server = http.createServer((req, res) =>
    middleware(req, res, () => {
      req.session.passport = { user: spec.user };
      res.end("ok");
    }),
  );
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  const setCookie = await new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: "/login" }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.headers["set-cookie"] || []));
    }).on("error", reject);
  });
  server.close();
  await redis.quit();
  const cookie = setCookie[0].split(";")[0];
  const value = decodeURIComponent(cookie.slice(cookie.indexOf("=") + 1));
  const sid = value.slice(2, value.lastIndexOf("."));
  process.stdout.write(JSON.stringify({ cookie, sid }) + "\n");
}
main().catch((err) => { console.error(err); process.exit(1); });
