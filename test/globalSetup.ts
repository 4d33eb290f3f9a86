import { execFileSync } from "node:child_process"

/** Builds dist/ once, so the end-to-end tests run the server exactly as `npm start` does. */
export default function setup() {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" })
}
