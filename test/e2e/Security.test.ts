/**
 * Who may do what, on the real server (`node dist/bin/serve.js`, configured by its
 * environment only) over loopback, with several owners: tokens (HS256 and a JWKS
 * rotated mid-run), owner scoping, quotas under concurrency, rate limits, safe
 * retries (Idempotency-Key, a crash included), signed links, the loopback
 * server's browser checks, the refusal to start unauthenticated off loopback, and
 * names a person can trust. Behind the API, the test reads the database and the
 * object directory to count what is stored.
 */
import { type SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Schedule } from "effect"
import { exportJWK, generateKeyPair, type JWK, SignJWT, UnsecuredJWT } from "jose"
import { execFile } from "node:child_process"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import { fileForm, request, type TestResponse, textOfSize } from "../support/Http.js"
import * as ServerOnDatabase from "../support/ServerOnDatabase.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"

const SECRET = "an HS256 secret for the e2e test, 32 bytes or more"
const ISSUER = "https://issuer.test"
const AUDIENCE = "tandem"
const encoder = new TextEncoder()

interface Claims {
  readonly sub?: string
  /** Seconds from now. */
  readonly exp?: number
  readonly nbf?: number
  readonly iss?: string
  readonly aud?: string
  readonly secret?: string
}

const hs256 = (claims: Claims) =>
  Effect.promise(() => {
    const jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + (claims.exp ?? 600))
      .setIssuer(claims.iss ?? ISSUER)
      .setAudience(claims.aud ?? AUDIENCE)
    if (claims.sub !== undefined) jwt.setSubject(claims.sub)
    if (claims.nbf !== undefined) jwt.setNotBefore(Math.floor(Date.now() / 1000) + claims.nbf)
    return jwt.sign(encoder.encode(claims.secret ?? SECRET))
  })

const tokenOf = (sub: string) => hs256({ sub })

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** The server on a fresh database and a fresh object directory; the database is read behind it. */
const serverWith = ServerOnDatabase.start
const { counts, objectsIn } = ServerOnDatabase

const uploadAs = (
  base: string,
  headers: Record<string, string>,
  name: string,
  bytes: Uint8Array,
  extra: Record<string, string> = {}
) =>
  request(`${base}/files`, {
    method: "POST",
    headers: { ...headers, ...extra },
    body: fileForm([{ field: "file", name, type: "text/plain", bytes }])
  })

const idOf = (response: TestResponse) => (response.json as { id: string }).id
const errorOf = (response: TestResponse) => (response.json as { error: string }).error

/**
 * An upload whose body is sent up to the middle of its file, then held: the server
 * has its intent (and key) but not its end. `finish` sends the rest; `abandon`
 * drops the connection.
 */
const heldUpload = (base: string, headers: Record<string, string>, bytes: Uint8Array) =>
  Effect.sync(() => {
    const boundary = "held-upload-boundary"
    const head = encoder.encode(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="held.txt"\r\n` +
        "Content-Type: text/plain\r\n\r\n"
    )
    const tail = encoder.encode(`\r\n--${boundary}--\r\n`)
    let resolve: (r: { status: number; json: unknown }) => void = () => undefined
    const response = new Promise<{ status: number; json: unknown }>((r) => (resolve = r))
    const req = http.request(`${base}/files`, {
      method: "POST",
      headers: { ...headers, "content-type": `multipart/form-data; boundary=${boundary}` }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }))
    })
    req.on("error", () => resolve({ status: 0, json: undefined }))
    const half = Math.floor(bytes.byteLength / 2)
    req.write(head)
    req.write(bytes.subarray(0, half))
    return {
      finish: Effect.promise(() => {
        req.end(Buffer.concat([bytes.subarray(half), tail]))
        return response
      }),
      abandon: Effect.sync(() => req.destroy())
    }
  })

/** Waits (polling the database) until the query counts `n`: the server got that far. */
const reaches = (query: Effect.Effect<ReadonlyArray<{ readonly n: number }>, unknown>, n: number) =>
  Effect.orDie(query).pipe(
    Effect.repeat({ until: (rows) => (rows[0]?.n ?? 0) >= n, schedule: Schedule.spaced("20 millis") }),
    Effect.timeout("10 seconds"),
    Effect.orDie
  )

const keysReach = (sql: SqlClient.SqlClient, n: number) =>
  reaches(sql<{ n: number }>`SELECT count(*)::int AS n FROM idempotency_keys`, n)

const intentsReach = (sql: SqlClient.SqlClient, n: number) =>
  reaches(sql<{ n: number }>`SELECT count(*)::int AS n FROM files WHERE status = 'pending'`, n)

const reconcile = (env: Record<string, string>) =>
  Effect.async<{ code: number; stdout: string }>((resume) => {
    const script = fileURLToPath(new URL("../../dist/bin/reconcile.js", import.meta.url))
    execFile(process.execPath, [script], { env: { PATH: process.env.PATH ?? "", ...env } }, (error, stdout) =>
      resume(Effect.succeed({ code: error === null ? 0 : Number(error.code ?? 2), stdout })))
  })

const JSON_HEADERS = { "content-type": "application/json" }

describe.skipIf(Option.isNone(TestDatabase.serverUrl))("security, on the real server", () => {
  const jwtEnv = {
    AUTH_JWT_SECRET: SECRET,
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    LINK_SIGNING_SECRET: "a link-signing secret for the e2e test, 32+ bytes",
    OWNER_QUOTA_FILES: "10"
  }

  it.live(
    "401 Unauthorized with WWW-Authenticate: Bearer for every bad token; a good one, and npm run token's, pass",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith(jwtEnv)
        const now = Math.floor(Date.now() / 1000)
        const bad: Record<string, Record<string, string>> = {
          "no Authorization": {},
          "an empty bearer": { authorization: "Bearer " },
          "another scheme": { authorization: `Basic ${Buffer.from("alice:pw").toString("base64")}` },
          "malformed": bearer("not.a.jwt"),
          "expired, past the clock skew": bearer(yield* hs256({ sub: "alice", exp: -60 })),
          "not yet valid (nbf), past the clock skew": bearer(yield* hs256({ sub: "alice", nbf: 120 })),
          "signed with another secret": bearer(yield* hs256({ sub: "alice", secret: "x".repeat(40) })),
          "unsigned (alg none)": bearer(
            new UnsecuredJWT({ sub: "alice" }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime(now + 600)
              .encode()
          ),
          "from another issuer": bearer(yield* hs256({ sub: "alice", iss: "https://elsewhere.test" })),
          "for another audience": bearer(yield* hs256({ sub: "alice", aud: "someone-else" })),
          "naming no owner (no sub)": bearer(yield* hs256({}))
        }
        for (const [kind, headers] of Object.entries(bad)) {
          for (
            const [method, path] of [["GET", "/files"], ["POST", "/files"], [
              "GET",
              `/files/${crypto.randomUUID()}`
            ]] as const
          ) {
            const response = yield* request(`${server.url}${path}`, { method, headers })
            expect(response.status, `${kind}: ${method} ${path}`).toBe(401)
            expect(response.headers.get("www-authenticate"), kind).toMatch(/^Bearer/)
            expect(errorOf(response), kind).toBe("Unauthorized")
          }
        }
        // Within the clock skew (30 s): still valid.
        const lateButFine = yield* request(`${server.url}/files`, {
          headers: bearer(yield* hs256({ sub: "alice", exp: -10 }))
        })
        expect(lateButFine.status).toBe(200)
        // The probes need no token.
        expect((yield* request(`${server.url}/healthz`)).status).toBe(200)
        // A token from `npm run token` (the same secret, issuer and audience) is accepted.
        const script = fileURLToPath(new URL("../../dist/bin/token.js", import.meta.url))
        const printed = yield* Effect.async<string>((resume) => {
          execFile(
            process.execPath,
            [script, "--sub", "alice", "--ttl", "5m"],
            { env: { PATH: process.env.PATH ?? "", ...jwtEnv } },
            (_error, stdout) => resume(Effect.succeed(stdout.trim()))
          )
        })
        const withIt = yield* request(`${server.url}/files`, { headers: bearer(printed) })
        expect(withIt.status).toBe(200)
      })),
    120_000
  )

  it.live(
    "resumable uploads belong to their caller: another owner's is 404 on HEAD, PATCH and DELETE; none without a token",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith(jwtEnv)
        const alice = bearer(yield* tokenOf("alice"))
        const bob = bearer(yield* tokenOf("bob"))
        const tus = { "tus-resumable": "1.0.0" }
        const bytes = textOfSize(1500)
        const name = Buffer.from("mine.txt").toString("base64")
        const type = Buffer.from("text/plain").toString("base64")
        const createHeaders = {
          ...tus,
          "upload-length": "1500",
          "upload-metadata": `filename ${name},filetype ${type}`
        }
        // Discovery needs no token; everything else does.
        expect((yield* request(`${server.url}/uploads`, { method: "OPTIONS" })).status).toBe(204)
        const anonymous = yield* request(`${server.url}/uploads`, { method: "POST", headers: createHeaders })
        expect(anonymous.status).toBe(401)
        const created = yield* request(`${server.url}/uploads`, {
          method: "POST",
          headers: { ...alice, ...createHeaders }
        })
        expect(created.status).toBe(201)
        const url = `${server.url}${created.headers.get("location")}`
        const patchAs = (headers: Record<string, string>, from: number, to: number) =>
          request(url, {
            method: "PATCH",
            headers: {
              ...headers,
              ...tus,
              "content-type": "application/offset+octet-stream",
              "upload-offset": String(from)
            },
            body: bytes.subarray(from, to)
          })
        expect((yield* patchAs(alice, 0, 500)).status).toBe(204)
        const head = (headers: Record<string, string>) =>
          Effect.promise(() => fetch(url, { method: "HEAD", headers: { ...headers, ...tus } }))
        expect((yield* head(bob)).status).toBe(404)
        expect((yield* head({})).status).toBe(401)
        expect((yield* patchAs(bob, 500, 1500)).status).toBe(404)
        expect((yield* request(url, { method: "DELETE", headers: { ...bob, ...tus } })).status).toBe(404)
        expect((yield* head(alice)).headers.get("upload-offset")).toBe("500")
        const done = yield* patchAs(alice, 500, 1500)
        expect(done.status).toBe(204)
        const fileUrl = `${server.url}${done.headers.get("location")}`
        expect((yield* request(fileUrl, { headers: alice })).status).toBe(200)
        expect((yield* request(fileUrl, { headers: bob })).status).toBe(404)
        expect(yield* counts(server.sql)).toEqual({ committed: 1 })
      })),
    120_000
  )

  it.live(
    "owners: another owner's file is 404 on get, content, delete and links, and absent from its list",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith(jwtEnv)
        const [alice, bob] = [bearer(yield* tokenOf("alice")), bearer(yield* tokenOf("bob"))]
        const created = yield* uploadAs(server.url, alice, "alice.txt", textOfSize(600))
        expect(created.status).toBe(201)
        const id = idOf(created)
        const missing = crypto.randomUUID()
        for (
          const [method, path] of [
            ["GET", "/files/:id"],
            ["GET", "/files/:id/content"],
            ["DELETE", "/files/:id"],
            ["POST", "/files/:id/links"]
          ] as const
        ) {
          const init = {
            method,
            headers: { ...bob, ...(method === "POST" ? JSON_HEADERS : {}) },
            body: method === "POST" ? "{}" : null
          }
          const theirs = yield* request(`${server.url}${path.replace(":id", id)}`, init)
          const none = yield* request(`${server.url}${path.replace(":id", missing)}`, init)
          expect(theirs.status, `${method} ${path}`).toBe(404)
          // Exactly as a missing id: the same error, the same message but for the id.
          expect(theirs.json).toEqual({ error: "FileNotFound", message: `No file with id ${id}.` })
          expect(none.json).toEqual({ error: "FileNotFound", message: `No file with id ${missing}.` })
        }
        const bobsList = yield* request(`${server.url}/files`, { headers: bob })
        expect((bobsList.json as { items: ReadonlyArray<unknown> }).items).toEqual([])
        const alicesList = yield* request(`${server.url}/files`, { headers: alice })
        expect((alicesList.json as { items: ReadonlyArray<{ id: string }> }).items.map((f) => f.id)).toEqual([id])
        // Bob's delete changed nothing.
        expect((yield* request(`${server.url}/files/${id}/content`, { headers: alice })).status).toBe(200)
      })),
    120_000
  )

  it.live(
    "quotas: 20 concurrent uploads against a quota of 10 files leave exactly 10, and nothing else",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith(jwtEnv)
        const carol = bearer(yield* tokenOf("carol"))
        const responses = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => i),
          (i) => uploadAs(server.url, carol, `quota-${i}.txt`, textOfSize(600 + i)),
          { concurrency: "unbounded" }
        )
        const statuses = responses.map((r) => r.status)
        expect(statuses.filter((s) => s === 201).length).toBe(10)
        expect(statuses.filter((s) => s === 413).length).toBe(10)
        for (const refused of responses.filter((r) => r.status === 413)) expect(errorOf(refused)).toBe("QuotaExceeded")
        const listed = yield* request(`${server.url}/files?limit=100`, { headers: carol })
        expect((listed.json as { items: ReadonlyArray<unknown> }).items.length).toBe(10)
        // Nothing left behind: 10 records, no intents, 10 objects.
        expect(yield* counts(server.sql)).toEqual({ committed: 10 })
        expect((yield* objectsIn(server.dataDir)).length).toBe(10)
        // Another owner has a quota of its own.
        expect((yield* uploadAs(server.url, bearer(yield* tokenOf("dave")), "d.txt", textOfSize(600))).status).toBe(201)
        // Deleting one makes room for one.
        const stored = responses.filter((r) => r.status === 201).map(idOf)
        yield* request(`${server.url}/files/${stored[0] ?? ""}`, { method: "DELETE", headers: carol })
        expect((yield* uploadAs(server.url, carol, "again.txt", textOfSize(600))).status).toBe(201)
        expect((yield* uploadAs(server.url, carol, "over.txt", textOfSize(600))).status).toBe(413)
      })),
    120_000
  )

  it.live(
    "rate limits: past the owner's uploads per minute or at once, 429 RateLimited with Retry-After",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith({
          AUTH_JWT_SECRET: SECRET,
          RATE_LIMIT_UPLOADS_PER_MINUTE: "3",
          RATE_LIMIT_CONCURRENT_UPLOADS: "1"
        })
        const signed = (sub: string) =>
          Effect.promise(() =>
            new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setExpirationTime("10m")
              .sign(encoder.encode(SECRET))
          )
        const [alice, bob] = [bearer(yield* signed("alice")), bearer(yield* signed("bob"))]
        for (let i = 0; i < 3; i++) {
          expect((yield* uploadAs(server.url, alice, `a${i}.txt`, textOfSize(600))).status).toBe(201)
        }
        const limited = yield* uploadAs(server.url, alice, "a3.txt", textOfSize(600))
        expect(limited.status).toBe(429)
        expect(errorOf(limited)).toBe("RateLimited")
        // A token refills every 20 s at 3 a minute.
        const retryAfter = Number(limited.headers.get("retry-after"))
        expect(retryAfter).toBeGreaterThanOrEqual(1)
        expect(retryAfter).toBeLessThanOrEqual(20)
        // Per owner: Bob is not limited by Alice; one upload of his at a time.
        const held = yield* heldUpload(server.url, bob, textOfSize(600))
        yield* intentsReach(server.sql, 1)
        const second = yield* uploadAs(server.url, bob, "b2.txt", textOfSize(600))
        expect(second.status).toBe(429)
        expect(errorOf(second)).toBe("RateLimited")
        expect(second.headers.get("retry-after")).toBe("1")
        expect((yield* held.finish).status).toBe(201)
        expect((yield* uploadAs(server.url, bob, "b3.txt", textOfSize(600))).status).toBe(201)
        // Refused uploads stored nothing.
        expect(yield* counts(server.sql)).toEqual({ committed: 5 })
      })),
    120_000
  )

  it.live(
    "Idempotency-Key: a retry returns the original; other bytes under the key are 422; a key in flight is 409",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith(jwtEnv)
        const [erin, frank] = [bearer(yield* tokenOf("erin")), bearer(yield* tokenOf("frank"))]
        const bytes = textOfSize(700)
        const key = { "idempotency-key": crypto.randomUUID() }
        const first = yield* uploadAs(server.url, erin, "report.txt", bytes, key)
        expect(first.status).toBe(201)
        expect(first.headers.get("idempotent-replayed")).toBeNull()
        // 1. The same key, bytes and name: the original record, 201, no second object.
        const retry = yield* uploadAs(server.url, erin, "report.txt", bytes, key)
        expect(retry.status).toBe(201)
        expect(retry.json).toEqual(first.json)
        expect(retry.headers.get("idempotent-replayed")).toBe("true")
        expect((yield* objectsIn(server.dataDir)).length).toBe(1)
        // 2. The same key with other bytes, or another name: 422, nothing stored.
        for (
          const [name, other] of [["report.txt", textOfSize(700, "other ")], ["report.txt", textOfSize(701)], [
            "renamed.txt",
            bytes
          ], ["report.txt", new Uint8Array([0xff, 0xfe])]] as const
        ) {
          const reused = yield* uploadAs(server.url, erin, name, other, key)
          expect(reused.status, name).toBe(422)
          expect(errorOf(reused)).toBe("IdempotencyKeyReused")
        }
        // Keys are per owner: Frank's same key makes Frank's file.
        const franks = yield* uploadAs(server.url, frank, "report.txt", bytes, key)
        expect(franks.status).toBe(201)
        expect(idOf(franks)).not.toBe(idOf(first))
        // 3. Two requests with one key at once: the second gets 409 while the first runs; one file.
        const racing = { "idempotency-key": `race-${crypto.randomUUID()}` }
        const held = yield* heldUpload(server.url, { ...erin, ...racing }, bytes)
        yield* keysReach(server.sql, 3)
        const during = yield* uploadAs(server.url, erin, "held.txt", bytes, racing)
        expect(during.status).toBe(409)
        expect(errorOf(during)).toBe("IdempotencyKeyInFlight")
        const finished = yield* held.finish
        expect(finished.status).toBe(201)
        const after = yield* uploadAs(server.url, erin, "held.txt", bytes, racing)
        expect(after.status).toBe(201)
        expect(idOf(after)).toBe((finished.json as { id: string }).id)
        // A key that is not 1 to 255 visible ASCII characters: 400.
        for (const invalid of ["has space", "x".repeat(256), "é"]) {
          const refused = yield* uploadAs(server.url, erin, "x.txt", bytes, { "idempotency-key": invalid })
          expect(refused.status, invalid).toBe(400)
          expect(errorOf(refused)).toBe("InvalidHeader")
        }
        // Nothing left behind: 3 files, 3 objects, 3 keys.
        expect(yield* counts(server.sql)).toEqual({ committed: 3 })
        expect((yield* objectsIn(server.dataDir)).length).toBe(3)
      })),
    120_000
  )

  it.live(
    "Idempotency-Key after a crash: in flight until the reconciler reclaims the upload, then usable again",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const first = yield* serverWith({ ...jwtEnv, RECONCILE_GRACE_SECONDS: "0" })
        const erin = bearer(yield* tokenOf("erin"))
        const key = { "idempotency-key": `crash-${crypto.randomUUID()}` }
        const bytes = textOfSize(800)
        const held = yield* heldUpload(first.url, { ...erin, ...key }, bytes)
        yield* keysReach(first.sql, 1)
        first.child.kill("SIGKILL")
        yield* held.abandon
        // The same data, a new process.
        const second = yield* ServerProcess.start(first.env)
        const during = yield* uploadAs(second.url, erin, "held.txt", bytes, key)
        expect(during.status).toBe(409)
        expect(yield* counts(first.sql)).toEqual({ pending: 1 })
        const reconciled = yield* reconcile(first.env)
        expect(reconciled.code).toBe(0)
        expect(reconciled.stdout).toContain("abandoned uploads removed")
        expect(yield* counts(first.sql)).toEqual({})
        const retried = yield* uploadAs(second.url, erin, "held.txt", bytes, key)
        expect(retried.status).toBe(201)
        expect(retried.headers.get("idempotent-replayed")).toBeNull()
        expect(yield* counts(first.sql)).toEqual({ committed: 1 })
        expect((yield* objectsIn(first.dataDir)).length).toBe(1)
      })),
    120_000
  )

  it.live(
    "links: content without a token until they expire; tampered 403; gone with the file; Range and ETag work",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith(jwtEnv)
        const alice = bearer(yield* tokenOf("alice"))
        const bytes = textOfSize(1000)
        const created = yield* uploadAs(server.url, alice, "shared.txt", bytes)
        const id = idOf(created)
        const linkFor = (body: unknown) =>
          request(`${server.url}/files/${id}/links`, {
            method: "POST",
            headers: { ...alice, ...JSON_HEADERS },
            body: JSON.stringify(body)
          })
        const made = yield* linkFor({})
        expect(made.status).toBe(201)
        const link = made.json as { url: string; expiresAt: string }
        expect(link.url).toMatch(new RegExp(`^/files/${id}/content\\?expires=\\d+&signature=[0-9a-f]{64}$`))
        expect(Math.abs(Date.parse(link.expiresAt) - Date.now() - 3_600_000)).toBeLessThan(10_000)
        // Valid: the bytes, without a token, with the content headers.
        const got = yield* request(`${server.url}${link.url}`)
        expect(got.status).toBe(200)
        expect(Buffer.from(got.bytes).equals(Buffer.from(bytes))).toBe(true)
        expect(got.headers.get("content-disposition")).toMatch(/^attachment/)
        expect(got.headers.get("x-content-type-options")).toBe("nosniff")
        expect(got.headers.get("content-security-policy")).toBe("sandbox; default-src 'none'")
        expect(got.headers.get("cross-origin-resource-policy")).toBe("same-origin")
        // Range and ETag.
        const ranged = yield* request(`${server.url}${link.url}`, { headers: { range: "bytes=10-19" } })
        expect(ranged.status).toBe(206)
        expect(Buffer.from(ranged.bytes).equals(Buffer.from(bytes.subarray(10, 20)))).toBe(true)
        const etag = got.headers.get("etag") ?? ""
        expect((yield* request(`${server.url}${link.url}`, { headers: { "if-none-match": etag } })).status).toBe(304)
        // Tampered: the signature, the expiry, or another file's id.
        const url = new URL(link.url, server.url)
        const signature = url.searchParams.get("signature") ?? ""
        const flipped = (signature[0] === "0" ? "1" : "0") + signature.slice(1)
        const tampered = [
          link.url.replace(signature, flipped),
          link.url.replace(/expires=(\d+)/, (_, e: string) => `expires=${Number(e) + 3600}`),
          link.url.replace(id, idOf(yield* uploadAs(server.url, alice, "other.txt", bytes)))
        ]
        for (const forged of tampered) {
          const refused = yield* request(`${server.url}${forged}`)
          expect(refused.status, forged).toBe(403)
          expect(errorOf(refused)).toBe("BadSignature")
        }
        // A link stands for its file's content only, not for other routes.
        expect((yield* request(`${server.url}/files/${id}${url.search}`)).status).toBe(401)
        // Expired: 403 LinkExpired.
        const brief = (yield* linkFor({ expiresInSeconds: 1 })).json as { url: string }
        yield* Effect.sleep("2100 millis")
        const expired = yield* request(`${server.url}${brief.url}`)
        expect(expired.status).toBe(403)
        expect(errorOf(expired)).toBe("LinkExpired")
        // Lifetimes outside 1 s to 7 days are refused.
        for (const expiresInSeconds of [0, 604_801, 1.5]) {
          const refused = yield* linkFor({ expiresInSeconds })
          expect(refused.status, String(expiresInSeconds)).toBe(400)
          expect(refused.json).toEqual({
            error: "InvalidBody",
            message: "Body field \"expiresInSeconds\" must be a whole number of seconds from 1 to 604800 (7 days)."
          })
        }
        // Deleted: its links answer 404.
        expect((yield* request(`${server.url}/files/${id}`, { method: "DELETE", headers: alice })).status).toBe(204)
        const gone = yield* request(`${server.url}${link.url}`)
        expect(gone.status).toBe(404)
        expect(errorOf(gone)).toBe("FileNotFound")
      })),
    120_000
  )

  it.live(
    "names: NFC-normalized on upload; a format character (U+202E) is 422 InvalidFileName",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith(jwtEnv)
        const alice = bearer(yield* tokenOf("alice"))
        const decomposed = yield* uploadAs(server.url, alice, "Cafe\u0301.txt", textOfSize(600))
        expect(decomposed.status).toBe(201)
        expect((decomposed.json as { name: string }).name).toBe("Caf\u00e9.txt")
        for (const name of ["a\u202Egpj.txt", "in\u200Bvoice.txt", "\uFEFFbom.txt"]) {
          const refused = yield* uploadAs(server.url, alice, name, textOfSize(600))
          expect(refused.status, JSON.stringify(name)).toBe(422)
          expect(errorOf(refused)).toBe("InvalidFileName")
        }
        expect(yield* counts(server.sql)).toEqual({ committed: 1 })
      })),
    120_000
  )

  it.live(
    "a JWKS key rotated mid-run: tokens of the new key pass once it is published, the old key's fail",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const [first, second] = [yield* rsaKey("first"), yield* rsaKey("second")]
        const es = yield* ecKey("elliptic")
        let published: ReadonlyArray<JWK> = [first.jwk, es.jwk]
        const jwks = yield* Effect.acquireRelease(
          Effect.async<http.Server>((resume) => {
            const s = http.createServer((_req, res) => {
              res.setHeader("content-type", "application/json")
              res.end(JSON.stringify({ keys: published }))
            })
            s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
          }),
          (s) => Effect.promise(() => new Promise((done) => s.close(done)))
        )
        const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`
        const server = yield* serverWith({ AUTH_JWKS_URL: jwksUrl, AUTH_JWKS_COOLDOWN_SECONDS: "0" })
        const list = (token: string) => request(`${server.url}/files`, { headers: bearer(token) })
        expect((yield* list(yield* first.sign("alice"))).status).toBe(200)
        expect((yield* list(yield* es.sign("alice"))).status).toBe(200)
        // Not yet published: refused.
        expect((yield* list(yield* second.sign("alice"))).status).toBe(401)
        // Rotated: the new key replaces the old one.
        published = [second.jwk]
        expect((yield* list(yield* second.sign("alice"))).status).toBe(200)
        const old = yield* list(yield* first.sign("alice"))
        expect(old.status).toBe(401)
        expect(errorOf(old)).toBe("Unauthorized")
        // HS256 tokens are not accepted by a JWKS server.
        expect((yield* list(yield* tokenOf("alice"))).status).toBe(401)
      })),
    120_000
  )

  it.live(
    "AUTH_MODE=none on loopback: a foreign Host is 421; a POST or DELETE from another Origin is 403",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* serverWith({})
        const port = new URL(server.url).port
        const raw = (method: string, headers: Record<string, string>, body?: Buffer) =>
          Effect.async<{ status: number; json: unknown }>((resume) => {
            const req = http.request(`${server.url}/files`, { method, headers }, (res) => {
              const chunks: Array<Buffer> = []
              res.on("data", (c: Buffer) => chunks.push(c))
              res.on("end", () =>
                resume(
                  Effect.succeed({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) })
                ))
            })
            req.end(body)
          })
        const form = Buffer.concat([
          Buffer.from(
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n"
          ),
          Buffer.from(textOfSize(600)),
          Buffer.from("\r\n--b--\r\n")
        ])
        const post = (headers: Record<string, string>) =>
          raw("POST", { "content-type": "multipart/form-data; boundary=b", ...headers }, form)
        // DNS rebinding: a page at evil.test whose name now resolves to 127.0.0.1.
        for (const host of ["evil.test", `evil.test:${port}`, "127.0.0.1.evil.test", "localhost.evil.test"]) {
          const misdirected = yield* raw("GET", { host })
          expect(misdirected.status, host).toBe(421)
          expect((misdirected.json as { error: string }).error).toBe("MisdirectedRequest")
        }
        for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `app.localhost:${port}`]) {
          expect((yield* raw("GET", { host })).status, host).toBe(200)
        }
        // A page posting a form to 127.0.0.1: refused; the server's own origin, or no Origin (curl): accepted.
        const foreign = yield* post({ origin: "https://evil.test" })
        expect(foreign.status).toBe(403)
        expect((foreign.json as { error: string }).error).toBe("ForbiddenOrigin")
        expect((yield* post({ origin: "null" })).status).toBe(403)
        const own = yield* post({ origin: `http://127.0.0.1:${port}` })
        expect(own.status).toBe(201)
        expect((yield* post({})).status).toBe(201)
        const id = (own.json as { id: string }).id
        const del = (headers: Record<string, string>) =>
          Effect.async<number>((resume) => {
            const req = http.request(`${server.url}/files/${id}`, { method: "DELETE", headers }, (res) => {
              res.resume()
              res.on("end", () => resume(Effect.succeed(res.statusCode ?? 0)))
            })
            req.end()
          })
        expect(yield* del({ origin: "https://evil.test" })).toBe(403)
        expect(yield* del({ origin: `http://localhost:${port}`, host: `localhost:${port}` })).toBe(204)
        // No CORS headers: a foreign page cannot read what it fetches.
        const read = yield* request(`${server.url}/files`, { headers: { origin: "https://evil.test" } })
        expect(read.headers.get("access-control-allow-origin")).toBeNull()
      })),
    120_000
  )

  it.live(
    "refuses to start without authentication off loopback, with one line saying why",
    () =>
      Effect.gen(function*() {
        for (const env of [{ HOST: "0.0.0.0" }, { HOST: "192.0.2.1", AUTH_MODE: "none", AUTH_JWT_SECRET: SECRET }]) {
          const exited = yield* ServerProcess.runToExit(env)
          expect(exited.code, JSON.stringify(env)).not.toBe(0)
          const lines = exited.stderr.trim().split("\n")
          expect(lines).toHaveLength(1)
          expect(lines[0]).toMatch(/AUTH_MODE.*loopback/)
        }
        // A short secret is refused too, naming it.
        const short = yield* ServerProcess.runToExit({ AUTH_JWT_SECRET: "short" })
        expect(short.code).not.toBe(0)
        expect(short.stderr).toContain("AUTH_JWT_SECRET must be at least 32 bytes")
      }),
    120_000
  )
})

const rsaKey = (kid: string) => signingKey(kid, "RS256")
const ecKey = (kid: string) => signingKey(kid, "ES256")

const signingKey = (kid: string, alg: "RS256" | "ES256") =>
  Effect.promise(async () => {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" }
    return {
      jwk,
      sign: (sub: string) =>
        Effect.promise(() =>
          new SignJWT({}).setProtectedHeader({ alg, kid }).setSubject(sub).setExpirationTime("10m").sign(privateKey)
        )
    }
  })
