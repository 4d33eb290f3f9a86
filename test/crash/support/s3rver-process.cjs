// The crash suite's s3rver, in its own process so it outlives every server kill
// (started by CrashS3.ts with --openssl-legacy-provider, as test/support/s3rver-process.cjs
// is). s3rver 3.7 answers AbortMultipartUpload with 405, and takes a part or a
// completion for an upload it does not know (it writes the part into a new directory,
// fails the completion with a 500). Resumable uploads rely on both behaving as S3 does,
// so here, before s3rver's router:
//   - DELETE ?uploadId=: the upload's directory is removed (204); NoSuchUpload (404) if
//     there is no such upload for that key;
//   - PUT or POST ?uploadId= for an upload that does not exist (never created, completed
//     or aborted): NoSuchUpload (404), as S3 answers.
// Prints {"port":N} once listening; exits when stdin closes.
"use strict"
const Fs = require("node:fs/promises")
const Path = require("node:path")
const S3rver = require("s3rver")
const S3Error = require("s3rver/lib/models/error")

const [directory, bucket] = process.argv.slice(2)
const server = new S3rver({
  address: "127.0.0.1",
  port: 0,
  silent: true,
  directory,
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }]
})

/** The key an unfinished upload was created for, or undefined when s3rver has no such upload. */
const keyOf = async (bucketName, uploadId) => {
  if (!/^[0-9a-f]+$/.test(uploadId)) return undefined
  const uploadDirectory = Path.join(server.store.getResourcePath(bucketName, undefined, "uploads"), uploadId)
  try {
    return { uploadDirectory, key: await Fs.readFile(Path.join(uploadDirectory, "key"), "utf8") }
  } catch (error) {
    if (error.code === "ENOENT") return undefined
    throw error
  }
}

const multipartAsS3Does = async (ctx, next) => {
  const uploadId = ctx.query.uploadId
  const match = /^\/([^/]+)\/(.+)$/.exec(ctx.path)
  if (typeof uploadId !== "string" || match === null || !["DELETE", "PUT", "POST"].includes(ctx.method)) {
    return next()
  }
  const bucketName = decodeURIComponent(match[1])
  const key = decodeURIComponent(match[2])
  const upload = await keyOf(bucketName, uploadId)
  if (upload === undefined || upload.key !== key) {
    throw new S3Error("NoSuchUpload", "The specified upload does not exist.", { UploadId: uploadId })
  }
  if (ctx.method !== "DELETE") return next()
  await Fs.rm(upload.uploadDirectory, { recursive: true, force: true })
  ctx.status = 204
}

// Just before s3rver's router, the last middleware its constructor added.
server.middleware.splice(server.middleware.length - 1, 0, multipartAsS3Does)

server.run().then(
  (address) => process.stdout.write(`${JSON.stringify({ port: address.port })}\n`),
  (error) => {
    process.stderr.write(`${error.stack}\n`)
    process.exit(1)
  }
)

process.stdin.on("end", () => process.exit(0))
process.stdin.resume()
