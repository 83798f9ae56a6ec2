/**
 * The real gateway (as in startGateway) in a process of its own, for tests that kill it: prints
 * `{"url": …}` once it serves, then runs until it is killed. Argument: the scripted upstream's URL.
 */
import { startGateway } from "./gateway.js"

const upstreamUrl = process.argv[2]
if (upstreamUrl === undefined) throw new Error("usage: gateway-main.ts <upstream url>")
const gateway = await startGateway({ upstreamUrl, config: { pool: { prewarm: 1 } } })
process.stdout.write(JSON.stringify({ url: gateway.url }) + "\n")
setInterval(() => {}, 1 << 30)
