import { Pool } from "undici"

export interface Upload {
  readonly headers: Readonly<Record<string, string>>
  readonly body: Buffer
}

/** `size` bytes of valid ASCII text: numbered lines, cut to length, ending with a newline. */
export const textOf = (size: number, seed = 0): Buffer => {
  let text = ""
  for (let line = 0; text.length < size; line++) {
    text += `tandem benchmark line ${
      String(seed * 1_000_000 + line).padStart(7, "0")
    }: the quick brown fox jumps over the lazy dog\n`
  }
  return Buffer.from(`${text.slice(0, size - 1)}\n`, "ascii")
}

export const BOUNDARY = "----tandem-bench-3f6b1c2e9a"

export const multipartHead = (filename: string, contentType: string): Buffer =>
  Buffer.from(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\n` +
      `Content-Type: ${contentType}\r\n\r\n`,
    "ascii"
  )

export const multipartTail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`, "ascii")

export const multipartHeaders = { "content-type": `multipart/form-data; boundary=${BOUNDARY}` }

/** One pre-built request: a form with one part named `file`, x.txt, text/plain. */
export const smallUpload = (fileBytes: number): Upload => ({
  headers: multipartHeaders,
  body: Buffer.concat([multipartHead("x.txt", "text/plain"), textOf(fileBytes), multipartTail])
})

export interface LoadResult {
  readonly count: number
  readonly errors: number
  /** Non-201 statuses and exceptions, by kind. */
  readonly errorKinds: Readonly<Record<string, number>>
  readonly durationMs: number
  /** Every request's latency, errors included, in milliseconds. */
  readonly latenciesMs: Float64Array
  /** CPU this process (the load generator) used meanwhile. */
  readonly clientCpuMs: number
}

/** A keep-alive connection per concurrent client, nothing else. */
export const connect = (origin: string, concurrency: number): Pool =>
  new Pool(origin, { connections: concurrency, pipelining: 1, headersTimeout: 60_000, bodyTimeout: 60_000 })

/** `count` uploads by `concurrency` clients, each sending its next request as soon as the last answered. */
export const run = async (pool: Pool, upload: Upload, count: number, concurrency: number): Promise<LoadResult> => {
  const latenciesMs = new Float64Array(count)
  const errorKinds: Record<string, number> = {}
  let errors = 0
  let next = 0
  const fail = (kind: string) => {
    errors++
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1
  }
  const client = async () => {
    while (next < count) {
      const index = next++
      const started = process.hrtime.bigint()
      try {
        const response = await pool.request({
          path: "/files",
          method: "POST",
          headers: upload.headers,
          body: upload.body
        })
        await response.body.dump()
        if (response.statusCode !== 201) fail(`HTTP ${response.statusCode}`)
      } catch (error) {
        fail(
          error instanceof Error
            ? (("code" in error && typeof error.code === "string") ? error.code : error.name)
            : "error"
        )
      }
      latenciesMs[index] = Number(process.hrtime.bigint() - started) / 1e6
    }
  }
  const cpuBefore = process.cpuUsage()
  const started = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, client))
  const durationMs = Number(process.hrtime.bigint() - started) / 1e6
  const cpu = process.cpuUsage(cpuBefore)
  return { count, errors, errorKinds, durationMs, latenciesMs, clientCpuMs: (cpu.user + cpu.system) / 1000 }
}
