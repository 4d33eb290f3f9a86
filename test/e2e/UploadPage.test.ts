/**
 * The upload page at `/` (issue 12), in a real browser: Debian's chromium driven by
 * playwright-core, against the real server (`node dist/bin/serve.js`) on a fresh
 * database and object directory. Without a token: files picked and dropped, the
 * rules' refusals shown next to each file before anything is sent (and nothing
 * stored), a large upload's progress, the list a page at a time, a download, a
 * signed link copied, a delete. With AUTH_JWT_SECRET: the token field, the server's
 * refusal without a token shown next to the file, an upload and a download with
 * one. A file over S3_PART_SIZE, sent by tus, with the network cut mid-upload
 * (Playwright's offline emulation) and the page resuming where the server has it.
 * Screenshots go to test-results/ (upload-page.png, upload-page-auth.png,
 * upload-page-resumed.png).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { SignJWT } from "jose"
import { createHash } from "node:crypto"
import { existsSync } from "node:fs"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type Browser, chromium, type ConsoleMessage, type Page } from "playwright-core"
import * as PostgresDatabase from "../../src/adapters/database/PostgresDatabase.js"
import { CONTENT_SECURITY_POLICY } from "../../src/adapters/http/UploadPage.js"
import { request, textOfSize } from "../support/Http.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"

/** Debian's chromium (apt-get install chromium), or CHROMIUM_PATH. */
const chromiumPath = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium"
const resultsDir = fileURLToPath(new URL("../../test-results/", import.meta.url))
const SECRET = "an HS256 secret for the upload page test, 32 bytes or more"
const MiB = 1024 * 1024

const tempDirectory = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-page-"))),
  (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
)

/** The server on a fresh database and object directory; the database is read behind it. */
const serverWith = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const databaseUrl = yield* TestDatabase.freshDatabaseUrl(Option.getOrThrow(TestDatabase.serverUrl))
    const dataDir = yield* tempDirectory
    const server = yield* ServerProcess.start({
      DATABASE_URL: Redacted.value(databaseUrl),
      DATA_DIR: dataDir,
      RECONCILE_INTERVAL_SECONDS: "0",
      ...env
    })
    const sql = Context.get(yield* Layer.build(PostgresDatabase.layerUrl(databaseUrl, 2)), SqlClient.SqlClient)
    return { url: server.url, sql, dataDir }
  })

/** Files by status in the database, and objects in the object directory (the binding marker aside). */
const stored = (sql: SqlClient.SqlClient, dataDir: string) =>
  Effect.gen(function*() {
    const rows = yield* Effect.orDie(
      sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM files GROUP BY status`
    )
    const objects = yield* Effect.promise(async () =>
      (await Fs.readdir(Path.join(dataDir, "objects"))).filter((name) => name !== ".tmp" && !name.includes("binding"))
    )
    return { files: Object.fromEntries(rows.map((row) => [row.status, row.n])), objects: objects.length }
  })

/** A browser page; what it logs as an error (a CSP violation included) and its uncaught exceptions are collected. */
const browserPage = Effect.gen(function*() {
  const browser = yield* Effect.acquireRelease(
    Effect.promise((): Promise<Browser> =>
      chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"], headless: true })
    ),
    (browser) => Effect.promise(() => browser.close())
  )
  const context = yield* Effect.promise(() => browser.newContext({ acceptDownloads: true }))
  const page = yield* Effect.promise(() => context.newPage())
  const problems: Array<string> = []
  page.on("console", (message: ConsoleMessage) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`)
  })
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`))
  // Every delete asks first; the test says yes.
  page.on("dialog", (dialog) => void dialog.accept())
  return { page, problems }
})

/** Runs the browser's part; a failure keeps the page's state as a screenshot beside the others. */
const inBrowser = (page: Page, name: string, steps: () => Promise<void>) =>
  Effect.promise(async () => {
    try {
      await steps()
    } catch (error) {
      await Fs.mkdir(resultsDir, { recursive: true })
      await page.screenshot({ path: Path.join(resultsDir, `${name}-failed.png`), fullPage: true }).catch(() => {})
      throw error
    }
  })

const text = (content: string) => Buffer.from(content, "utf8")

/**
 * A file dropped on the drop zone, as a drag from the desktop delivers it. (Code
 * run in the page is given as text: the tests are compiled without the DOM's types.)
 */
const drop = async (page: Page, name: string, content: string) => {
  const transfer = await page.evaluateHandle(`(() => {
    const transfer = new DataTransfer()
    transfer.items.add(new File([${JSON.stringify(content)}], ${JSON.stringify(name)}, { type: "text/plain" }))
    return transfer
  })()`)
  const zone = page.locator("#drop-zone")
  await zone.dispatchEvent("dragover", { dataTransfer: transfer })
  await zone.dispatchEvent("drop", { dataTransfer: transfer })
}

const uploadItem = (page: Page, name: string) =>
  page.locator("#uploads li").filter({ has: page.locator(".name", { hasText: new RegExp(`^${name}$`) }) })

describe.skipIf(Option.isNone(TestDatabase.serverUrl) || !existsSync(chromiumPath))("the upload page", () => {
  it.live(
    "without authentication: pick, drop, refuse, progress, list, download, link, delete",
    () =>
      Effect.gen(function*() {
        const server = yield* serverWith({ UPLOAD_MAX_BYTES: String(8 * MiB) })
        // The page and its files come with a strict CSP and from this server only.
        const home = yield* request(`${server.url}/`)
        expect(home.status).toBe(200)
        expect(home.headers.get("content-type")).toBe("text/html; charset=utf-8")
        expect(home.headers.get("content-security-policy")).toBe(CONTENT_SECURITY_POLICY)
        expect(home.headers.get("x-content-type-options")).toBe("nosniff")
        const html = new TextDecoder().decode(home.bytes)
        expect(html).not.toMatch(/<script(?![^>]*\bsrc="\/page\.js")/)
        expect(html).not.toMatch(/(src|href)="https?:/)
        const script = yield* request(`${server.url}/page.js`)
        expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8")
        const etag = script.headers.get("etag") ?? ""
        expect((yield* request(`${server.url}/page.js`, { headers: { "if-none-match": etag } })).status).toBe(304)
        expect((yield* request(`${server.url}/policy`)).json).toEqual({
          minBytes: 512,
          maxBytes: 8 * MiB,
          contentTypes: ["text/plain"],
          extensions: ["txt"],
          authentication: "none",
          // S3_PART_SIZE's default: the 6 MiB file below goes by POST /files.
          resumableAbove: 8 * MiB
        })

        const { page, problems } = yield* browserPage
        const big = "tandem ".repeat(Math.ceil((6 * MiB) / 7)).slice(0, 6 * MiB)
        let linkUrl = ""
        yield* inBrowser(page, "upload-page", async () => {
          await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url })
          // Two files a page, to see the paging.
          await page.goto(`${server.url}/?limit=2`)
          // The limits, before any upload.
          const rules = page.locator("#rules-list")
          await expect.poll(() => rules.innerText()).toContain("From 512 bytes to 8 MiB (512 to 8388608 bytes).")
          expect(await rules.innerText()).toContain("Content types: text/plain.")
          expect(await rules.innerText()).toContain("Extensions: .txt.")
          await expect.poll(() => page.locator("#files-status").innerText()).toBe("No files yet.")

          // A valid file, picked.
          const picker = page.getByLabel("Choose files to upload")
          await picker.setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: text("n".repeat(1024)) })
          await expect.poll(() => uploadItem(page, "notes.txt").getAttribute("data-state")).toBe("uploaded")
          expect(await uploadItem(page, "notes.txt").locator(".message").innerText()).toBe("Uploaded (1 KiB).")

          // Files the rules refuse: each says why, in plain words, next to it.
          await picker.setInputFiles([
            { name: "tiny.txt", mimeType: "text/plain", buffer: text("too short") },
            { name: "photo.png", mimeType: "image/png", buffer: Buffer.alloc(600, 1) },
            { name: "binary.txt", mimeType: "text/plain", buffer: Buffer.alloc(600, 0xff) },
            { name: "notes.md", mimeType: "text/plain", buffer: text("m".repeat(600)) }
          ])
          const refusals = {
            "tiny.txt": "Not uploaded: The file has 9 bytes; the minimum is 512. (FileTooSmall)",
            "photo.png": "Not uploaded: Content type \"image/png\" is not allowed; allowed: text/plain. " +
              "(ContentTypeNotAllowed)",
            "binary.txt": "Not uploaded: The file content is not valid UTF-8. (NotUtf8)",
            "notes.md": "Not uploaded: Extension \".md\" is not allowed; allowed: .txt. (ExtensionNotAllowed)"
          }
          for (const [name, message] of Object.entries(refusals)) {
            await expect.poll(() => uploadItem(page, name).getAttribute("data-state")).toBe("refused")
            expect(await uploadItem(page, name).locator(".message").innerText()).toBe(message)
          }

          // A large file, on a slowed link: its progress shows on the way.
          const cdp = await page.context().newCDPSession(page)
          await cdp.send("Network.enable")
          await cdp.send("Network.emulateNetworkConditions", {
            offline: false,
            latency: 0,
            downloadThroughput: -1,
            uploadThroughput: 2 * MiB
          })
          await picker.setInputFiles({ name: "big.txt", mimeType: "text/plain", buffer: text(big) })
          const bigItem = uploadItem(page, "big.txt")
          // The bar part-way and its percentage, read together in the page.
          const partWay = () =>
            page.evaluate(`(() => {
              const item = [...document.querySelectorAll("#uploads li")]
                .find((li) => li.querySelector(".name")?.textContent === "big.txt")
              const value = item?.querySelector("progress")?.value ?? 0
              const message = item?.querySelector(".message")?.textContent ?? ""
              return value > 0 && value < 1 && /^Uploading… [1-9][0-9]?%$/.test(message)
            })()`)
          await expect.poll(partWay, { timeout: 20_000, interval: 50 }).toBe(true)
          await expect.poll(() => bigItem.getAttribute("data-state"), { timeout: 30_000 }).toBe("uploaded")
          expect(await bigItem.locator(".message").innerText()).toBe("Uploaded (6 MiB).")
          await cdp.send("Network.emulateNetworkConditions", {
            offline: false,
            latency: 0,
            downloadThroughput: -1,
            uploadThroughput: -1
          })

          // A file dropped on the zone.
          await drop(page, "dropped.txt", "d".repeat(700))
          await expect.poll(() => uploadItem(page, "dropped.txt").getAttribute("data-state")).toBe("uploaded")

          // The list, newest first, two at a time.
          const names = () => page.locator("#files td.name").allInnerTexts()
          await expect.poll(names).toEqual(["dropped.txt", "big.txt"])
          await page.getByRole("button", { name: "Load more" }).click()
          await expect.poll(names).toEqual(["dropped.txt", "big.txt", "notes.txt"])
          expect(await page.getByRole("button", { name: "Load more" }).isHidden()).toBe(true)

          // Download: the exact bytes, under the file's name.
          const [download] = await Promise.all([
            page.waitForEvent("download"),
            page.getByRole("link", { name: "Download notes.txt" }).click()
          ])
          expect(download.suggestedFilename()).toBe("notes.txt")
          expect(await Fs.readFile(await download.path(), "utf8")).toBe("n".repeat(1024))

          // Copy link: a signed link, shown and on the clipboard.
          await page.getByRole("button", { name: "Copy a link to notes.txt" }).click()
          const shown = page.getByRole("textbox", { name: "Link to notes.txt", exact: true })
          await expect.poll(() => shown.inputValue()).toMatch(
            new RegExp(`^${server.url}/files/[0-9a-f-]{36}/content\\?expires=\\d+&signature=`)
          )
          linkUrl = await shown.inputValue()
          expect(await page.evaluate("navigator.clipboard.readText()")).toBe(linkUrl)
          expect(await page.locator("#files").innerText()).toContain("Link copied to the clipboard.")

          // Delete.
          await page.getByRole("button", { name: "Delete dropped.txt" }).click()
          await expect.poll(names).toEqual(["big.txt", "notes.txt"])
          expect(await page.locator("#files-status").innerText()).toBe("Deleted dropped.txt.")

          // Keyboard: the file picker and every action are reachable with Tab.
          await page.locator("body").focus()
          const reached = new Set<string>()
          for (let i = 0; i < 20; i++) {
            await page.keyboard.press("Tab")
            reached.add(String(
              await page.evaluate("document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.id")
            ))
          }
          expect([...reached]).toEqual(expect.arrayContaining(["file-input", "refresh", "Delete notes.txt"]))

          await Fs.mkdir(resultsDir, { recursive: true })
          await page.screenshot({ path: Path.join(resultsDir, "upload-page.png"), fullPage: true })
        })

        // Behind the page: the refused files left nothing, the deleted one is gone, the link works without a token.
        expect(yield* stored(server.sql, server.dataDir)).toEqual({ files: { committed: 2 }, objects: 2 })
        const viaLink = yield* request(linkUrl)
        expect(viaLink.status).toBe(200)
        expect(new TextDecoder().decode(viaLink.bytes)).toBe("n".repeat(1024))
        expect(problems).toEqual([])
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )

  it.live(
    "with AUTH_JWT_SECRET: the token field, a refusal without one, an upload and a download with one",
    () =>
      Effect.gen(function*() {
        const server = yield* serverWith({ AUTH_JWT_SECRET: SECRET })
        expect(((yield* request(`${server.url}/policy`)).json as { authentication: string }).authentication).toBe(
          "bearer"
        )
        const token = yield* Effect.promise(() =>
          new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("alice").setIssuedAt()
            .setExpirationTime("10 minutes").sign(new TextEncoder().encode(SECRET))
        )
        const { page, problems } = yield* browserPage
        yield* inBrowser(page, "upload-page-auth", async () => {
          await page.goto(server.url)
          const tokenField = page.getByLabel("Bearer token (a JWT)")
          await expect.poll(() => tokenField.isVisible()).toBe(true)
          await expect.poll(() => page.locator("#files-status").innerText()).toBe("Enter a token to see your files.")

          // Without a token the server refuses, and says so next to the file.
          const picker = page.getByLabel("Choose files to upload")
          await picker.setInputFiles({ name: "first.txt", mimeType: "text/plain", buffer: text("f".repeat(600)) })
          await expect.poll(() => uploadItem(page, "first.txt").getAttribute("data-state")).toBe("refused")
          expect(await uploadItem(page, "first.txt").locator(".message").innerText()).toBe(
            "The server refused it: Authentication is required: no bearer token (Authorization: Bearer <JWT>). " +
              "(Unauthorized)"
          )
          expect(await page.locator("#token-status").innerText()).toContain("Authentication is required")

          // With one, it goes through and lists.
          await tokenField.fill(token)
          await page.getByRole("button", { name: "Use token" }).click()
          await expect.poll(() => page.locator("#files-status").innerText()).toBe("No files yet.")
          expect(await page.evaluate("sessionStorage.getItem('tandem.token')")).toBe(token)
          await picker.setInputFiles({ name: "second.txt", mimeType: "text/plain", buffer: text("s".repeat(600)) })
          await expect.poll(() => uploadItem(page, "second.txt").getAttribute("data-state")).toBe("uploaded")
          await expect.poll(() => page.locator("#files td.name").allInnerTexts()).toEqual(["second.txt"])

          // A download goes by a short-lived signed link: a plain link would carry no token.
          const [download] = await Promise.all([
            page.waitForEvent("download"),
            page.getByRole("link", { name: "Download second.txt" }).click()
          ])
          expect(await Fs.readFile(await download.path(), "utf8")).toBe("s".repeat(600))

          await Fs.mkdir(resultsDir, { recursive: true })
          await page.screenshot({ path: Path.join(resultsDir, "upload-page-auth.png"), fullPage: true })
        })
        const owners = yield* Effect.orDie(server.sql<{ owner: string }>`SELECT owner FROM files`)
        expect(owners.map((row) => row.owner)).toEqual(["alice"])
        // The refused upload's 401 is the only error the browser logged.
        expect(problems.filter((problem) => !problem.includes("401"))).toEqual([])
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  it.live(
    "a file over S3_PART_SIZE goes by tus, with progress, and resumes when the network comes back",
    () =>
      Effect.gen(function*() {
        const partSize = 5 * MiB
        const server = yield* serverWith({ UPLOAD_MAX_BYTES: String(32 * MiB), S3_PART_SIZE: String(partSize) })
        expect(((yield* request(`${server.url}/policy`)).json as { resumableAbove: number }).resumableAbove).toBe(
          partSize
        )
        const size = 14 * MiB
        const content = Buffer.from(textOfSize(size, "tandem héllo wörld – ünïcode "))
        const { page, problems } = yield* browserPage

        // Every tus request the page makes, and whether the network was cut or back when it did.
        type Phase = "before" | "offline" | "back"
        let phase = "before" as Phase
        const tusRequests: Array<{ method: string; offset: number | undefined; phase: Phase }> = []
        page.on("request", (sent) => {
          if (!new URL(sent.url()).pathname.startsWith("/uploads")) return
          const offset = sent.headers()["upload-offset"]
          tusRequests.push({ method: sent.method(), offset: offset === undefined ? undefined : Number(offset), phase })
        })
        const cut: Array<string> = []
        page.on("requestfailed", (failed) => {
          if (new URL(failed.url()).pathname.startsWith("/uploads")) {
            cut.push(`${failed.method()} ${failed.failure()?.errorText ?? ""}`)
          }
        })
        const item = uploadItem(page, "huge.txt")
        const progressOf = () =>
          page.evaluate(`(() => {
            const item = [...document.querySelectorAll("#uploads li")]
              .find((li) => li.querySelector(".name")?.textContent === "huge.txt")
            return item?.querySelector("progress")?.value ?? 0
          })()`) as Promise<number>

        let fileId = ""
        yield* inBrowser(page, "upload-page-resumed", async () => {
          await page.goto(server.url)
          await expect.poll(() => page.locator("#files-status").innerText()).toBe("No files yet.")

          // A slow link, so that the network can be cut while bytes are on the way.
          const cdp = await page.context().newCDPSession(page)
          await cdp.send("Network.enable")
          await cdp.send("Network.emulateNetworkConditions", {
            offline: false,
            latency: 0,
            downloadThroughput: -1,
            uploadThroughput: 3 * MiB
          })
          await page.getByLabel("Choose files to upload").setInputFiles({
            name: "huge.txt",
            mimeType: "text/plain",
            buffer: content
          })

          // Cut once the first part is through and the second is on its way. (This session's throttling
          // would override Playwright's offline emulation: it goes first. Chromium lets the PATCH in flight
          // finish; the next one fails.)
          await expect.poll(progressOf, { timeout: 30_000, interval: 50 }).toBeGreaterThan((partSize + MiB) / size)
          expect(await item.getAttribute("data-state")).toBe("uploading")
          phase = "offline"
          await cdp.detach()
          await page.context().setOffline(true)
          await expect.poll(() => item.locator(".message").innerText(), { timeout: 10_000 }).toBe(
            "Offline; the upload goes on when the connection is back…"
          )
          expect(await progressOf()).toBeLessThan(1)
          await page.waitForTimeout(2_000)
          phase = "back"
          await page.context().setOffline(false)

          await expect.poll(() => item.getAttribute("data-state"), { timeout: 60_000 }).toBe("uploaded")
          expect(await item.locator(".message").innerText()).toBe("Uploaded (14 MiB).")
          const listed = page.locator("#files tr").filter({ has: page.locator("td.name", { hasText: /^huge\.txt$/ }) })
          await expect.poll(() => listed.locator("td.size").innerText()).toBe("14 MiB")
          fileId = (await listed.getAttribute("data-id")) ?? ""
          // Done, the upload is forgotten: the same file again would be a new upload.
          expect(await page.evaluate("Object.keys(localStorage).filter((key) => key.startsWith('tus::'))")).toEqual([])

          await Fs.mkdir(resultsDir, { recursive: true })
          await page.screenshot({ path: Path.join(resultsDir, "upload-page-resumed.png"), fullPage: true })
        })

        // One upload, created once; the cut failed a PATCH; back online, the page asked where the upload
        // stood and went on from there, not from the start.
        expect(cut).toContain("PATCH net::ERR_INTERNET_DISCONNECTED")
        const creations = tusRequests.filter((sent) => sent.method === "POST")
        expect(creations).toHaveLength(1)
        const patches = tusRequests.filter((sent) => sent.method === "PATCH")
        expect(patches.filter((sent) => sent.offset === 0)).toHaveLength(1)
        const after = tusRequests.filter((sent) => sent.phase === "back")
        expect(after[0]?.method).toBe("HEAD")
        const resumed = after.filter((sent) => sent.method === "PATCH")
        expect(resumed.length).toBeGreaterThan(0)
        expect(resumed[0]?.offset).toBeGreaterThanOrEqual(partSize)
        // At most a whole part a PATCH: the bytes sent add up to less than twice the file.
        const sentBytes = patches.reduce((total, sent) => total + Math.min(partSize, size - (sent.offset ?? 0)), 0)
        expect(sentBytes).toBeLessThan(2 * size)

        // The file is whole: its size and SHA-256 are the bytes picked.
        const got = yield* request(`${server.url}/files/${fileId}`)
        expect(got.status).toBe(200)
        expect(got.json).toMatchObject({
          name: "huge.txt",
          size,
          sha256: createHash("sha256").update(content).digest("hex")
        })
        expect(yield* stored(server.sql, server.dataDir)).toEqual({ files: { committed: 1 }, objects: 1 })
        // The requests the cut failed are all the browser complained of.
        expect(problems.filter((problem) => !problem.includes("ERR_INTERNET_DISCONNECTED"))).toEqual([])
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
