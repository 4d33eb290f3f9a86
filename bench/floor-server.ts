/**
 * THE FLOOR: the floor's work (FloorWork.ts) served by node:http with no framework;
 * with FLOOR_PROTOCOL=true, THE PROTOCOL FLOOR (the same server, FloorWork's protocol steps).
 */
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import * as FloorWork from "./FloorWork.js"

const reply = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  if (res.headersSent) return
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(JSON.stringify(body))
}

const upload = (store: FloorWork.Store, req: IncomingMessage, res: ServerResponse) => {
  FloorWork.receive(req)
    .then(async (received) => {
      const body = await FloorWork.store(store, received).catch((error: unknown) => {
        if (error instanceof FloorWork.NotUtf8) reply(res, error.status, { error: "NotUtf8" })
        else reply(res, 503, { error: "Unavailable", message: String(error) })
        return undefined
      })
      if (body !== undefined) reply(res, 201, body, { location: `/files/${body.id}` })
    })
    .catch((error: unknown) => reply(res, 400, { error: error instanceof Error ? error.message : "BadRequest" }))
}

const store = await FloorWork.openStore()

const server = createServer((req, res) => {
  if (req.method === "POST" && req.url === "/files") return upload(store, req, res)
  if (req.method === "GET" && req.url === "/healthz") return reply(res, 200, { status: "ok" })
  reply(res, 404, { error: "NotFound" })
})

server.listen(Number(FloorWork.env("PORT", "3000")), FloorWork.env("HOST", "127.0.0.1"))

process.once("SIGTERM", () => {
  server.close()
  server.closeAllConnections()
  void store.close().finally(() => process.exit(0))
})
