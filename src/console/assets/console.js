// @ts-check
// The gateway's browser console: create or attach to a session (/v1/sessions), then drive it over
// its WebSocket (messages in docs/api/sessions.md). No framework and no build step. Everything the
// model, the CLI or the server says is put on the page with textContent, never parsed as HTML.

const KEY_STORAGE = "claude-code-api.console.key"
const PING_MS = 30_000

/** @param {string} id */
const byId = (id) => {
  const found = document.getElementById(id)
  if (found === null) throw new Error(`#${id} is missing`)
  return found
}
/** @param {string} id */
const input = (id) => /** @type {HTMLInputElement} */ (byId(id))
/** @param {string} id */
const button = (id) => /** @type {HTMLButtonElement} */ (byId(id))

/**
 * A DOM element with attributes and children (strings become text nodes).
 * @param {string} tag
 * @param {Record<string, string>} [attributes]
 * @param {Array<Node | string>} [children]
 */
const el = (tag, attributes = {}, children = []) => {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value)
  for (const child of children) node.append(typeof child === "string" ? document.createTextNode(child) : child)
  return node
}

/** @param {unknown} value */
const pretty = (value) => {
  if (typeof value === "string") return value
  try {
    return JSON.stringify(value, null, 2) ?? String(value)
  } catch {
    return String(value)
  }
}

const money = (/** @type {number} */ usd) => `$${usd.toFixed(4)}`

// ---------------------------------------------------------------------------------------------
// API key and HTTP

const apiKey = () => sessionStorage.getItem(KEY_STORAGE) ?? ""

class ApiError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

/**
 * A JSON call to the gateway with the key; an error body's message becomes an ApiError.
 * @param {string} method @param {string} path @param {unknown} [body]
 * @returns {Promise<any>}
 */
const api = async (method, path, body) => {
  /** @type {Record<string, string>} */
  const headers = {}
  const key = apiKey()
  if (key !== "") headers.authorization = `Bearer ${key}`
  if (body !== undefined) headers["content-type"] = "application/json"
  const response = await fetch(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
  const text = await response.text()
  /** @type {any} */
  let json = null
  try {
    json = text === "" ? null : JSON.parse(text)
  } catch {
    json = null
  }
  if (!response.ok) {
    const message = json?.error?.message ?? (text || response.statusText)
    throw new ApiError(response.status, `${response.status}: ${message}`)
  }
  return json
}

// ---------------------------------------------------------------------------------------------
// The transcript

const log = byId("log")

/** @param {Node} node */
const append = (node) => {
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40
  log.append(node)
  if (atBottom) log.scrollTop = log.scrollHeight
}

/** @param {string} text @param {string} [kind] */
const notice = (text, kind = "info") => append(el("div", { class: `notice ${kind}` }, [text]))

/** The turn being streamed: where its text and thinking go. */
const turn = {
  /** @type {HTMLElement | null} */ box: null,
  /** @type {HTMLElement | null} */ text: null,
  /** @type {HTMLElement | null} */ thinking: null
}

const turnBox = () => {
  if (turn.box === null) {
    turn.box = el("div", { class: "assistant" })
    append(turn.box)
  }
  return turn.box
}

const endTurnBlocks = () => {
  turn.text = null
  turn.thinking = null
}

/** @type {Map<string, HTMLElement>} */
const toolCards = new Map()
/** @type {Map<string, {card: HTMLElement, timer: number}>} */
const permissionCards = new Map()
/** Local messages sent and not yet started, by client_id. */
/** @type {Map<string, HTMLElement>} */
const pendingMessages = new Map()

/** @param {ReadonlyArray<any> | string} content */
const renderUserContent = (content) => {
  const box = el("div", { class: "user-content" })
  const blocks = typeof content === "string" ? [{ type: "text", text: content }] : content
  for (const block of blocks) {
    if (block?.type === "text") box.append(el("p", {}, [String(block.text)]))
    else if (block?.type === "image" && block.source?.type === "base64") {
      const image = /** @type {HTMLImageElement} */ (el("img", { alt: "attached image", class: "thumb" }))
      // Only a data: URL of an image type the server accepted; the CSP allows nothing else.
      if (/^image\/(png|jpeg|gif|webp)$/.test(String(block.source.media_type))) {
        image.src = `data:${block.source.media_type};base64,${block.source.data}`
      }
      box.append(image)
    }
  }
  return box
}

// ---------------------------------------------------------------------------------------------
// Session state on the page

const current = {
  /** @type {string | null} */ id: null,
  /** @type {WebSocket | null} */ socket: null,
  lastSeq: 0,
  /** Set when the user detached or the session ended: no reconnect. */
  closing: false,
  /** @type {string} */ state: "-",
  retries: 0,
  /** @type {number | undefined} */ ping: undefined,
  /** @type {number | undefined} */ reconnect: undefined
}

/** @param {any} session */
const showSession = (session) => {
  byId("session-id").textContent = session.id
  byId("session-model").textContent = session.model
  byId("session-mode").textContent = session.permission_mode
  showCost(session.cost_usd, session.usage)
  showState(session.state)
}

/** @param {number} cost @param {any} usage */
const showCost = (cost, usage) => {
  byId("session-cost").textContent = money(Number(cost) || 0)
  showTokens(usage)
}

/** @param {any} usage */
const showTokens = (usage) => {
  if (!usage) return
  const into = (Number(usage.input_tokens) || 0) + (Number(usage.cache_read_input_tokens) || 0) +
    (Number(usage.cache_creation_input_tokens) || 0)
  byId("session-tokens").textContent = `${into} in / ${Number(usage.output_tokens) || 0} out`
}

/** @param {string} state */
const showState = (state) => {
  current.state = state
  const badge = byId("session-state")
  badge.textContent = state
  badge.className = `state-${state}`
  const connected = current.socket !== null && current.socket.readyState === WebSocket.OPEN
  const live = connected && state !== "ended"
  for (const id of ["message", "images", "send", "apply-model", "apply-mode"]) {
    /** @type {HTMLInputElement} */ (byId(id)).disabled = !live
  }
  button("interrupt").disabled = !(live && (state === "running" || state === "waiting_for_permission"))
  button("end-session").disabled = current.id === null || state === "ended"
  button("detach").disabled = current.id === null
}

/** @param {string} text */
const showConnection = (text) => {
  byId("connection").textContent = text
  showState(current.state)
}

// ---------------------------------------------------------------------------------------------
// Server events

/** @param {any} event */
const handle = (event) => {
  if (typeof event !== "object" || event === null || typeof event.type !== "string") return
  if (typeof event.seq === "number") {
    // A replayed event we already showed (reconnect with `after`).
    if (event.seq <= current.lastSeq) return
    current.lastSeq = event.seq
  }
  switch (event.type) {
    case "hello":
      showSession(event.session)
      // An ended session: nothing to reconnect to when the server closes the socket.
      if (event.session?.state === "ended") current.closing = true
      if (event.truncated) notice("Some earlier events are no longer buffered on the server.", "warning")
      return
    case "pong":
      return
    case "state":
      showState(event.state)
      if (event.state === "ended") {
        notice(`Session ended${event.reason ? ` (${event.reason})` : ""}.`)
        current.closing = true
      }
      return
    case "turn_started": {
      const pending = event.client_id ? pendingMessages.get(event.client_id) : undefined
      if (pending !== undefined) {
        pending.classList.remove("pending")
        pendingMessages.delete(event.client_id)
      } else {
        append(el("div", { class: "user" }, [renderUserContent(event.content)]))
      }
      turn.box = null
      endTurnBlocks()
      return
    }
    case "text_delta": {
      if (turn.text === null) {
        turn.text = el("div", { class: "text" })
        turnBox().append(turn.text)
      }
      turn.text.textContent += event.text
      turn.thinking = null
      log.scrollTop = log.scrollHeight
      return
    }
    case "thinking_delta": {
      if (turn.thinking === null) {
        const body = el("div", { class: "thinking-text" })
        turnBox().append(el("details", { class: "thinking" }, [el("summary", {}, ["Thinking"]), body]))
        turn.thinking = body
      }
      turn.thinking.textContent += event.text
      turn.text = null
      return
    }
    case "tool_use": {
      endTurnBlocks()
      const card = el("div", { class: "tool", "data-tool-use-id": String(event.id) }, [
        el("div", { class: "tool-head" }, [el("strong", {}, [String(event.name)]), " ", el("code", {}, [String(event.id)])]),
        el("pre", { class: "tool-input" }, [pretty(event.input)])
      ])
      toolCards.set(event.id, card)
      turnBox().append(card)
      return
    }
    case "tool_result": {
      const result = el("div", { class: `tool-result${event.is_error ? " error" : ""}` }, [
        el("div", { class: "label" }, [event.is_error ? "Error" : "Result"]),
        el("pre", {}, [String(event.content)])
      ])
      const card = toolCards.get(event.tool_use_id)
      if (card !== undefined) card.append(result)
      else turnBox().append(result)
      return
    }
    case "permission_request":
      permissionPrompt(event)
      return
    case "permission_resolved": {
      const prompt = permissionCards.get(event.request_id)
      if (prompt === undefined) return
      clearInterval(prompt.timer)
      prompt.card.classList.add("resolved", event.decision === "allow" ? "allowed" : "denied")
      for (const control of prompt.card.querySelectorAll("button, input, textarea")) {
        /** @type {HTMLInputElement} */ (control).disabled = true
      }
      const countdown = prompt.card.querySelector(".countdown")
      if (countdown !== null) countdown.textContent = ""
      const verdict = event.decision === "allow" ? "Allowed" : "Denied"
      const status = prompt.card.querySelector(".permission-status")
      if (status !== null) {
        status.textContent = `${verdict} (${event.by})${event.message ? `: ${event.message}` : ""}`
      }
      permissionCards.delete(event.request_id)
      return
    }
    case "result": {
      endTurnBlocks()
      const parts = [
        event.interrupted ? "interrupted" : event.subtype,
        `turn ${money(Number(event.cost_usd) || 0)}`,
        `${Number(event.usage?.output_tokens) || 0} tokens out`
      ]
      if (typeof event.duration_ms === "number") parts.push(`${(event.duration_ms / 1000).toFixed(1)} s`)
      turnBox().append(el("div", { class: `turn-end${event.is_error ? " error" : ""}` }, [parts.join(" · ")]))
      turn.box = null
      byId("session-cost").textContent = money(Number(event.total_cost_usd) || 0)
      refreshTotals()
      return
    }
    case "model_changed":
      byId("session-model").textContent = event.model
      notice(`Model: ${event.model}`)
      return
    case "permission_mode_changed":
      byId("session-mode").textContent = event.mode
      notice(`Permission mode: ${event.mode}`)
      return
    case "error":
      notice(`Error (${event.code}): ${event.message}`, "error")
      return
    default:
      return
  }
}

/**
 * The session's token totals (a result has the turn's usage; adding them up here would count twice
 * what a replay repeats). The cost comes from the result's total_cost_usd.
 */
const refreshTotals = () => {
  const id = current.id
  if (id === null) return
  api("GET", `/v1/sessions/${encodeURIComponent(id)}`)
    .then((session) => {
      if (current.id === id) showTokens(session.usage)
    })
    .catch(() => {})
}

/** @param {any} event */
const permissionPrompt = (event) => {
  endTurnBlocks()
  const edited = /** @type {HTMLTextAreaElement} */ (el("textarea", { class: "permission-input", rows: "4", "aria-label": "Tool input" }))
  edited.value = pretty(event.input)
  const reason = /** @type {HTMLInputElement} */ (el("input", { class: "deny-message", placeholder: "Reason (told to the model)", "aria-label": "Deny message" }))
  const allow = el("button", { type: "button", class: "allow" }, ["Allow"])
  const deny = el("button", { type: "button", class: "deny" }, ["Deny"])
  const countdown = el("span", { class: "countdown" })
  const status = el("div", { class: "permission-status", role: "status" })
  const card = el("div", { class: "permission", "data-request-id": String(event.request_id) }, [
    el("div", { class: "permission-head" }, [
      "Permission: ",
      el("strong", {}, [String(event.tool_name)]),
      " ",
      countdown
    ]),
    ...(event.description ? [el("div", { class: "permission-description" }, [String(event.description)])] : []),
    ...(event.decision_reason ? [el("div", { class: "permission-reason" }, [String(event.decision_reason)])] : []),
    edited,
    el("div", { class: "permission-actions" }, [allow, reason, deny]),
    status
  ])
  // Under the tool call it is about (its result follows it there), else in the turn.
  const tool = event.tool_use_id ? toolCards.get(event.tool_use_id) : undefined
  const tick = () => {
    const left = Math.max(0, Math.round((Number(event.expires_at) - Date.now()) / 1000))
    countdown.textContent = `(denied automatically in ${left} s)`
  }
  tick()
  permissionCards.set(event.request_id, { card, timer: window.setInterval(tick, 1000) })
  allow.addEventListener("click", () => {
    /** @type {Record<string, unknown>} */
    const decision = { type: "permission_decision", request_id: event.request_id, decision: "allow" }
    const text = edited.value.trim()
    if (text !== pretty(event.input).trim()) {
      try {
        const parsed = JSON.parse(text)
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object")
        decision.updated_input = parsed
      } catch {
        status.textContent = "The edited input is not a JSON object."
        return
      }
    }
    if (send(decision)) status.textContent = "Allowing…"
  })
  deny.addEventListener("click", () => {
    /** @type {Record<string, unknown>} */
    const decision = { type: "permission_decision", request_id: event.request_id, decision: "deny" }
    if (reason.value.trim() !== "") decision.message = reason.value.trim()
    if (send(decision)) status.textContent = "Denying…"
  })
  if (tool !== undefined) tool.append(card)
  else turnBox().append(card)
  card.scrollIntoView({ block: "nearest" })
}

// ---------------------------------------------------------------------------------------------
// The WebSocket

/** @param {unknown} message */
const send = (message) => {
  const socket = current.socket
  if (socket === null || socket.readyState !== WebSocket.OPEN) {
    notice("Not connected.", "error")
    return false
  }
  socket.send(JSON.stringify(message))
  return true
}

const stopTimers = () => {
  clearInterval(current.ping)
  clearTimeout(current.reconnect)
  current.ping = undefined
  current.reconnect = undefined
}

/** Open the session's WebSocket with a fresh ticket, asking for what came after the last event seen. */
const connect = async () => {
  const id = current.id
  if (id === null) return
  showConnection("connecting")
  /** @type {any} */
  let ticket
  try {
    ticket = await api("POST", `/v1/sessions/${encodeURIComponent(id)}/ticket`)
  } catch (error) {
    if (current.id !== id) return
    showConnection("closed")
    notice(`Ticket refused: ${error instanceof Error ? error.message : String(error)}`, "error")
    // A session that is gone (404) or a key refused (401) does not come back by retrying.
    if (!(error instanceof ApiError && error.status >= 400 && error.status < 500)) scheduleReconnect()
    return
  }
  if (current.id !== id) return
  const url = new URL(String(ticket.websocket_url), location.href)
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:"
  // after=0 on the first connection replays what the server still buffers (attaching to a running session).
  url.searchParams.set("after", String(current.lastSeq))
  const socket = new WebSocket(url)
  current.socket = socket
  socket.addEventListener("open", () => {
    if (current.socket !== socket) return
    if (current.retries > 0) notice("Reconnected.")
    current.retries = 0
    showConnection("open")
    current.ping = window.setInterval(() => send({ type: "ping" }), PING_MS)
  })
  socket.addEventListener("message", (message) => {
    if (current.socket !== socket) return
    let event
    try {
      event = JSON.parse(String(message.data))
    } catch {
      return
    }
    handle(event)
  })
  socket.addEventListener("close", (closed) => {
    if (current.socket !== socket) return
    current.socket = null
    stopTimers()
    showConnection("closed")
    if (current.closing) return
    notice(`Connection closed${closed.reason ? `: ${closed.reason}` : ""}; reconnecting…`, "warning")
    scheduleReconnect()
  })
}

const scheduleReconnect = () => {
  if (current.closing || current.id === null) return
  const delay = Math.min(10_000, 500 * 2 ** current.retries++)
  current.reconnect = window.setTimeout(() => void connect(), delay)
}

/** Leave the current session (its CLI keeps running on the server). */
const detach = () => {
  current.closing = true
  stopTimers()
  const socket = current.socket
  current.socket = null
  socket?.close(1000, "detached")
  current.id = null
  showConnection("closed")
}

/** @param {string} id */
const attach = async (id) => {
  detach()
  log.replaceChildren()
  toolCards.clear()
  for (const { timer } of permissionCards.values()) clearInterval(timer)
  permissionCards.clear()
  pendingMessages.clear()
  turn.box = null
  endTurnBlocks()
  try {
    const session = await api("GET", `/v1/sessions/${encodeURIComponent(id)}`)
    current.id = session.id
    current.lastSeq = 0
    current.closing = false
    current.retries = 0
    showSession(session)
    history.replaceState(null, "", `#${encodeURIComponent(session.id)}`)
    await connect()
  } catch (error) {
    notice(`Cannot attach: ${error instanceof Error ? error.message : String(error)}`, "error")
  }
}

// ---------------------------------------------------------------------------------------------
// Forms and buttons

const showKeyStatus = () => {
  byId("key-status").textContent = apiKey() === "" ? "no key set" : "key set for this tab"
}

byId("key-form").addEventListener("submit", (event) => {
  event.preventDefault()
  sessionStorage.setItem(KEY_STORAGE, input("api-key").value.trim())
  input("api-key").value = ""
  showKeyStatus()
})

button("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE)
  showKeyStatus()
})

byId("create-form").addEventListener("submit", async (event) => {
  event.preventDefault()
  /** @type {Record<string, unknown>} */
  const body = {}
  const text = (/** @type {string} */ id) => input(id).value.trim()
  if (text("create-model") !== "") body.model = text("create-model")
  if (text("create-mode") !== "") body.permission_mode = text("create-mode")
  if (text("create-cwd") !== "") body.working_directory = text("create-cwd")
  if (text("create-system") !== "") body.system_prompt = text("create-system")
  // Comma-separated: a rule such as `Bash(npm run test:*)` has spaces of its own.
  const tools = (/** @type {string} */ id) => text(id).split(",").map((name) => name.trim()).filter((name) => name !== "")
  if (tools("create-allowed").length > 0) body.allowed_tools = tools("create-allowed")
  if (tools("create-disallowed").length > 0) body.disallowed_tools = tools("create-disallowed")
  if (text("create-budget") !== "") body.max_budget_usd = Number(text("create-budget"))
  const submit = button("create-session")
  submit.disabled = true
  try {
    const session = await api("POST", "/v1/sessions", body)
    await attach(session.id)
  } catch (error) {
    notice(`Cannot create a session: ${error instanceof Error ? error.message : String(error)}`, "error")
  } finally {
    submit.disabled = false
  }
})

byId("attach-form").addEventListener("submit", (event) => {
  event.preventDefault()
  const id = input("attach-id").value.trim()
  if (id !== "") void attach(id)
})

button("list-sessions").addEventListener("click", async () => {
  const list = byId("session-list")
  try {
    const sessions = await api("GET", "/v1/sessions")
    list.replaceChildren(...sessions.data.map((/** @type {any} */ session) => {
      const open = el("button", { type: "button" }, ["Attach"])
      open.addEventListener("click", () => void attach(session.id))
      return el("li", {}, [
        el("code", {}, [String(session.id)]),
        ` ${session.state} · ${session.model} · ${money(Number(session.cost_usd) || 0)} `,
        open
      ])
    }))
    if (sessions.data.length === 0) list.replaceChildren(el("li", {}, ["none"]))
  } catch (error) {
    list.replaceChildren(el("li", { class: "error" }, [error instanceof Error ? error.message : String(error)]))
  }
})

button("detach").addEventListener("click", () => {
  detach()
  showState("-")
  byId("session-id").textContent = "none"
  notice("Detached (the session keeps running on the gateway).")
})

button("end-session").addEventListener("click", async () => {
  const id = current.id
  if (id === null || !confirm("End this session? Its CLI is stopped.")) return
  try {
    await api("DELETE", `/v1/sessions/${encodeURIComponent(id)}`)
  } catch (error) {
    notice(`Cannot end the session: ${error instanceof Error ? error.message : String(error)}`, "error")
  }
})

button("interrupt").addEventListener("click", () => {
  send({ type: "interrupt" })
})

byId("model-form").addEventListener("submit", (event) => {
  event.preventDefault()
  const model = input("set-model").value.trim()
  if (model !== "") send({ type: "set_model", model })
})

byId("mode-form").addEventListener("submit", (event) => {
  event.preventDefault()
  send({ type: "set_permission_mode", mode: input("set-mode").value })
})

/** @param {File} file @returns {Promise<{type: "image", source: {type: "base64", media_type: string, data: string}}>} */
const imageBlock = (file) =>
  new Promise((resolve, reject) => {
    const reader = new FileReader()
    reader.onerror = () => reject(reader.error)
    reader.onload = () => {
      const url = String(reader.result)
      resolve({ type: "image", source: { type: "base64", media_type: file.type, data: url.slice(url.indexOf(",") + 1) } })
    }
    reader.readAsDataURL(file)
  })

let sent = 0

byId("composer").addEventListener("submit", async (event) => {
  event.preventDefault()
  const box = input("message")
  const files = input("images")
  const text = box.value
  const images = await Promise.all([...(files.files ?? [])].map(imageBlock))
  if (text.trim() === "" && images.length === 0) return
  const content = images.length === 0 ? text : [...(text.trim() === "" ? [] : [{ type: "text", text }]), ...images]
  const clientId = `console-${Date.now().toString(36)}-${sent++}`
  if (!send({ type: "user_message", client_id: clientId, content })) return
  const shown = el("div", { class: "user pending" }, [renderUserContent(content)])
  pendingMessages.set(clientId, shown)
  append(shown)
  box.value = ""
  files.value = ""
})

input("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault()
    const form = /** @type {HTMLFormElement} */ (byId("composer"))
    form.requestSubmit()
  }
})

showKeyStatus()
showState("-")
// A link to /console#sess_… attaches to that session (once a key is set).
if (location.hash.length > 1) {
  const id = decodeURIComponent(location.hash.slice(1))
  input("attach-id").value = id
  if (apiKey() !== "") void attach(id)
}
