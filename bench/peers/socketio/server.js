// The peer Nerve is measured against: a Socket.IO v4 server scaled out with the Redis adapter,
// the set-up most teams would pick instead. Rooms play the part of groups.
//   join(room, ack)        -> socket.join(room), ack(true)
//   publish(room, data)    -> io.to(room).emit("message", data)   (sender included, as in Nerve's bench)
//   POST /publish/{room}   -> the same for an HTTP body (what a backend would add)
//   GET|HEAD /health       -> 200
// Environment: PORT (0 = any free port), REDIS_URL. Prints "listening PORT" when ready.
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

async function main() {
  const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("redis pub:", e.message));
  sub.on("error", (e) => console.error("redis sub:", e.message));
  await Promise.all([pub.connect(), sub.connect()]);

  let io;
  const httpServer = http.createServer((req, res) => {
    if (req.url === "/health") {
      res.writeHead(200).end();
      return;
    }
    const m = req.method === "POST" && req.url.match(/^\/publish\/([^/?]+)/);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      io.to(decodeURIComponent(m[1])).emit("message", Buffer.concat(chunks).toString("utf8"));
      res.writeHead(202).end();
    });
  });
  httpServer.keepAliveTimeout = 60000;

  io = new Server(httpServer, {
    adapter: createAdapter(pub, sub),
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
  });
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(String(room));
      if (typeof ack === "function") ack(true);
    });
    socket.on("publish", (room, data) => {
      io.to(String(room)).emit("message", data);
    });
  });

  httpServer.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
    console.log(`listening ${httpServer.address().port}`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
