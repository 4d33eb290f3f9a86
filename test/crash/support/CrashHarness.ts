import { Console, Effect, Option, Redacted } from "effect"
import type { Scope } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import type { S3Settings } from "../../../src/adapters/objects/S3ObjectStore.js"
import * as S3TestServer from "../../support/S3TestServer.js"
import * as TempDirectory from "../../support/TempDirectory.js"
import * as TestDatabase from "../../support/TestDatabase.js"
import * as Guarantees from "./Guarantees.js"
import type { Ledger, Violation } from "./Ledger.js"
import * as ReconcileCli from "./ReconcileCli.js"
import * as Replica from "./Replica.js"

/** tandem's default S3_PREFIX, which the servers use. */
const PREFIX = "files/"

/** A crash run's server settings over the test's s3rver: logs, and a reconciler quick to act. */
export const serverEnvOn = (s3: S3Settings, dataDirectory: string): Record<string, string> => ({
  DATA_DIR: dataDirectory,
  LOG_LEVEL: "Info",
  S3_BUCKET: s3.bucket,
  S3_ENDPOINT: s3.endpoint ?? "",
  S3_REGION: s3.region,
  S3_FORCE_PATH_STYLE: "true",
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER",
  RECONCILE_INTERVAL_SECONDS: "1",
  RECONCILE_GRACE_SECONDS: "2"
})

export interface Environment {
  readonly databaseUrl: Redacted.Redacted
  readonly s3: S3Settings
  /** The server's environment, without PORT. */
  readonly serverEnv: Record<string, string>
}

/**
 * A fresh database on TEST_DATABASE_URL's server and a fresh s3rver (in its own
 * process, so it outlives every server kill), removed when the scope closes.
 */
export const environment: Effect.Effect<Environment, Error, Scope.Scope> = Effect.gen(function*() {
  const server = yield* Option.match(TestDatabase.serverUrl, {
    onNone: () =>
      Effect.fail(
        new Error("the crash suite needs TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)")
      ),
    onSome: Effect.succeed
  })
  const databaseUrl = yield* TestDatabase.freshDatabaseUrl(server)
  const s3 = yield* S3TestServer.settings
  const dataDirectory = yield* TempDirectory.make("crash")
  return {
    databaseUrl,
    s3,
    serverEnv: { ...serverEnvOn(s3, dataDirectory), DATABASE_URL: Redacted.value(databaseUrl) }
  }
})

export interface Outcome {
  readonly kills: number
  readonly reconcile: ReconcileCli.CliRun
  readonly dryRun: ReconcileCli.CliRun
  readonly violations: ReadonlyArray<Violation>
}

const describeCounts = (counts: ReadonlyMap<string, number>): string =>
  Array.from(counts).sort(([, a], [, b]) => b - a).map(([name, count]) => `${name} ${count}`).join(", ")

const countBy = <A>(items: ReadonlyArray<A>, key: (item: A) => string): string => {
  const counts = new Map<string, number>()
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1)
  return describeCounts(counts)
}

/** The log entries (a "[hh:mm:ss.mmm] LEVEL" line and its indented details) naming `id`, under their life's header. */
const entriesNaming = (id: string, logs: string): Array<string> => {
  const found: Array<string> = []
  let header: string | undefined
  let entry: Array<string> = []
  const flush = () => {
    if (entry.some((line) => line.includes(id))) {
      if (header !== undefined) found.push(header)
      header = undefined
      found.push(...entry)
    }
    entry = []
  }
  for (const line of logs.split("\n")) {
    if (line.startsWith("----- ")) {
      flush()
      header = line
    } else if (/^\[\d/.test(line)) {
      flush()
      entry.push(line)
    } else entry.push(line)
  }
  flush()
  return found
}

/**
 * Everything known about one violation: what the client sent and heard, and every
 * server log line that names the file.
 */
const diagnose = (violation: Violation, ledger: Ledger, logs: string): string => {
  const id = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/.exec(violation.subject)?.[0] ??
    violation.subject
  const history = ledger.uploads.get(id)?.history ?? ["(never acknowledged to a client)"]
  const lines = entriesNaming(id, logs)
  return [
    `${violation.guarantee} ${violation.subject}: ${violation.detail}`,
    "  client:",
    ...history.map((line) => `    ${line}`),
    "  server logs naming it:",
    ...lines.map((line) => `    ${line}`)
  ].join("\n")
}

/**
 * After the servers stopped: the final `npm run reconcile` (grace 0), G1–G4 checked
 * against the database and the bucket, `reconcile --dry-run`, and the totals. On a
 * violation the full server logs go to a temp file, named in the output.
 */
export const finish = (
  name: string,
  environment: Environment,
  ledger: Ledger,
  replicas: ReadonlyArray<Replica.Replica>
): Effect.Effect<Outcome, unknown> =>
  Effect.gen(function*() {
    const cliEnv = { ...environment.serverEnv, RECONCILE_GRACE_SECONDS: "0" }
    const reconcile = yield* ReconcileCli.run(cliEnv)
    const final = yield* Guarantees.check({
      databaseUrl: environment.databaseUrl,
      s3: environment.s3,
      prefix: PREFIX,
      ledger
    })
    const dryRun = yield* ReconcileCli.run(cliEnv, ["--dry-run"])
    /** What the clients had been told about a repaired key's file. */
    const clientView = (repair: Guarantees.RepairRow) => {
      const upload = ledger.uploads.get(repair.file_id ?? repair.object_key.slice(PREFIX.length))
      return upload === undefined
        ? "never acknowledged"
        : upload.state === "deleted"
        ? "delete acknowledged"
        : upload.state
    }
    const violations = [...ledger.violations, ...final.violations]
    const kills = replicas.reduce((total, replica) => total + replica.kills, 0)
    const startFailures = replicas.flatMap((replica) => replica.startFailures)

    yield* Console.log([
      `crash totals (${name})`,
      `  kills: ${kills}${startFailures.length > 0 ? ` (start attempts retried: ${startFailures.length})` : ""}`,
      `  uploads acknowledged: ${ledger.uploadsAcknowledged}`,
      `  deletes acknowledged: ${ledger.deletesAcknowledged} (+${ledger.deletesConfirmedBy404} confirmed by a 404 after a lost answer; ${
        ledger.inState("doubt").length
      } left in doubt)`,
      `  reads verified: ${ledger.readsVerified}`,
      `  client errors: ${ledger.clientErrors}${ledger.clientErrors > 0 ? ` (${describeCounts(ledger.errors)})` : ""}`,
      `  final reconcile: orphans found and removed ${
        ReconcileCli.count(reconcile, "orphan objects removed")
      }, abandoned uploads removed ${
        ReconcileCli.count(reconcile, "abandoned uploads removed")
      }, unfinished deletes finished ${
        ReconcileCli.count(reconcile, "unfinished deletes finished")
      } (exit ${reconcile.code})`,
      `  repairs logged overall: ${final.repairs.length}${
        final.repairs.length > 0 ? ` (${countBy(final.repairs, (repair) => repair.problem)})` : ""
      }`,
      ...(final.repairs.length > 0
        ? [`    by what the clients knew of the file: ${
          countBy(final.repairs, (repair) => `${repair.problem}/${clientView(repair)}`)
        }`]
        : []),
      `  end state: ${final.committedFiles} committed file(s), ${final.objects} object(s); dry run: ${
        ReconcileCli.verdict(dryRun)
      } (exit ${dryRun.code})`,
      `  violations: ${violations.length}${
        violations.length > 0
          ? ` (${countBy(violations, (v) => v.guarantee)})`
          : ""
      }`
    ].join("\n"))

    if (reconcile.code !== 0 || dryRun.code !== 0) {
      yield* Console.log(
        `reconcile output:\n${reconcile.stdout}${reconcile.stderr}\ndry run output:\n${dryRun.stdout}${dryRun.stderr}`
      )
    }
    if (violations.length > 0) {
      const logs = replicas.map(Replica.logs).join("\n")
      const file = Path.join(Os.tmpdir(), `tandem-crash-${name}-${Date.now()}.log`)
      yield* Effect.promise(() =>
        Fs.writeFile(file, logs)
      )
      yield* Console.log(
        [`violations (server logs in ${file}):`, ...violations.slice(0, 20).map((v) => diagnose(v, ledger, logs))].join(
          "\n"
        )
      )
    }
    return { kills, reconcile, dryRun, violations }
  })
