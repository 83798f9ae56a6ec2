/**
 * A preload for the gateway of bench/turnphases.mjs: it records, in wall-clock milliseconds, when a CLI is handed a
 * user message (a write to a child's stdin), when a CLI's `result` line arrives, and every write to a TCP socket, and
 * writes them to TURNPHASES_OUT on SIGUSR2. Not a test; nothing of the gateway changes.
 */
import * as fs from "node:fs"
import * as net from "node:net"

const now = () => performance.timeOrigin + performance.now()
const log = []
const isPipe = (socket) => socket._handle?.constructor?.name === "Pipe"
const original = net.Socket.prototype._writeGeneric
net.Socket.prototype._writeGeneric = function(writev, data, ...rest) {
  if (!isPipe(this)) log.push(["tcp", now()])
  else if ((writev ? String(data[0]?.chunk ?? "") : String(data)).startsWith('{"type":"user"')) log.push(["stdin", now()])
  return original.call(this, writev, data, ...rest)
}
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function(event, data, ...rest) {
  if (event === "data" && isPipe(this) && String(data).includes('"type":"result"')) log.push(["result", now()])
  return emit.call(this, event, data, ...rest)
}
process.on("SIGUSR2", () => {
  fs.writeFileSync(process.env.TURNPHASES_OUT, JSON.stringify(log))
  log.length = 0
})
