/** Reads a V8 .cpuprofile and sums self time by function (name + url) and by package. */
import { Schema } from "effect"
import { round } from "./Stats.js"

const CallFrame = Schema.Struct({
  functionName: Schema.String,
  url: Schema.String,
  lineNumber: Schema.Number
})

const ProfileNode = Schema.Struct({
  id: Schema.Number,
  callFrame: CallFrame,
  children: Schema.optional(Schema.Array(Schema.Number))
})

const Profile = Schema.Struct({
  nodes: Schema.Array(ProfileNode),
  startTime: Schema.Number,
  endTime: Schema.Number,
  samples: Schema.Array(Schema.Number),
  timeDeltas: Schema.Array(Schema.Number)
})

export interface Entry {
  readonly name: string
  readonly ms: number
  /** Share of the busy (non-idle) time in the window. */
  readonly percent: number
}

export interface Summary {
  /** The window the samples were taken from, and how much of it the process was busy. */
  readonly windowMs: number
  readonly busyMs: number
  readonly samples: number
  /** False when the window did not line up with the profile's clock and the whole profile was used. */
  readonly windowed: boolean
  readonly functions: ReadonlyArray<Entry>
  readonly packages: ReadonlyArray<Entry>
  /**
   * Inclusive time by tandem source file: samples with a frame of that file on the
   * stack (its synchronous work and what it calls; the fiber runtime runs effects
   * the file builds outside its frames, so that is not counted).
   */
  readonly tandemFiles: ReadonlyArray<Entry>
}

const IDLE = "(idle)"

/**
 * tandem's compiled files (dist/main/…, dist/app/…, or dist/bench/src/… for the in-memory
 * entry) as the source file they come from: "src/app/FileService.js".
 */
const tandemFile = (url: string): string | undefined => {
  if (url.includes("node_modules/")) return undefined
  const match = /\/dist\/(?:bench\/)?(?:src\/)?((?:app|adapters|domain|ports|bench)\/[^:]*)$/.exec(url)
  return match?.[1] === undefined ? undefined : match[1].startsWith("bench/") ? match[1] : `src/${match[1]}`
}

/** file:///…/node_modules/@effect/platform/dist/esm/x.js → "@effect/platform"; tandem's own code → "tandem". */
export const packageOf = (url: string, functionName: string): string => {
  if (url === "") return functionName.startsWith("(") ? functionName : "(V8 builtins and native)"
  if (url.startsWith("node:")) return "(node internals)"
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (match?.[1] !== undefined) return match[1]
  return tandemFile(url) === undefined ? url : "tandem"
}

/** A readable location: the path inside the package, or inside the repository. */
export const shortUrl = (url: string): string => {
  const inModules = url.lastIndexOf("node_modules/")
  if (inModules >= 0) return url.slice(inModules + "node_modules/".length)
  return tandemFile(url) ?? url
}

const top = (totals: Map<string, number>, busyMs: number, limit: number): Array<Entry> =>
  [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, micros]) => ({ name, ms: round(micros / 1000, 1), percent: round((micros / 1000 / busyMs) * 100, 1) }))

/**
 * `window` is [from, to] in microseconds of the monotonic clock the profile's
 * timestamps use (process.hrtime on the same machine).
 */
export const summarize = (json: string, window: readonly [number, number] | undefined, limit = 20): Summary => {
  const profile = Schema.decodeUnknownSync(Profile)(JSON.parse(json))
  const nodes = new Map(profile.nodes.map((node) => [node.id, node.callFrame]))
  const parents = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id)
  /** The tandem files on a sample's stack, computed once per profile node. */
  const filesOnStack = new Map<number, ReadonlySet<string>>()
  const tandemFilesOf = (id: number): ReadonlySet<string> => {
    const known = filesOnStack.get(id)
    if (known !== undefined) return known
    const parent = parents.get(id)
    const files = new Set(parent === undefined ? [] : tandemFilesOf(parent))
    const own = tandemFile(nodes.get(id)?.url ?? "")
    if (own !== undefined) files.add(own)
    filesOnStack.set(id, files)
    return files
  }
  // Sample i is taken at startTime + timeDeltas[0..i] and stands for the time until the next one.
  const times: Array<number> = []
  let clock = profile.startTime
  for (const deltaMicros of profile.timeDeltas) times.push(clock += deltaMicros)
  const windowed = window !== undefined && window[0] >= profile.startTime && window[1] <= profile.endTime
  const [from, to] = windowed ? window : [profile.startTime, profile.endTime]
  const byFunction = new Map<string, number>()
  const byPackage = new Map<string, number>()
  const byTandemFile = new Map<string, number>()
  let busy = 0
  let samples = 0
  profile.samples.forEach((id, index) => {
    const at = times[index] ?? 0
    if (at < from || at > to) return
    const weight = (times[index + 1] ?? at) - at
    const frame = nodes.get(id)
    if (frame === undefined) return
    samples++
    if (frame.functionName === IDLE) return
    busy += weight
    const name = `${frame.functionName === "" ? "(anonymous)" : frame.functionName}${
      frame.url === "" ? "" : ` ${shortUrl(frame.url)}`
    }`
    byFunction.set(name, (byFunction.get(name) ?? 0) + weight)
    const pkg = packageOf(frame.url, frame.functionName)
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + weight)
    for (const file of tandemFilesOf(id)) byTandemFile.set(file, (byTandemFile.get(file) ?? 0) + weight)
  })
  const busyMs = busy / 1000
  return {
    windowMs: round((to - from) / 1000, 1),
    busyMs: round(busyMs, 1),
    samples,
    windowed,
    functions: top(byFunction, busyMs, limit),
    packages: top(byPackage, busyMs, limit),
    tandemFiles: top(byTandemFile, busyMs, limit)
  }
}
