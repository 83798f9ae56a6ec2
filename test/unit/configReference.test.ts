import { expect, it } from "vitest"
import { renderConfigReference } from "../../scripts/config-reference.js"

// docs/configuration.md is generated from the config schema; stale docs fail here (`-u` rewrites the file).
it("docs/configuration.md matches the config schema and its doc comments", async () => {
  await expect(renderConfigReference()).toMatchFileSnapshot("../../docs/configuration.md")
})
