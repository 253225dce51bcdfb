import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** PEM strings of a small test PKI, generated with the `openssl` CLI. */
export interface TestCerts {
  /** The CA that signed `serverCert` and `clientCert`. */
  ca: string
  /** Server certificate for `localhost` and `127.0.0.1` (subjectAltName), signed by `ca`. */
  serverCert: string
  serverKey: string
  /** Client certificate (clientAuth) signed by `ca`, for mutual TLS. */
  clientCert: string
  clientKey: string
  /** A second CA that signed nothing here: trusting it alone must fail verification. */
  otherCa: string
}

let cached: TestCerts | undefined

/**
 * Generates the certificates once per process into a temporary directory (removed before returning) and returns
 * their PEM text. EC P-256 keys keep generation fast.
 */
export function testCerts (): TestCerts {
  if (cached !== undefined) return cached
  const dir = mkdtempSync(join(tmpdir(), 'http-services-certs-'))
  try {
    const f = (name: string): string => join(dir, name)
    const openssl = (...args: string[]): void => {
      execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
    }
    const key = (name: string): void => {
      openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(name))
    }
    const selfSignedCa = (name: string, cn: string): void => {
      key(`${name}.key`)
      openssl('req', '-x509', '-new', '-key', f(`${name}.key`), '-sha256', '-days', '2', '-subj', `/CN=${cn}`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
        '-out', f(`${name}.pem`))
    }
    const leaf = (name: string, cn: string, ext: string): void => {
      key(`${name}.key`)
      openssl('req', '-new', '-key', f(`${name}.key`), '-subj', `/CN=${cn}`, '-out', f(`${name}.csr`))
      writeFileSync(f(`${name}.ext`), ext)
      openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
        '-days', '2', '-sha256', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`))
    }
    selfSignedCa('ca', 'http-services test CA')
    selfSignedCa('other-ca', 'unrelated test CA')
    leaf('server', 'localhost', [
      'basicConstraints=CA:FALSE',
      'keyUsage=digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ''
    ].join('\n'))
    leaf('client', 'http-services test client', [
      'basicConstraints=CA:FALSE',
      'keyUsage=digitalSignature,keyEncipherment',
      'extendedKeyUsage=clientAuth',
      ''
    ].join('\n'))
    const read = (name: string): string => readFileSync(f(name), 'utf8')
    cached = {
      ca: read('ca.pem'),
      serverCert: read('server.pem'),
      serverKey: read('server.key'),
      clientCert: read('client.pem'),
      clientKey: read('client.key'),
      otherCa: read('other-ca.pem')
    }
    return cached
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
