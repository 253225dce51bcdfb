import { readFileSync } from 'node:fs'
import { arrayOf, boolean, invalid, isString, rule, variantsAs } from '../checkers'
import { pem, string } from '../values'
import { defineGroup, type Spec } from './group'

/** TLS settings for an https `baseUrl`. */
export interface TlsOptions {
  /**
   * Verify the server certificate. `false` logs a warning at start-up: use only for local development.
   * @default true
   */
  rejectUnauthorized?: boolean
  /** Trusted CA certificates: PEM text, or a path to a PEM file, or a list of either. */
  ca?: string | Buffer | Array<string | Buffer>
  /** Client certificate (PEM text or a file path) for mutual TLS. */
  cert?: string | Buffer
  /** Client private key (PEM text or a file path) for mutual TLS. */
  key?: string | Buffer
  /** Passphrase of `key`. */
  passphrase?: string
  /** Server name for SNI and certificate checking, when it differs from the host of `baseUrl`. */
  servername?: string
}

export const tlsOptions = defineGroup({
  rejectUnauthorized: { check: boolean, default: true },
  ca: {
    check: variantsAs('PEM text, a file path, a Buffer or a non-empty list of them',
      [(v) => isString(v) || Buffer.isBuffer(v), pem],
      [Array.isArray, arrayOf(pem, 'a non-empty list of PEM texts, file paths or Buffers', 1)]),
    default: undefined
  },
  cert: { check: pem, default: undefined },
  key: { check: pem, default: undefined },
  passphrase: { check: rule('a string', isString), default: undefined },
  servername: { check: string, default: undefined }
} satisfies Spec<TlsOptions>)

/** TLS settings after resolution: file paths read, `ca` always a list. */
export interface ResolvedTls {
  rejectUnauthorized: boolean
  /** File paths already read. */
  ca?: Array<string | Buffer>
  cert?: string | Buffer
  key?: string | Buffer
  passphrase?: string
  servername?: string
}

/** `tls` options at `key`, with PEM files read (each once per resolution, through `files`). */
export function resolveTls (tls: TlsOptions, key: string, files: Map<string, Buffer>): ResolvedTls {
  const out: ResolvedTls = { rejectUnauthorized: tls.rejectUnauthorized ?? tlsOptions.defaults.rejectUnauthorized }
  if (tls.ca !== undefined) {
    out.ca = Array.isArray(tls.ca)
      ? tls.ca.map((ca, i) => readPem(ca, `${key}.ca[${i}]`, files))
      : [readPem(tls.ca, `${key}.ca`, files)]
  }
  if (tls.cert !== undefined) out.cert = readPem(tls.cert, `${key}.cert`, files)
  if (tls.key !== undefined) out.key = readPem(tls.key, `${key}.key`, files)
  if (tls.passphrase !== undefined) out.passphrase = tls.passphrase
  if (tls.servername !== undefined) out.servername = tls.servername
  return out
}

/** PEM text and Buffers pass through; any other string is a file path, read once per resolution. */
function readPem (value: string | Buffer, key: string, files: Map<string, Buffer>): string | Buffer {
  if (typeof value !== 'string' || value.includes('-----BEGIN')) return value
  let content = files.get(value)
  if (content === undefined) {
    try {
      content = readFileSync(value)
    } catch (err) {
      throw invalid(key, `cannot read the file ${JSON.stringify(value)}: ${(err as Error).message}`)
    }
    files.set(value, content)
  }
  return content
}
