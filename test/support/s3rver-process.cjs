// Runs s3rver in its own process, started by S3TestServer.ts with --openssl-legacy-provider:
// s3rver 3.7 encrypts list continuation tokens with single DES, which OpenSSL 3 only has
// in its legacy provider. Prints {"port":N} once listening; exits when stdin closes.
"use strict"
const S3rver = require("s3rver")

const [directory, bucket] = process.argv.slice(2)
const server = new S3rver({
  address: "127.0.0.1",
  port: 0,
  silent: true,
  directory,
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }]
})

server.run().then(
  (address) => process.stdout.write(`${JSON.stringify({ port: address.port })}\n`),
  (error) => {
    process.stderr.write(`${error.stack}\n`)
    process.exit(1)
  }
)

process.stdin.on("end", () => process.exit(0))
process.stdin.resume()
