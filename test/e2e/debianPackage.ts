/**
 * Files of a Debian package for tests, without root and without apt: the archive's signed
 * InRelease (checked with gpgv against the machine's Debian keyring), the Packages index whose
 * hash it signs, the .deb whose hash the index gives, unpacked with dpkg-deb into a cache under
 * node_modules. So a fresh Debian machine with only Node and npm gets what a test needs from
 * Debian's own archive, every byte checked against Debian's signature.
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { gunzipSync } from "node:zlib"
import { repoRoot } from "./helpers.js"

const MIRROR = "https://deb.debian.org/debian"
const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
const cacheRoot = Path.join(repoRoot, "node_modules", ".cache", "runsc-debian")

const download = async (url: string): Promise<Buffer> => {
  const response = await fetch(url)
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${response.statusText}`)
  return Buffer.from(await response.arrayBuffer())
}

const sha256 = (bytes: Buffer): string => createHash("sha256").update(bytes).digest("hex")

const checked = (what: string, bytes: Buffer, expected: string): Buffer => {
  const actual = sha256(bytes)
  if (actual !== expected) throw new Error(`${what}: SHA256 ${actual}, Debian's signed index says ${expected}`)
  return bytes
}

/** The text InRelease signs, once gpgv has checked its signature (unsigned parts dropped). */
const verifiedRelease = (inRelease: Buffer): string => {
  if (!Fs.existsSync(KEYRING)) throw new Error(`no Debian archive keyring at ${KEYRING} (package debian-archive-keyring)`)
  return execFileSync("gpgv", ["--keyring", KEYRING, "--output", "-", "-"], { input: inRelease, stdio: ["pipe", "pipe", "pipe"] })
    .toString("utf8")
}

/** One stanza of a Packages index (`Field: value` lines; continuation lines are dropped). */
const stanzaOf = (index: string, name: string): ReadonlyMap<string, string> | undefined => {
  for (const stanza of index.split("\n\n")) {
    if (!stanza.startsWith(`Package: ${name}\n`)) continue
    const fields = new Map<string, string>()
    for (const line of stanza.split("\n")) {
      const colon = line.indexOf(": ")
      if (colon > 0 && !line.startsWith(" ")) fields.set(line.slice(0, colon), line.slice(colon + 2))
    }
    return fields
  }
  return undefined
}

/**
 * The directory where package `name` (architecture `all`, from `suite`'s main) is unpacked,
 * fetched on first use; later calls find it in the cache.
 */
export const debianPackage = async (name: string, suite = "bookworm"): Promise<string> => {
  const done = Path.join(cacheRoot, `${suite}_${name}`)
  if (Fs.existsSync(Path.join(done, ".complete"))) return done
  const release = verifiedRelease(await download(`${MIRROR}/dists/${suite}/InRelease`))
  const indexPath = "main/binary-all/Packages.gz"
  // The SHA256 section lists `hash size path`.
  const signedHash = release.split("\nSHA256:\n")[1]?.split("\n").map((l) => l.trim().split(/\s+/)).find((f) => f[2] === indexPath)?.[0]
  if (signedHash === undefined) throw new Error(`${suite}'s InRelease lists no ${indexPath}`)
  const index = gunzipSync(checked(indexPath, await download(`${MIRROR}/dists/${suite}/${indexPath}`), signedHash)).toString("utf8")
  const entry = stanzaOf(index, name)
  const filename = entry?.get("Filename")
  const debHash = entry?.get("SHA256")
  if (filename === undefined || debHash === undefined) throw new Error(`${suite} main has no architecture-all package ${name}`)
  const deb = checked(filename, await download(`${MIRROR}/${filename}`), debHash)
  // Unpacked beside the cache entry and renamed into place: a run killed halfway leaves no half tree.
  Fs.mkdirSync(cacheRoot, { recursive: true })
  const staging = Fs.mkdtempSync(Path.join(cacheRoot, `${name}-`))
  const debFile = Path.join(staging, "package.deb")
  Fs.writeFileSync(debFile, deb)
  execFileSync("dpkg-deb", ["-x", debFile, Path.join(staging, "tree")])
  Fs.writeFileSync(Path.join(staging, "tree", ".complete"), `${entry!.get("Version")}\n`)
  Fs.rmSync(done, { recursive: true, force: true })
  Fs.renameSync(Path.join(staging, "tree"), done)
  Fs.rmSync(staging, { recursive: true, force: true })
  return done
}
