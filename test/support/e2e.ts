import type OpenAI from "openai"
import { afterAll, beforeAll, expect } from "vitest"
import { type Gateway, openaiFor, startGateway, waitForNoCliChildren } from "./gateway.js"
import { startUpstream, type Upstream } from "./upstream.js"

export interface Started {
  readonly upstream: Upstream
  readonly gateway: Gateway
  /** The official openai client, pointed at the gateway. */
  readonly client: OpenAI
}

/**
 * A test file's scripted upstream and real gateway: started before its tests and handed to `use`,
 * closed after them, and then no CLI child of the test process may be left.
 */
export const useGateway = (
  options: Omit<Parameters<typeof startGateway>[0], "upstreamUrl">,
  use: (started: Started) => void
) => {
  let upstream: Upstream | undefined
  let gateway: Gateway | undefined
  beforeAll(async () => {
    upstream = await startUpstream()
    gateway = await startGateway({ ...options, upstreamUrl: upstream.url })
    use({ upstream, gateway, client: openaiFor(gateway) })
  })
  afterAll(async () => {
    await gateway?.close()
    await upstream?.close()
    expect(await waitForNoCliChildren()).toEqual([])
  })
}
