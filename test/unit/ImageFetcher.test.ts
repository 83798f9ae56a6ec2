import { describe, expect, it } from "vitest"
import { isPrivateAddress, sniff } from "../../src/services/ImageFetcher.js"

describe("isPrivateAddress", () => {
  it.each([
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "0.0.0.0",
    "100.64.0.1", "::1", "::", "fc00::1", "fd12::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    // The URL parser's hex form of IPv4-mapped addresses, and bracketed URL hosts.
    "::ffff:7f00:1", "0:0:0:0:0:ffff:7f00:1", "[::ffff:7f00:1]", "::ffff:a9fe:a9fe", "[::1]",
    // Benchmarking, reserved, multicast, broadcast.
    "198.18.0.1", "198.19.255.255", "192.0.2.1", "240.0.0.1", "224.0.0.1", "255.255.255.255",
    // IPv6 ranges that embed IPv4 addresses: NAT64, 6to4, Teredo.
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    // Not an address at all.
    "not-an-ip", ""
  ])("refuses %s", (address) => expect(isPrivateAddress(address)).toBe(true))

  it.each(["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"])(
    "allows %s",
    (address) => expect(isPrivateAddress(address)).toBe(false)
  )
})

describe("sniff", () => {
  it("tells image types by their magic bytes, not by a declared type", () => {
    expect(sniff(Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d]))).toBe("image/png")
    expect(sniff(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0]))).toBe("image/jpeg")
    expect(sniff(new TextEncoder().encode("GIF89a"))).toBe("image/gif")
    expect(sniff(new TextEncoder().encode("RIFF\0\0\0\0WEBPVP8 "))).toBe("image/webp")
    expect(sniff(new TextEncoder().encode("<html>"))).toBeUndefined()
  })
})
