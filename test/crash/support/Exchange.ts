import { Effect } from "effect"
import { createHash } from "node:crypto"

/**
 * No request waits longer than this, whatever happens to the server (a request that
 * connects while the server starts can hang: the port listens before the handler is attached).
 */
const REQUEST_TIMEOUT = "5 seconds"

export type Outcome =
  | {
    readonly _tag: "Response"
    readonly status: number
    readonly headers: Headers
    readonly bytes: Uint8Array
    readonly json: unknown
  }
  | { readonly _tag: "NoResponse"; readonly reason: string }

const reasonOf = (error: unknown): string => {
  const cause = error instanceof Error ? error.cause : undefined
  const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : undefined
  return `no response (${code ?? (error instanceof Error ? error.message : String(error))})`
}

/** A refused connection never reached a server. */
export const refused = (outcome: Outcome) => outcome._tag === "NoResponse" && outcome.reason.includes("ECONNREFUSED")

/**
 * One HTTP exchange over loopback; a lost connection or a timeout is an outcome, not
 * a failure. The timeout interrupts the fiber, which aborts the fetch, so no request
 * can stall its client loop.
 */
const exchange = (url: string, init: RequestInit): Effect.Effect<Outcome> =>
  Effect.tryPromise({
    try: async (signal): Promise<Outcome> => {
      const response = await fetch(url, { ...init, signal })
      const bytes = new Uint8Array(await response.arrayBuffer())
      const isJson = (response.headers.get("content-type") ?? "").includes("json")
      const json: unknown = isJson && bytes.byteLength > 0 ? JSON.parse(new TextDecoder().decode(bytes)) : undefined
      return { _tag: "Response", status: response.status, headers: response.headers, bytes, json }
    },
    catch: reasonOf
  }).pipe(
    Effect.timeoutFail({ duration: REQUEST_TIMEOUT, onTimeout: () => "timeout" }),
    Effect.catchAll((reason) => Effect.succeed<Outcome>({ _tag: "NoResponse", reason }))
  )

export interface Exchange {
  readonly outcome: Outcome
  /** "<sent at> <METHOD> <url> → <answer> at <answered at>", for a file's history. */
  readonly summary: string
}

/** An exchange, with a summary that can be put beside the server's logs (`note`: what the request carried). */
export const send = (url: string, init: RequestInit = {}, note = ""): Effect.Effect<Exchange> =>
  Effect.suspend(() => {
    const sent = new Date().toISOString()
    return Effect.map(exchange(url, init), (outcome) => ({
      outcome,
      summary: `${sent} ${init.method ?? "GET"} ${url}${note === "" ? "" : ` ${note}`} → ${describe(outcome)} at ${
        new Date().toISOString()
      }`
    }))
  })

export const field = (json: unknown, name: string): unknown =>
  typeof json === "object" && json !== null && name in json ? (json as Record<string, unknown>)[name] : undefined

/** How an answer that is neither an acknowledgement nor a violation is counted. */
export const kindOf = (outcome: Outcome): string =>
  outcome._tag === "NoResponse"
    ? outcome.reason
    : `${outcome.status} ${String(field(outcome.json, "error") ?? "")}`.trim()

/** kindOf, with the tus headers that say where an upload stands. */
const describe = (outcome: Outcome): string => {
  if (outcome._tag === "NoResponse") return outcome.reason
  const headers = ["upload-offset", "upload-length", "location"].flatMap((name) => {
    const value = outcome.headers.get(name)
    return value === null ? [] : [`${name}: ${value}`]
  })
  return headers.length === 0 ? kindOf(outcome) : `${kindOf(outcome)} (${headers.join(", ")})`
}

/** The error tag of a JSON error answer, if it is one. */
export const errorOf = (outcome: Outcome): string | undefined => {
  const error = outcome._tag === "Response" ? field(outcome.json, "error") : undefined
  return typeof error === "string" ? error : undefined
}

export const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
