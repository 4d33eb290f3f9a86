import { HttpApp, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"

/** Sets headers on the response the request ends with, whether it succeeds or fails. */
export const withResponseHeaders = (headers: Record<string, string>) =>
  HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeaders(response, headers)))
