import { Effect } from "effect"
import * as http from "node:http"

/** What a test needs from a response: status, headers, and the body read whole. */
export interface TestResponse {
  readonly status: number
  readonly headers: Headers
  readonly bytes: Uint8Array
  readonly json: unknown
}

const readResponse = async (response: Response): Promise<TestResponse> => {
  const bytes = new Uint8Array(await response.arrayBuffer())
  const text = new TextDecoder().decode(bytes)
  let json: unknown = undefined
  if ((response.headers.get("content-type") ?? "").includes("json")) json = JSON.parse(text)
  return { status: response.status, headers: response.headers, bytes, json }
}

/** A plain fetch against the loopback server; tests speak HTTP as any client would. */
export const request = (url: string, init?: RequestInit) => Effect.promise(() => fetch(url, init).then(readResponse))

/** A multipart form with one file part (or any parts) as browsers and curl send it. */
export const fileForm = (
  parts: ReadonlyArray<
    { readonly field: string; readonly name: string; readonly type: string; readonly bytes: Uint8Array }
  >
): FormData => {
  const form = new FormData()
  for (const part of parts) form.append(part.field, new Blob([part.bytes], { type: part.type }), part.name)
  return form
}

export const upload = (baseUrl: string, name: string, type: string, bytes: Uint8Array) =>
  request(`${baseUrl}/files`, { method: "POST", body: fileForm([{ field: "file", name, type, bytes }]) })

/** Valid UTF-8 text of exactly `size` bytes: `seed` repeated, padded with spaces where a character would not fit. */
export const textOfSize = (size: number, seed = "tandem "): Uint8Array => {
  const encoder = new TextEncoder()
  const chars = Array.from(seed, (char) => encoder.encode(char))
  const whole = encoder.encode(seed)
  const out = new Uint8Array(size).fill(0x20)
  let offset = 0
  // Whole seeds while they fit, then one character at a time.
  while (whole.byteLength > 0 && offset + whole.byteLength <= size) {
    out.set(whole, offset)
    offset += whole.byteLength
  }
  for (const char of chars) {
    if (offset + char.byteLength > size) break
    out.set(char, offset)
    offset += char.byteLength
  }
  return out
}

/**
 * A request through node:http that keeps reading the response even when the server
 * answers before the body is sent (as it does for an announced oversize body).
 */
export const rawRequest = (
  url: string,
  options: {
    readonly method: string
    readonly headers: Record<string, string>
    readonly body: AsyncIterable<Uint8Array> | Uint8Array
  }
) =>
  Effect.async<{ readonly status: number; readonly json: unknown; readonly sent: number }>((resume) => {
    let sent = 0
    let done = false
    const req = http.request(url, { method: options.method, headers: options.headers }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () => {
        done = true
        const text = Buffer.concat(chunks).toString("utf8")
        resume(
          Effect.succeed({ status: res.statusCode ?? 0, json: text.length > 0 ? JSON.parse(text) : undefined, sent })
        )
      })
    })
    req.on("error", () => {
      // The server may close the connection while we still write; the response already came.
      if (!done) resume(Effect.die(new Error("request failed before a response arrived")))
    })
    const write = async () => {
      if (options.body instanceof Uint8Array) {
        sent += options.body.byteLength
        req.end(options.body)
        return
      }
      for await (const chunk of options.body) {
        if (done || req.destroyed) return
        sent += chunk.byteLength
        if (!req.write(chunk)) await new Promise((resolve) => req.once("drain", resolve))
      }
      req.end()
    }
    write().catch(() => undefined)
    return Effect.sync(() => req.destroy())
  })
