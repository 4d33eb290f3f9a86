/**
 * tandem as src/app/main.ts runs it, with the stores in memory: the same server
 * (HTTP API, FileService, reconciler loop, settings, runtime); only Stores.layer
 * is replaced by MemoryObjectStore and MemoryFileRepository.
 */
import { Layer } from "effect"
import * as MemoryFileRepository from "../src/adapters/MemoryFileRepository.js"
import * as MemoryObjectStore from "../src/adapters/MemoryObjectStore.js"
import * as Server from "../src/app/Server.js"

Server.runMain(Layer.merge(MemoryObjectStore.layer, MemoryFileRepository.layer))
