import { execFileSync } from "node:child_process"

/** Builds dist/ once (`npm run build`), so the end-to-end tests run the server exactly as `npm start` does. */
export default function setup() {
  execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" })
}
