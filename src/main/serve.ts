import * as Server from "./Server.js"
import * as Stores from "./Stores.js"

/**
 * `npm start`: the server over the stores the environment configures, with the
 * upload page. The page is built to dist/page/, beside this script's directory
 * whether it runs bundled (dist/bin/serve.js) or as tsc wrote it (dist/main/serve.js).
 */
Server.runMain(Stores.layer, { page: new URL("../page/", import.meta.url) })
