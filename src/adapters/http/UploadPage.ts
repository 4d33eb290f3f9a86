import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { createHash } from "node:crypto"
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"

/**
 * The upload page at `/` (issue 12): plain HTML, CSS and a script, all from tandem
 * itself. Its sources are in ./page/; `npm run build` compiles them with esbuild to
 * dist/page/ (index.html, page.js, page.css), which the server reads once at start
 * (`load`) and serves from memory.
 */

/** The page's built files are not where the server looks for them: the build did not make them. */
export class PageNotBuilt extends Schema.TaggedError<PageNotBuilt>()("PageNotBuilt", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `The upload page is not built: cannot read ${this.path} (${this.reason}); run npm run build.`
  }
}

interface Asset {
  readonly body: Uint8Array
  readonly contentType: string
  readonly etag: string
}

/** The page's three files, read and ready to serve. */
export interface PageAssets {
  readonly html: Asset
  readonly script: Asset
  readonly style: Asset
}

/**
 * Everything the page loads comes from this server, and nothing runs but its own
 * script: no inline script or style, no eval, no HTML parsed from strings (Trusted
 * Types), no framing, calls to this origin only.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'"
].join("; ")

const readAsset = (directory: URL, name: string, contentType: string) => {
  const path = fileURLToPath(new URL(name, directory))
  return Effect.tryPromise({
    try: () => readFile(path),
    catch: (error) => new PageNotBuilt({ path, reason: error instanceof Error ? error.message : String(error) })
  }).pipe(Effect.map((body): Asset => ({
    body,
    contentType,
    etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 32)}"`
  })))
}

/**
 * Reads the built page from `directory` (a `file:` URL ending in `/`), failing with
 * PageNotBuilt if any of its files is missing, so a server without its page does
 * not start.
 */
export const load = Effect.fn("UploadPage.load")(function*(directory: URL) {
  const [html, script, style] = yield* Effect.all([
    readAsset(directory, "index.html", "text/html; charset=utf-8"),
    readAsset(directory, "page.js", "text/javascript; charset=utf-8"),
    readAsset(directory, "page.css", "text/css; charset=utf-8")
  ])
  return { html, script, style } satisfies PageAssets
})

const serve = (asset: Asset) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const headers = {
      etag: asset.etag,
      // Revalidated on every load (a 304 when unchanged), so a new build shows at once.
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      "content-security-policy": CONTENT_SECURITY_POLICY,
      "referrer-policy": "no-referrer",
      "x-frame-options": "DENY",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-resource-policy": "same-origin"
    }
    return request.headers["if-none-match"] === asset.etag
      ? HttpServerResponse.empty({ status: 304, headers })
      : HttpServerResponse.uint8Array(asset.body, { contentType: asset.contentType, headers })
  })

/** GET `/` (the page), `/page.js` and `/page.css`, beside the API's routes. */
export const layer = (assets: PageAssets) =>
  HttpApiBuilder.Router.use((router) =>
    Effect.all([
      router.get("/", serve(assets.html)),
      router.get("/page.js", serve(assets.script)),
      router.get("/page.css", serve(assets.style))
    ], { discard: true })
  )
