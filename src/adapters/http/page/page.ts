/**
 * The upload page's script (served as /page.js, built by esbuild): picks or drops
 * files, checks each against the server's rules (GET /policy) before sending it,
 * sends it with progress (POST /files, or tus at /uploads above the part size, so a
 * large one survives a dropped connection or a reload), and lists, downloads,
 * deletes and links the caller's files. No framework; the DOM is built with
 * textContent only (the page's CSP enforces Trusted Types, so no HTML is ever
 * parsed from strings).
 */
import { type DetailedError, isSupported as tusSupported, Upload } from "tus-js-client"
import {
  contentCheck,
  declarationRefusal,
  declaredType,
  describePolicy,
  formatBytes,
  type Policy,
  type Refusal
} from "./rules.js"

/** What GET /policy answers: the rules, and the size above which a file goes by tus (S3_PART_SIZE). */
interface PagePolicy extends Policy {
  readonly resumableAbove: number
}

interface FileView {
  readonly id: string
  readonly name: string
  readonly size: number
  readonly contentType: string
  readonly createdAt: string
}

interface FilePage {
  readonly items: ReadonlyArray<FileView>
  readonly nextCursor: string | null
}

interface Link {
  readonly url: string
  readonly expiresAt: string
}

const TOKEN_KEY = "tandem.token"

const byId = <T extends HTMLElement>(id: string, type: new() => T): T => {
  const element = document.getElementById(id)
  if (!(element instanceof type)) throw new Error(`the page has no #${id}`)
  return element
}

const ui = {
  auth: byId("auth", HTMLElement),
  tokenForm: byId("token-form", HTMLFormElement),
  token: byId("token", HTMLInputElement),
  tokenForget: byId("token-forget", HTMLButtonElement),
  tokenStatus: byId("token-status", HTMLElement),
  rules: byId("rules-list", HTMLUListElement),
  dropZone: byId("drop-zone", HTMLElement),
  fileInput: byId("file-input", HTMLInputElement),
  uploadsTitle: byId("uploads-title", HTMLElement),
  uploads: byId("uploads", HTMLUListElement),
  refresh: byId("refresh", HTMLButtonElement),
  filesStatus: byId("files-status", HTMLElement),
  filesTable: byId("files-table", HTMLTableElement),
  files: byId("files", HTMLTableSectionElement),
  more: byId("more", HTMLButtonElement)
}

/** An element with attributes and children (strings become text, never HTML). */
const h = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: ReadonlyArray<Node | string>
): HTMLElementTagNameMap[K] => {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value)
  element.append(...children)
  return element
}

// ---------------------------------------------------------------------------
// The token

let policy: PagePolicy | undefined

const storedToken = (): string => sessionStorage.getItem(TOKEN_KEY) ?? ""

const authHeaders = (): Record<string, string> => {
  const token = storedToken()
  return policy?.authentication === "bearer" && token !== "" ? { authorization: `Bearer ${token}` } : {}
}

/** The server refused the token (or there is none): the token field, with the reason, focused. */
const askForToken = (reason: string) => {
  ui.auth.hidden = false
  ui.tokenStatus.textContent = reason
  ui.tokenStatus.className = "error"
  ui.token.focus()
}

// ---------------------------------------------------------------------------
// Talking to the API

/** A refusal from the API: its JSON body's tag and message, or what went wrong getting one. */
class ApiError extends Error {
  constructor(readonly status: number, readonly tag: string, message: string) {
    super(message)
  }
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

const errorFrom = (status: number, body: unknown): ApiError =>
  isRecord(body) && typeof body["error"] === "string" && typeof body["message"] === "string"
    ? new ApiError(status, body["error"], body["message"])
    : new ApiError(status, `HTTP ${status}`, `The server answered ${status} without saying why.`)

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A call to the API as the caller: its JSON on success, an ApiError otherwise (401 asks for a token). */
const api = async <A>(path: string, init: RequestInit = {}): Promise<A> => {
  let response: Response
  try {
    response = await fetch(path, { ...init, headers: { ...authHeaders(), ...init.headers } })
  } catch {
    throw new ApiError(0, "NetworkError", "The server could not be reached.")
  }
  const text = await response.text()
  const body = parseJson(text)
  if (!response.ok) {
    const error = errorFrom(response.status, body)
    if (response.status === 401) askForToken(error.message)
    throw error
  }
  return body as A
}

const absolute = (url: string) => new URL(url, location.href).href

const describeError = (error: unknown): string =>
  error instanceof ApiError ? error.message : error instanceof Error ? error.message : String(error)

// ---------------------------------------------------------------------------
// Checking a file against the rules

/** The first rule the file breaks, reading at most its first `maxBytes + 1` bytes. */
const checkFile = async (rules: Policy, file: File): Promise<Refusal | undefined> => {
  const declared = declarationRefusal(rules, file.name, declaredType(file.type))
  if (declared !== undefined) return declared
  const check = contentCheck(rules)
  const reader = file.slice(0, rules.maxBytes + 1).stream().getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    const refused = check.update(value)
    if (refused !== undefined) {
      await reader.cancel()
      return refused
    }
  }
  return check.finish()
}

// ---------------------------------------------------------------------------
// Uploads

type UploadState = "checking" | "refused" | "waiting" | "uploading" | "uploaded"

interface UploadRow {
  readonly item: HTMLLIElement
  readonly progress: HTMLProgressElement
  readonly message: HTMLParagraphElement
}

const uploadRow = (file: File): UploadRow => {
  const progress = h("progress", { max: "1", "aria-label": `Progress of ${file.name}` })
  progress.hidden = true
  const message = h("p", { class: "message" }, "Checking…")
  const item = h(
    "li",
    { "data-state": "checking" },
    h("span", { class: "name" }, file.name),
    h("span", { class: "size" }, formatBytes(file.size)),
    progress,
    message
  )
  ui.uploadsTitle.hidden = false
  ui.uploads.prepend(item)
  return { item, progress, message }
}

const setState = (row: UploadRow, state: UploadState, text: string, tag?: string) => {
  row.item.dataset["state"] = state
  row.message.replaceChildren(text, ...(tag === undefined ? [] : [" ", h("span", { class: "tag" }, `(${tag})`)]))
}

/** Sends one file (multipart, part `file`), showing progress; resolves with the server's answer. */
const send = (file: File, row: UploadRow): Promise<FileView> =>
  new Promise((resolve, reject) => {
    const request = new XMLHttpRequest()
    request.open("POST", "/files")
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value)
    request.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable || event.total === 0) return
      const fraction = event.loaded / event.total
      row.progress.value = fraction
      setState(row, "uploading", `Uploading… ${Math.floor(fraction * 100)}%`)
    })
    request.addEventListener("load", () => {
      const body = parseJson(request.responseText)
      if (request.status === 201) resolve(body as FileView)
      else reject(errorFrom(request.status, body))
    })
    request.addEventListener("error", () => reject(new ApiError(0, "NetworkError", "The connection failed.")))
    request.addEventListener("abort", () => reject(new ApiError(0, "Aborted", "The upload was cancelled.")))
    const form = new FormData()
    form.append("file", file, file.name)
    request.send(form)
  })

/**
 * How long a resumable upload keeps retrying a failed request (a dropped
 * connection, a 5xx, an upload still busy with the request before), in ms: about
 * two minutes in all, and from the start again once bytes get through. While the
 * browser knows it is offline it does not retry but waits to be online.
 */
const RETRY_DELAYS = [0, 1000, 2000, 3000, 5000, 5000, 5000, 10_000, 10_000, 15_000, 20_000, 20_000, 30_000]

const isRetryable = (error: DetailedError): boolean => {
  const status = error.originalResponse?.getStatus() ?? 0
  // No answer, the server's trouble, or an upload busy (409 UploadBusy, OffsetMismatch: HEAD tells the offset again).
  return status === 0 || status >= 500 || status === 409 || status === 423 || status === 429
}

/** A tus failure as the page shows the API's: the JSON body's message, or what went wrong. */
const tusError = (error: Error | DetailedError): ApiError => {
  const response = "originalResponse" in error ? error.originalResponse : null
  if (response === null) return new ApiError(0, "NetworkError", "The connection failed.")
  return errorFrom(response.getStatus(), parseJson(response.getBody()))
}

/**
 * Sends one file with tus (POST /uploads, then PATCHes of `partSize`), showing
 * progress; resolves with the file it became. An upload of the same file that this
 * browser started before (a reload, a closed tab) is resumed where the server has
 * it (tus-js-client keeps its URL in localStorage). Offline, it waits to be online.
 */
const sendResumable = (file: File, row: UploadRow, partSize: number): Promise<FileView> =>
  new Promise((resolve, reject) => {
    const upload: Upload = new Upload(file, {
      endpoint: absolute("/uploads"),
      metadata: { filename: file.name, filetype: declaredType(file.type) },
      headers: authHeaders(),
      chunkSize: partSize,
      retryDelays: RETRY_DELAYS,
      removeFingerprintOnSuccess: true,
      onShouldRetry: (error) => {
        if (!isRetryable(error) || !navigator.onLine) return false
        setState(row, "uploading", "Connection trouble; retrying…")
        return true
      },
      onProgress: (sent, total) => {
        if (total === 0) return
        const fraction = sent / total
        row.progress.value = fraction
        setState(row, "uploading", `Uploading… ${Math.floor(fraction * 100)}%`)
      },
      onSuccess: ({ lastResponse }) => {
        // The last PATCH (or HEAD, for one done before) names the file it committed.
        const location = lastResponse.getHeader("location")
        if (location === undefined || !location.startsWith("/files/")) {
          reject(new ApiError(0, "NoLocation", "The server finished the upload without naming the file."))
        } else {
          api<FileView>(location).then(resolve, reject)
        }
      },
      onError: (error) => {
        const failure = tusError(error)
        if (failure.status === 0 && !navigator.onLine) {
          setState(row, "uploading", "Offline; the upload goes on when the connection is back…")
          addEventListener("online", () => upload.start(), { once: true })
        } else {
          reject(failure)
        }
      }
    })
    upload.findPreviousUploads().then(
      (previous) => {
        const latest = previous.sort((a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime))[0]
        if (latest !== undefined) upload.resumeFromPreviousUpload(latest)
        upload.start()
      },
      () => upload.start()
    )
  })

/** Uploads run one at a time, each once its checks passed. */
let queue: Promise<void> = Promise.resolve()

const upload = async (file: File) => {
  const row = uploadRow(file)
  const rules = policy
  if (rules === undefined) return setState(row, "refused", "The upload rules could not be loaded; reload the page.")
  const refused = await checkFile(rules, file)
  if (refused !== undefined) return setState(row, "refused", `Not uploaded: ${refused.message}`, refused.tag)
  setState(row, "waiting", "Waiting for the uploads before it…")
  queue = queue.then(async () => {
    row.progress.hidden = false
    row.progress.value = 0
    setState(row, "uploading", "Uploading… 0%")
    try {
      const stored = tusSupported && file.size > rules.resumableAbove
        ? await sendResumable(file, row, rules.resumableAbove)
        : await send(file, row)
      row.progress.value = 1
      setState(row, "uploaded", `Uploaded (${formatBytes(stored.size)}).`)
      await loadFiles()
    } catch (error) {
      row.progress.hidden = true
      const tag = error instanceof ApiError ? error.tag : "Error"
      setState(row, "refused", `The server refused it: ${describeError(error)}`, tag)
      if (error instanceof ApiError && error.status === 401) askForToken(error.message)
    }
  })
  await queue
}

const uploadAll = (files: Iterable<File>) => {
  for (const file of files) void upload(file)
}

ui.fileInput.addEventListener("change", () => {
  if (ui.fileInput.files !== null) uploadAll(Array.from(ui.fileInput.files))
  ui.fileInput.value = ""
})

// The whole zone takes a drop; the file input inside it stays the keyboard's way in.
ui.dropZone.addEventListener("dragover", (event) => {
  event.preventDefault()
  if (event.dataTransfer !== null) event.dataTransfer.dropEffect = "copy"
  ui.dropZone.classList.add("dragging")
})
ui.dropZone.addEventListener("dragleave", () => ui.dropZone.classList.remove("dragging"))
ui.dropZone.addEventListener("drop", (event) => {
  event.preventDefault()
  ui.dropZone.classList.remove("dragging")
  if (event.dataTransfer !== null) uploadAll(Array.from(event.dataTransfer.files))
})

// ---------------------------------------------------------------------------
// The caller's files

const pageSize = (() => {
  const asked = Number(new URLSearchParams(location.search).get("limit"))
  return Number.isInteger(asked) && asked >= 1 && asked <= 100 ? asked : 20
})()

let cursor: string | null = null

const makeLink = (file: FileView, expiresInSeconds: number) =>
  api<Link>(`/files/${encodeURIComponent(file.id)}/links`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ expiresInSeconds })
  })

const fileRow = (file: FileView): HTMLTableRowElement => {
  const download = h("a", {
    href: `/files/${encodeURIComponent(file.id)}/content`,
    "aria-label": `Download ${file.name}`
  }, "Download")
  const copy = h("button", { type: "button", "aria-label": `Copy a link to ${file.name}` }, "Copy link")
  const remove = h("button", { type: "button", "aria-label": `Delete ${file.name}` }, "Delete")
  const linkBox = h("div", { class: "link-box", role: "status" })
  const row = h(
    "tr",
    { "data-id": file.id },
    h("td", { class: "name" }, file.name),
    h("td", { class: "size" }, formatBytes(file.size)),
    h("td", {}, file.contentType),
    h("td", {}, h("time", { datetime: file.createdAt }, new Date(file.createdAt).toLocaleString())),
    h("td", { class: "actions" }, h("div", { class: "row" }, download, copy, remove), linkBox)
  )

  // With a token, a plain link would go without it: download through a short-lived signed link instead.
  download.addEventListener("click", (event) => {
    if (policy?.authentication !== "bearer") return
    event.preventDefault()
    makeLink(file, 60).then(
      (link) => location.assign(absolute(link.url)),
      (error: unknown) => linkBox.replaceChildren(h("span", { class: "error" }, describeError(error)))
    )
  })

  copy.addEventListener("click", async () => {
    copy.disabled = true
    try {
      const link = await makeLink(file, 3600)
      const url = absolute(link.url)
      const box = h("input", { type: "text", readonly: "", value: url, "aria-label": `Link to ${file.name}` })
      let copied = false
      try {
        await navigator.clipboard.writeText(url)
        copied = true
      } catch {
        // No clipboard access (an insecure origin, or denied): the link is shown to copy by hand.
      }
      const until = new Date(link.expiresAt).toLocaleString()
      linkBox.replaceChildren(
        h("span", {}, copied ? "Link copied to the clipboard." : "Copy this link:"),
        h("span", { class: "hint" }, `Works without a token until ${until}.`),
        box
      )
      if (!copied) box.select()
    } catch (error) {
      linkBox.replaceChildren(h("span", { class: "error" }, describeError(error)))
    } finally {
      copy.disabled = false
    }
  })

  remove.addEventListener("click", async () => {
    if (!confirm(`Delete ${file.name}? This cannot be undone.`)) return
    remove.disabled = true
    try {
      await api<unknown>(`/files/${encodeURIComponent(file.id)}`, { method: "DELETE" })
      row.remove()
      ui.filesStatus.textContent = `Deleted ${file.name}.`
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        row.remove()
        ui.filesStatus.textContent = `${file.name} was already gone.`
      } else {
        remove.disabled = false
        ui.filesStatus.textContent = `Could not delete ${file.name}: ${describeError(error)}`
      }
    }
    ui.filesTable.hidden = ui.files.rows.length === 0
  })
  return row
}

/** The first page again (`more`: the next page, added below). */
const loadFiles = async (more = false) => {
  if (policy?.authentication === "bearer" && storedToken() === "") {
    ui.filesStatus.textContent = "Enter a token to see your files."
    return
  }
  const query = new URLSearchParams({ limit: String(pageSize) })
  if (more && cursor !== null) query.set("cursor", cursor)
  ui.filesTable.setAttribute("aria-busy", "true")
  try {
    const page = await api<FilePage>(`/files?${query.toString()}`)
    const rows = page.items.map(fileRow)
    if (more) ui.files.append(...rows)
    else ui.files.replaceChildren(...rows)
    cursor = page.nextCursor
    ui.more.hidden = cursor === null
    ui.filesTable.hidden = ui.files.rows.length === 0
    ui.filesStatus.textContent = ui.files.rows.length === 0
      ? "No files yet."
      : `${ui.files.rows.length} ${ui.files.rows.length === 1 ? "file" : "files"} shown${
        cursor === null ? "" : ", more below"
      }.`
  } catch (error) {
    ui.filesStatus.textContent = `Could not list your files: ${describeError(error)}`
  } finally {
    ui.filesTable.removeAttribute("aria-busy")
  }
}

ui.refresh.addEventListener("click", () => void loadFiles())
ui.more.addEventListener("click", () => void loadFiles(true))

ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const token = ui.token.value.trim()
  if (token === "") sessionStorage.removeItem(TOKEN_KEY)
  else sessionStorage.setItem(TOKEN_KEY, token)
  ui.tokenStatus.className = ""
  ui.tokenStatus.textContent = token === "" ? "No token." : "Token kept for this tab."
  void loadFiles()
})

ui.tokenForget.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY)
  ui.token.value = ""
  ui.tokenStatus.className = ""
  ui.tokenStatus.textContent = "Token forgotten."
  ui.files.replaceChildren()
  ui.filesTable.hidden = true
  ui.more.hidden = true
  void loadFiles()
})

// ---------------------------------------------------------------------------
// Start: the rules first, then the files.

const start = async () => {
  try {
    policy = await api<PagePolicy>("/policy")
  } catch (error) {
    ui.rules.replaceChildren(h("li", { class: "error" }, `Could not load the upload rules: ${describeError(error)}`))
    return
  }
  ui.rules.replaceChildren(...describePolicy(policy).map((line) => h("li", {}, line)))
  if (policy.authentication === "bearer") {
    ui.auth.hidden = false
    ui.token.value = storedToken()
  }
  document.body.dataset["ready"] = "true"
  await loadFiles()
}

void start()
