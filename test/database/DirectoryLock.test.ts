/**
 * DirectoryLock (src/adapters/database/DirectoryLock.ts) between real processes:
 * two acquiring at once a directory whose lock a dead process left, a holder
 * killed with SIGKILL, a second acquire while the first holds. Both mechanisms run
 * (the abstract socket only where there are abstract sockets, on Linux); the child
 * processes run the compiled module, dist/ (test/globalSetup.ts builds it).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { readFile, utimes, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { mechanisms } from "../../src/adapters/database/DirectoryLock.js"
import * as TempDirectory from "../support/TempDirectory.js"

type Mechanism = keyof typeof mechanisms

const root = fileURLToPath(new URL("../..", import.meta.url))

/**
 * A contender: loads the module and says "ready"; on "go <directory>" acquires it
 * and says "won" or "lost <message>", holding what it got until "release" (then
 * says "released"); exits on "exit". One pair of contenders runs all the rounds:
 * loading Effect costs a node process a few hundred milliseconds of CPU, too much
 * to start two per round.
 */
const contenderScript = `
import { Cause, Effect, Exit, Scope } from "effect"
import { createInterface } from "node:readline"
import { mechanisms } from "./dist/adapters/database/DirectoryLock.js"
const acquire = mechanisms[process.env.LOCK_MECHANISM]
let scope = Effect.runSync(Scope.make())
console.log("ready")
for await (const line of createInterface({ input: process.stdin })) {
  const [command, directory] = line.split("\\t")
  if (command === "go") {
    const exit = await Effect.runPromiseExit(Scope.extend(acquire(directory), scope))
    const messages = []
    for (let error = Exit.isFailure(exit) && Cause.squash(exit.cause); error instanceof Error; error = error.cause) {
      messages.push(error.message)
    }
    console.log(Exit.isSuccess(exit) ? "won" : "lost " + messages.join(": "))
  } else if (command === "release") {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    scope = Effect.runSync(Scope.make())
    console.log("released")
  } else {
    process.exit(0)
  }
}
`

interface Contender {
  readonly child: ChildProcess
  /** The next line it writes. */
  readonly line: Effect.Effect<string>
  readonly send: (...command: ReadonlyArray<string>) => Effect.Effect<void>
  readonly exited: Effect.Effect<void>
}

/** A contender process, once ready; SIGKILLed when the scope closes if it still runs. */
const contender = (mechanism: Mechanism) =>
  Effect.acquireRelease(
    Effect.sync((): Contender => {
      const child = spawn(process.execPath, ["--input-type=module", "-e", contenderScript], {
        cwd: root,
        env: { PATH: process.env.PATH ?? "", LOCK_MECHANISM: mechanism },
        stdio: ["pipe", "pipe", "pipe"]
      })
      let stderr = ""
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
      const exit = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
      return {
        child,
        line: Effect.promise(async () => {
          const next = await lines.next()
          if (next.done === true) throw new Error(`the contender exited: ${stderr}`)
          return next.value
        }),
        send: (...command) => Effect.sync(() => void child.stdin.write(`${command.join("\t")}\n`)),
        exited: Effect.promise(() => exit)
      }
    }),
    ({ child, exited }) =>
      child.exitCode === null && child.signalCode === null
        ? Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), exited)
        : Effect.void
  ).pipe(Effect.tap((contender) => Effect.map(contender.line, (line) => expect(line).toBe("ready"))))

/** The pid of a process that ran and exited. */
const deadPid = Effect.async<number>((resume) => {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" })
  child.once("exit", () => resume(Effect.succeed(child.pid ?? 0)))
})

const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** A `tandem.lock` as the process `pid` left it. */
const leaveLock = (directory: string, pid: number) =>
  Effect.promise(() => writeFile(join(directory, "tandem.lock"), String(pid)))

const lockContent = (directory: string) =>
  Effect.promise(() => readFile(join(directory, "tandem.lock"), "utf8").catch(() => "(none)"))

/** A fresh directory with a stale lock, both contenders told to go at once: what each says. */
const race = (a: Contender, b: Contender) =>
  Effect.scoped(Effect.gen(function*() {
    const directory = yield* TempDirectory.make("lock")
    const pid = yield* deadPid
    expect(isRunning(pid)).toBe(false)
    yield* leaveLock(directory, pid)
    yield* Effect.all([a.send("go", directory), b.send("go", directory)])
    const said = yield* Effect.all([a.line, b.line], { concurrency: 2 })
    yield* Effect.all([a.send("release"), b.send("release")])
    expect(yield* Effect.all([a.line, b.line], { concurrency: 2 })).toEqual(["released", "released"])
    return said
  }))

const ROUNDS = 50

const acquireIn = (scope: Scope.Scope, mechanism: Mechanism, directory: string) =>
  Scope.extend(mechanisms[mechanism](directory), scope)

const available: ReadonlyArray<Mechanism> = process.platform === "linux" ? ["socket", "file"] : ["file"]

describe.each(available)("DirectoryLock, %s", (mechanism) => {
  it.scopedLive(`two processes on a directory with a stale lock, ${ROUNDS} times: exactly one wins each time`, () =>
    Effect.gen(function*() {
      const [a, b] = yield* Effect.all([contender(mechanism), contender(mechanism)], { concurrency: 2 })
      const outcomes: Array<ReadonlyArray<string>> = []
      for (let round = 0; round < ROUNDS; round++) outcomes.push(yield* race(a, b))
      const wrong = outcomes.flatMap((said, round) =>
        said.filter((line) => line === "won").length === 1 &&
          said.some((line) => line.includes("is in use by another tandem process"))
          ? []
          : [`round ${round}: ${said.join(" | ")}`]
      )
      expect(wrong).toEqual([])
    }))

  it.scopedLive("a lock held by a process killed with SIGKILL does not block the next acquire", () =>
    Effect.gen(function*() {
      const directory = yield* TempDirectory.make("lock")
      const holder = yield* Effect.scoped(Effect.gen(function*() {
        const holder = yield* contender(mechanism)
        yield* holder.send("go", directory)
        expect(yield* holder.line).toBe("won")
        holder.child.kill("SIGKILL")
        yield* holder.exited
        return holder.child
      }))
      expect(holder.signalCode).toBe("SIGKILL")
      // It left its lock file behind.
      expect(yield* lockContent(directory)).toBe(String(holder.pid))
      const scope = yield* Scope.make()
      yield* acquireIn(scope, mechanism, directory)
      expect(yield* lockContent(directory)).toBe(String(process.pid))
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("a second acquire while the first holds is refused, naming the holder's pid; after release it succeeds", () =>
    Effect.gen(function*() {
      const directory = yield* TempDirectory.make("lock")
      const first = yield* Scope.make()
      yield* acquireIn(first, mechanism, directory)
      const second = yield* Scope.make()
      const refused = yield* Effect.flip(acquireIn(second, mechanism, directory))
      expect(refused).toBeInstanceOf(Error)
      expect(refused.message).toBe(`${directory} is in use by another tandem process (pid ${process.pid})`)
      yield* Scope.close(first, Exit.void)
      expect(yield* lockContent(directory)).toBe("(none)")
      yield* acquireIn(second, mechanism, directory)
      yield* Scope.close(second, Exit.void)

      // Held by another process: named by its pid.
      const holder = yield* contender(mechanism)
      yield* holder.send("go", directory)
      expect(yield* holder.line).toBe("won")
      const third = yield* Scope.make()
      const byOther = yield* Effect.flip(acquireIn(third, mechanism, directory))
      expect(byOther.message).toBe(`${directory} is in use by another tandem process (pid ${holder.child.pid})`)
      yield* holder.send("exit")
      yield* holder.exited
      yield* acquireIn(third, mechanism, directory)
      yield* Scope.close(third, Exit.void)
    }))
})

describe("DirectoryLock, file", () => {
  it.scopedLive("a take-over guard left by a process that died holding it is stale after a while", () =>
    Effect.gen(function*() {
      const directory = yield* TempDirectory.make("lock")
      yield* leaveLock(directory, yield* deadPid)
      const guard = join(directory, "tandem.lock.takeover")
      yield* Effect.promise(async () => {
        await writeFile(guard, "1")
        const aMinuteAgo = new Date(Date.now() - 60_000)
        await utimes(guard, aMinuteAgo, aMinuteAgo)
      })
      const scope = yield* Scope.make()
      yield* acquireIn(scope, "file", directory)
      expect(yield* lockContent(directory)).toBe(String(process.pid))
      yield* Scope.close(scope, Exit.void)
      expect(yield* lockContent(directory)).toBe("(none)")
    }))
})
