import { Console, Effect, Option, Redacted } from "effect"
import type { Scope } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import type { S3Settings } from "../../../src/adapters/objects/S3ObjectStore.js"
import * as TempDirectory from "../../support/TempDirectory.js"
import * as TestDatabase from "../../support/TestDatabase.js"
import * as CrashS3 from "./CrashS3.js"
import * as Guarantees from "./Guarantees.js"
import type { Ledger, Violation } from "./Ledger.js"
import * as ReconcileCli from "./ReconcileCli.js"
import * as Replica from "./Replica.js"
import * as ResumableClient from "./ResumableClient.js"

/** tandem's default S3_PREFIX, which the servers use. */
const PREFIX = "files/"

/** The servers' S3_PART_SIZE: the smallest S3 allows (5 MiB), so resumable uploads cross it with small files. */
export const PART_SIZE = 5 * 1024 * 1024

/**
 * A crash run's server settings over the test's s3rver: logs, a reconciler quick to
 * act, files up to 12 MiB (resumable uploads of up to two parts and a bit), and
 * resumable uploads that do not expire during a run (an hour): an unfinished one is
 * a live intent the reconciler must leave alone.
 */
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
  RECONCILE_GRACE_SECONDS: "2",
  S3_PART_SIZE: String(PART_SIZE),
  UPLOAD_MAX_BYTES: String(12 * 1024 * 1024),
  TUS_EXPIRY_SECONDS: "3600"
})

export interface Environment {
  readonly databaseUrl: Redacted.Redacted
  readonly s3: CrashS3.CrashS3
  /** The server's environment, without PORT. */
  readonly serverEnv: Record<string, string>
}

/**
 * A fresh database on TEST_DATABASE_URL's server and a fresh s3rver (CrashS3: in
 * its own process, so it outlives every server kill), removed when the scope closes.
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
  const s3 = yield* CrashS3.start
  const dataDirectory = yield* TempDirectory.make("crash")
  return {
    databaseUrl,
    s3,
    serverEnv: { ...serverEnvOn(s3.settings, dataDirectory), DATABASE_URL: Redacted.value(databaseUrl) }
  }
})

export interface Outcome {
  readonly kills: number
  /** The final reconcile, while the unfinished resumable uploads are open... */
  readonly reconcile: ReconcileCli.CliRun
  /** ...again once every one of them was finished or terminated... */
  readonly settledReconcile: ReconcileCli.CliRun
  /** ...and its dry run. */
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
  const history = ledger.uploads.get(id)?.history ?? ledger.resumable.get(id)?.history ??
    ["(never acknowledged to a client)"]
  const lines = entriesNaming(id, logs)
  return [
    `${violation.guarantee} ${violation.subject}: ${violation.detail}`,
    "  client:",
    ...history.map((line) => `    ${line}`),
    "  server logs naming it:",
    ...lines.map((line) => `    ${line}`)
  ].join("\n")
}

const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/**
 * After the servers stopped, the final restart: one life of each replica, on the
 * database and bucket as the kills left them (for the embedded run, on its cluster
 * through DATABASE_URL). HEAD of every resumable upload against what its client was
 * told, the final `npm run reconcile` (grace 0), then G1–G4 and the open uploads
 * checked against the database and the bucket. Then the open uploads are finished
 * or terminated (ResumableClient.settle), the servers stopped, and reconcile again,
 * the checks (every object read back) and `reconcile --dry-run`: nothing may be left
 * but committed files. The totals are printed; on a violation the full server logs
 * go to a temp file, named in the output.
 */
export const finish = (
  name: string,
  environment: Environment,
  ledger: Ledger,
  replicas: ReadonlyArray<Replica.Replica>
): Effect.Effect<Outcome, unknown> =>
  Effect.gen(function*() {
    const cliEnv = { ...environment.serverEnv, RECONCILE_GRACE_SECONDS: "0" }
    const checkIn = (phase: "live" | "settled") =>
      Guarantees.check({ databaseUrl: environment.databaseUrl, s3: environment.s3, prefix: PREFIX, ledger, phase })
    const finals = yield* Effect.forEach(
      replicas,
      (replica) => Replica.make(`${replica.name} (final restart)`, environment.serverEnv)
    )
    /** How long each step of the final checks took. */
    const steps: Array<string> = []
    const timed = <A, E, R>(step: string, self: Effect.Effect<A, E, R>) =>
      Effect.suspend(() => {
        const started = performance.now()
        return Effect.tap(self, () => steps.push(`${step} ${((performance.now() - started) / 1000).toFixed(1)} s`))
      })
    const { live, probe, reconcile, settle } = yield* timed(
      "in all, until the servers stopped",
      Effect.scoped(Effect.gen(function*() {
        yield* timed("restart", Effect.forEach(finals, Replica.live, { discard: true }))
        const targets = finals.map((replica) => replica.url)
        const probe = yield* timed("HEAD", ResumableClient.probe(targets, ledger))
        const reconcile = yield* timed("reconcile", ReconcileCli.run(cliEnv))
        const live = yield* timed("check", checkIn("live"))
        const settle = yield* timed("finish/terminate", ResumableClient.settle(targets, ledger, live.unknownResumable))
        return { live, probe, reconcile, settle }
      }))
    )
    const settledReconcile = yield* timed("reconcile", ReconcileCli.run(cliEnv))
    const final = yield* timed("check", checkIn("settled"))
    const dryRun = yield* timed("dry run", ReconcileCli.run(cliEnv, ["--dry-run"]))

    /** What the clients had been told about a repaired key's file. */
    const clientView = (repair: Guarantees.RepairRow) => {
      const id = repair.file_id ?? repair.object_key.slice(PREFIX.length)
      const upload = ledger.uploads.get(id)
      const resumable = ledger.resumable.get(id)
      return upload === undefined
        ? resumable === undefined ? "never acknowledged" : `resumable ${resumable.state}`
        : upload.state === "deleted"
        ? "delete acknowledged"
        : upload.state
    }
    // What both checks find (a G1 break, say) is one violation.
    const violations = Array.from(
      new Map(
        [...ledger.violations, ...live.violations, ...final.violations].map((v) => [
          `${v.guarantee} ${v.subject} ${v.detail}`,
          v
        ])
      ).values()
    )
    const kills = replicas.reduce((total, replica) => total + replica.kills, 0)
    const startFailures = [...replicas, ...finals].flatMap((replica) => replica.startFailures)
    const ran = (run: ReconcileCli.CliRun) =>
      `orphans found and removed ${ReconcileCli.count(run, "orphan objects removed")}, abandoned uploads removed ${
        ReconcileCli.count(run, "abandoned uploads removed")
      }, unfinished deletes finished ${ReconcileCli.count(run, "unfinished deletes finished")} (exit ${run.code})`

    yield* Console.log([
      `crash totals (${name})`,
      `  kills: ${kills}${startFailures.length > 0 ? ` (start attempts retried: ${startFailures.length})` : ""}`,
      `  uploads acknowledged: ${ledger.uploadsAcknowledged} (${ledger.resumableFinished} of them resumable)`,
      `  deletes acknowledged: ${ledger.deletesAcknowledged} (+${ledger.deletesConfirmedBy404} confirmed by a 404 after a lost answer; ${
        ledger.inState("doubt").length
      } left in doubt)`,
      `  reads verified: ${ledger.readsVerified}`,
      `  resumable uploads: ${ledger.resumableCreated} created (+${
        ledger.resumableCreations.size - ledger.resumableCreated
      } creations unanswered), ${ledger.offsetsAcknowledged} offsets acknowledged (${
        MiB(ledger.bytesAcknowledged)
      }), ${ledger.replicaSwitches} PATCHes to another replica than the one before, ${
        Array.from(ledger.resumable.values()).filter((entry) => entry.abandoned).length
      } left unfinished by their client`,
      `    at the final restart: ${probe.open} open (HEAD at or past the acknowledged offset; ${
        MiB(probe.aheadBytes)
      } past it), ${probe.finished} finished, ${probe.terminated} terminated`,
      `    then ${settle.finished} finished from HEAD's offset, ${settle.terminated} terminated, ${settle.unknownTerminated} unknown (creation unanswered) terminated`,
      `  client errors: ${ledger.clientErrors}${ledger.clientErrors > 0 ? ` (${describeCounts(ledger.errors)})` : ""}`,
      `  final reconcile: ${ran(reconcile)}`,
      `  with uploads open: ${live.intents} intent(s) (live resumable uploads), ${live.resumableRows} resumable row(s), ${live.tailRows} tail row(s), ${live.multipartUploads} multipart upload(s)`,
      `  settled, reconcile: ${ran(settledReconcile)}`,
      `  repairs logged overall: ${final.repairs.length}${
        final.repairs.length > 0 ? ` (${countBy(final.repairs, (repair) => repair.problem)})` : ""
      }`,
      ...(final.repairs.length > 0
        ? [`    by what the clients knew of the file: ${
          countBy(final.repairs, (repair) => `${repair.problem}/${clientView(repair)}`)
        }`]
        : []),
      `  end state: ${final.committedFiles} committed file(s), ${final.objects} object(s), ${final.intents} intent(s), ${final.resumableRows} resumable row(s), ${final.tailRows} tail row(s), ${final.multipartUploads} multipart upload(s)${
        final.unrecordedMultipart.length > 0
          ? ` (never recorded, a kill before its id was: ${final.unrecordedMultipart.join("; ")})`
          : ""
      }; dry run: ${ReconcileCli.verdict(dryRun)} (exit ${dryRun.code})`,
      `  final restart and checks: ${steps.join(", ")}`,
      `  violations: ${violations.length}${
        violations.length > 0
          ? ` (${countBy(violations, (v) => v.guarantee)})`
          : ""
      }`
    ].join("\n"))

    for (const run of [reconcile, settledReconcile, dryRun]) {
      if (run.code !== 0) {
        yield* Console.log(`reconcile ${run.args.join(" ")} output (exit ${run.code}):\n${run.stdout}${run.stderr}`)
      }
    }
    if (violations.length > 0) {
      const logs = [...replicas, ...finals].map(Replica.logs).join("\n")
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
    return { kills, reconcile, settledReconcile, dryRun, violations }
  })
