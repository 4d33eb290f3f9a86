import type { HttpApp } from "@effect/platform"
import { Duration, Effect, Fiber, Schedule } from "effect"

/**
 * The requests being served now, so a shutdown can let them finish: the platform
 * runs each request in a fiber of its own, outside any scope the server owns, so
 * without this list a SIGTERM would end the process under them.
 */
export class InFlightRequests extends Effect.Service<InFlightRequests>()("http/InFlightRequests", {
  sync: () => {
    const fibers = new Set<Fiber.RuntimeFiber<unknown, unknown>>()

    /** Middleware: the request's fiber is listed for as long as it runs. */
    const track = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
      Effect.withFiberRuntime((fiber) => {
        fibers.add(fiber)
        return Effect.ensuring(app, Effect.sync(() => fibers.delete(fiber)))
      })

    /**
     * Waits up to `timeout` for the requests in flight to end, then interrupts the
     * rest and waits for them (an interrupted upload compensates: nothing is left
     * behind). Reports how many ended by themselves and how many were interrupted.
     */
    const drain = (timeout: Duration.DurationInput) =>
      Effect.gen(function*() {
        const before = fibers.size
        // A deadline, not Effect.timeout: a shutdown runs this in a finalizer, where
        // nothing can be interrupted (and an interruptible region would end at once,
        // the fiber being interrupted already).
        const deadline = Date.now() + Duration.toMillis(timeout)
        yield* Effect.sync(() => fibers.size === 0 || Date.now() >= deadline).pipe(
          Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (done) => done })
        )
        const left = [...fibers]
        if (left.length > 0) yield* Fiber.interruptAll(left)
        return { finished: Math.max(0, before - left.length), interrupted: left.length } as const
      })

    return { track, drain, size: Effect.sync(() => fibers.size) } as const
  }
}) {}
