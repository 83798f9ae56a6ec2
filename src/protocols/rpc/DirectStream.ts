import { Headers } from "@effect/platform"
import { Rpc, RpcClient, RpcSchema } from "@effect/rpc"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromServerEncoded, RequestEncoded } from "@effect/rpc/RpcMessage"
import { Channel, Chunk, Clock, Effect, Either, Exit, Option, Predicate, Schema, SchemaAST, Stream, type Tracer } from "effect"

/**
 * A streaming RPC read straight into its Stream, without RpcClient's per-call mailbox, forked
 * sender fiber and message routing, over either client transport (HTTP: one request per call;
 * WebSocket: the shared socket). Same wire messages, span, headers (`RpcClient.withHeaders` and the
 * call's own) and failures (typed errors, defects, RpcClientError) as RpcClient's. The Stream ends
 * at the call's Exit, not at the end of what carries it. Client code only (no server imports).
 */

/** The responses of one call. */
export interface Call {
  /** The responses received since the last pull (waits while there are none); undefined when no more will come. */
  readonly pull: Effect.Effect<ReadonlyArray<FromServerEncoded> | undefined, RpcClientError>
  /** The call's Exit was read: the transport may finish the rest on its own. */
  readonly settle: () => void
  /** Ended before its Exit (interrupted, failed): the server is told to end the call. */
  readonly abort: Effect.Effect<void>
}

export type StartCall = (request: RequestEncoded) => Call

/** Where a transport's responses wait for their call's pull: a batch per pull, resumed by `offer`. */
export const makeInbox = (options?: { readonly onDrained?: () => void }) => {
  let pending: Array<FromServerEncoded> = []
  let ended = false
  let failure: RpcClientError | undefined
  let wake: (() => void) | undefined
  const notify = () => {
    const resume = wake
    wake = undefined
    resume?.()
  }
  const poll = (): Effect.Effect<ReadonlyArray<FromServerEncoded> | undefined, RpcClientError> | undefined => {
    if (pending.length > 0) {
      const batch = pending
      pending = []
      options?.onDrained?.()
      return Effect.succeed(batch)
    }
    if (failure !== undefined) return Effect.fail(failure)
    if (ended) return Effect.succeed(undefined)
    return undefined
  }
  const pull: Call["pull"] = Effect.suspend(() =>
    poll() ?? Effect.async<ReadonlyArray<FromServerEncoded> | undefined, RpcClientError>((resume) => {
      // Polled when the fiber runs: the responses offered in the meantime come in the same batch.
      wake = () => resume(pull)
    })
  )
  return {
    pull,
    /** How many responses wait. */
    size: () => pending.length,
    offer: (response: FromServerEncoded) => {
      pending.push(response)
      notify()
    },
    /** No more responses: the pulls end once the waiting ones are read. */
    end: () => {
      ended = true
      notify()
    },
    fail: (error: RpcClientError) => {
      if (failure === undefined && !ended) failure = error
      notify()
    },
    /** Drops what waits (the call no longer reads). */
    clear: () => {
      pending = []
    },
    isEnded: () => ended
  }
}

let requestIds = 0
/** Request ids of the direct calls made where the transport has no other calls (HTTP: one call per request). */
export const nextRequestId = () => String(requestIds++)

const decodeDefect = Schema.decodeSync(Schema.Defect)

interface DirectOptions {
  readonly headers?: Headers.Input | undefined
}

/**
 * The Stream of a streaming RPC over `start`. `fast` decodes the commonest values by hand (undefined:
 * let the schema decide); it must give what the schema gives.
 */
export const directStream = (
  start: StartCall,
  found: Rpc.Any,
  options?: {
    readonly requestId?: () => string
    readonly fast?: (value: unknown) => unknown
  }
) => {
  const rpc = found as unknown as Rpc.AnyWithProps
  const schemas = Option.getOrThrow(RpcSchema.getStreamSchemas(rpc.successSchema.ast))
  // Synchronous (Either) parsers, not the run loop's: the gateway's schemas need no services and
  // have no effectful parts (R is only unknown in the generic Rpc types).
  const pure = <A>(schema: unknown) => schema as Schema.Schema<A, unknown>
  const decodeValue = Schema.decodeUnknownEither(pure<unknown>(schemas.success))
  const decodeExit = Schema.decodeUnknownEither(pure<Exit.Exit<unknown, unknown>>(Rpc.exitSchema(found)))
  const encodePayload = Schema.encodeEither(pure<unknown>(rpc.payloadSchema))
  // `make` applies constructor defaults and validates; encoding validates again. Without defaults
  // (the gateway's payloads have none) the encoding's check is enough.
  const makePayload = rpc.payloadSchema.make
  const make = makePayload !== undefined && hasConstructorDefaults(rpc.payloadSchema)
    ? (payload: unknown) => makePayload(payload)
    : (payload: unknown) => payload
  const requestId = options?.requestId ?? nextRequestId
  const fast = options?.fast
  const spanName = `RpcClient.${rpc._tag}`

  /** The values of a Chunk message, decoded (Left: the first that does not decode). */
  const decodeValues = (values: ReadonlyArray<unknown>, into: Array<unknown>) => {
    for (const value of values) {
      const quick = fast?.(value)
      if (quick !== undefined) {
        into.push(quick)
        continue
      }
      const decoded = decodeValue(value)
      if (Either.isLeft(decoded)) return decoded.left
      into.push(decoded.right)
    }
    return undefined
  }

  /** The call's state: its span and its call, once made (ended by the stream's one finalizer). */
  interface Opened {
    span?: Tracer.Span
    call?: Call
  }

  /**
   * Starts the call. Its span and call are kept in `opened` as soon as they exist, for the stream's
   * finalizer: no Scope and no scoped span (~40 run-loop steps and two FiberRefs diffs per call).
   */
  const open = (payload: unknown, options: DirectOptions | undefined, opened: Opened) =>
    Effect.flatMap(Effect.makeSpan(spanName, { captureStackTrace: false }), (span) => {
      opened.span = span
      return Effect.withFiberRuntime<Call>((fiber) => {
        const headers = Headers.merge(
          fiber.getFiberRef(RpcClient.currentHeaders),
          options?.headers ? Headers.fromInput(options.headers) : Headers.empty
        )
        const encoded = encodePayload(make(payload))
        if (Either.isLeft(encoded)) return Effect.die(encoded.left)
        opened.call = start({
          _tag: "Request",
          id: requestId(),
          tag: rpc._tag,
          payload: encoded.right,
          headers: Object.entries(headers),
          traceId: span.traceId,
          spanId: span.spanId,
          sampled: span.sampled
        })
        return Effect.succeed(opened.call)
      })
    })

  const close = (opened: Opened, exit: Exit.Exit<unknown, unknown>) => {
    const { span, call } = opened
    if (span === undefined) return Effect.void
    const end = Effect.flatMap(Clock.currentTimeNanos, (now) => Effect.sync(() => span.end(now, exit)))
    return call === undefined ? end : Effect.zipRight(call.abort, end)
  }

  const read = (call: Call) => {
    let exit: Exit.Exit<unknown, unknown> | undefined
    /** The next events (empty: none in this batch); fails with the call's failure. */
    const step: Effect.Effect<Chunk.Chunk<unknown>, unknown> = Effect.flatMap(call.pull, (batch) => {
      if (batch === undefined) return Effect.fail(new RpcClientError({ reason: "Protocol", message: "The gateway ended the call without its exit" }))
      const values: Array<unknown> = []
      let exitOf: unknown
      for (const message of batch) {
        if (message._tag === "Chunk") {
          const failed = decodeValues(message.values, values)
          if (failed !== undefined) return Effect.die(failed)
        } else if (message._tag === "Exit") {
          exitOf = message.exit
          break
        } else if (message._tag === "Defect") {
          exit = Exit.die(decodeDefect(message.defect))
          break
        } else if (message._tag === "ClientProtocolError") {
          return Effect.fail(message.error)
        }
      }
      // A stream's success has no value: the usual Exit needs no schema.
      if (exitOf !== undefined && Predicate.isRecord(exitOf) && exitOf._tag === "Success" && exitOf.value === undefined) {
        exit = Exit.void
      } else if (exitOf !== undefined) {
        const decodedExit = decodeExit(exitOf)
        if (Either.isLeft(decodedExit)) return Effect.die(decodedExit.left)
        exit = decodedExit.right
      }
      if (exit !== undefined) call.settle()
      return Effect.succeed(Chunk.unsafeFromArray(values))
    })
    // The call ends at its Exit: its events, then its success or failure.
    const next = (): Channel.Channel<Chunk.Chunk<unknown>, unknown, unknown, unknown, void, unknown> =>
      exit === undefined ? loop : Exit.isSuccess(exit) ? Channel.void : Channel.failCause(exit.cause)
    const loop: Channel.Channel<Chunk.Chunk<unknown>, unknown, unknown, unknown, void, unknown> = Channel.flatMap(
      Channel.fromEffect(step),
      (chunk) => Chunk.isEmpty(chunk) ? next() : Channel.zipRight(Channel.write(chunk), Channel.suspend(next))
    )
    return loop
  }

  return (payload: unknown, options?: DirectOptions): Stream.Stream<unknown, unknown> =>
    Stream.fromChannel(Channel.suspend(() => {
      const opened: Opened = {}
      return Channel.ensuringWith(Channel.flatMap(Channel.fromEffect(open(payload, options, opened)), read), (exit) => close(opened, exit))
    }))
}

/** Whether `schema.make` adds something to what it is given (a field's constructor default), or builds a class. */
const hasConstructorDefaults = (schema: Schema.Schema.Any): boolean => {
  if (!SchemaAST.isTypeLiteral(schema.ast)) return true
  const fields = (schema as { readonly fields?: Readonly<Record<PropertyKey, unknown>> }).fields
  if (fields === undefined) return true
  return Reflect.ownKeys(fields).some((key) => {
    const field = fields[key]
    if (!Schema.isPropertySignature(field)) return false
    const ast = field.ast
    return (ast._tag === "PropertySignatureDeclaration" ? ast.defaultValue : ast.to.defaultValue) !== undefined
  })
}
