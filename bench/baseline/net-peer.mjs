// The baseline of bench rows 20-20c: the same protocol as test/fixtures/c/net_echo.c's bench
// modes, in plain Node over 127.0.0.1 (one process per side), printing the same lines.
//   node net-peer.mjs sink PORT | source PORT MIB | accepter PORT N | connector PORT N | pong PORT | ping PORT N
import * as Net from "node:net"

const [mode, portArg, countArg] = process.argv.slice(2)
const port = Number(portArg)
const count = Number(countArg)
const chunk = Buffer.alloc(65536)

const listen = (onConnection) => {
  const server = Net.createServer({ noDelay: true }, onConnection)
  server.listen(port, "127.0.0.1", () => console.log(`listening ${port}`))
  return server
}

const connect = () => new Promise((resolve, reject) => {
  const socket = Net.connect({ port, host: "127.0.0.1", noDelay: true }, () => resolve(socket))
  socket.once("error", reject)
})

switch (mode) {
  case "sink": {
    const server = listen((socket) => {
      socket.on("data", () => {})
      socket.on("end", () => socket.end("ok", () => server.close()))
    })
    break
  }
  case "source": {
    const t0 = performance.now()
    const socket = await connect()
    let left = count * 1024 * 1024
    while (left > 0) {
      const n = Math.min(left, chunk.length)
      left -= n
      if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await new Promise((resolve) => socket.once("drain", resolve))
    }
    socket.end()
    socket.on("data", () => {})
    await new Promise((resolve) => socket.once("end", resolve))
    console.log(`sent ${count} MiB in ${(performance.now() - t0).toFixed(3)} ms`)
    break
  }
  case "accepter": {
    let accepted = 0
    const server = listen((socket) => {
      socket.destroy()
      if (++accepted === count) server.close()
    })
    break
  }
  case "connector": {
    const t0 = performance.now()
    for (let i = 0; i < count; i++) (await connect()).destroy()
    console.log(`connected ${count} in ${(performance.now() - t0).toFixed(3)} ms`)
    break
  }
  case "pong": {
    const server = listen((socket) => {
      socket.on("data", (data) => socket.write(data))
      socket.on("end", () => {
        socket.end()
        server.close()
      })
    })
    break
  }
  case "ping": {
    const socket = await connect()
    const one = Buffer.from("x")
    const t0 = performance.now()
    for (let i = 0; i < count; i++) {
      const answered = new Promise((resolve) => socket.once("data", resolve))
      socket.write(one)
      await answered
    }
    console.log(`pinged ${count} in ${(performance.now() - t0).toFixed(3)} ms`)
    socket.end()
    break
  }
}
