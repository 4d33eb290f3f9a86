import * as Server from "./Server.js"
import * as Stores from "./Stores.js"

/** `npm start`: the server over the stores the environment configures. */
Server.runMain(Stores.layer)
