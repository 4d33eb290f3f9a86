import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { FileService } from "../../app/FileService.js"
import { TandemApi } from "./Api.js"
import { NotReady } from "./RequestErrors.js"

const READINESS_TIMEOUT = "3 seconds"

export const HealthHandlers = HttpApiBuilder.group(TandemApi, "health", (handlers) =>
  Effect.gen(function*() {
    const files = yield* FileService
    return handlers
      .handle("healthz", () => Effect.succeed({ status: "ok" } as const))
      .handle("readyz", () =>
        files.ready.pipe(
          Effect.timeoutFail({
            duration: READINESS_TIMEOUT,
            onTimeout: () => [new Error(`no answer within ${READINESS_TIMEOUT}`)]
          }),
          Effect.as({ status: "ready" } as const),
          Effect.tapError((errors) => Effect.logWarning("not ready", errors)),
          Effect.mapError((errors) => new NotReady({ reasons: errors.map((error) => error.message) }))
        ))
  }))
