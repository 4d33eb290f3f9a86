/**
 * tandem as src/main/serve.ts runs it, with the stores in memory: the same server
 * (HTTP API, FileService, reconciler loop, settings, runtime); only Stores.layer
 * is replaced by Stores.layerMemory.
 */
import * as Server from "../src/main/Server.js"
import * as Stores from "../src/main/Stores.js"

Server.runMain(Stores.layerMemory)
