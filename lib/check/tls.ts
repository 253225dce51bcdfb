/**
 * The TLS handshake with a service's own `tls` options, judged by hand rather than by `rejectUnauthorized`: Node's
 * refusal says only that a check failed, and an operator needs which one (expired how long ago, which names the
 * certificate holds, which chain is missing) plus the days left on a certificate that still works.
 */
import { isIP, type Socket } from 'node:net'
import { checkServerIdentity, connect, type PeerCertificate, type TLSSocket } from 'node:tls'
import type { ResolvedTls } from '../config/resolved'
import { bounded, codeOf, stepOf } from './step'
import type { CheckStep } from './types'

/** A certificate with fewer days than this left is a warning. */
export const kExpiryWarningDays = 14
const kDay = 86_400_000

export interface TlsTarget {
  /** Where to connect (ignored when `socket` is given): an address and port. */
  address: string
  port: number
  /** An open socket to run the handshake over (a proxy tunnel). */
  socket?: Socket
  /** The name the certificate must hold: `tls.servername`, else the host of `baseUrl`. */
  name: string
  tls: ResolvedTls | undefined
  allowH2: boolean
  /** What the step's `target` says. */
  target: string
}

/** The outcome of the handshake: the `tls` step and, when `allowH2`, the `h2` one. */
export async function probeTls (to: TlsTarget, timeout: number): Promise<CheckStep[]> {
  const start = performance.now()
  const t = to.tls
  let socket: TLSSocket | undefined
  try {
    socket = await bounded(timeout, `TLS handshake with ${to.target}`, async () => await new Promise<TLSSocket>((resolve, reject) => {
      const s = socket = connect({
        ...(to.socket !== undefined ? { socket: to.socket } : { host: to.address, port: to.port }),
        // SNI takes names only (RFC 6066).
        servername: isIP(to.name) === 0 ? to.name : undefined,
        ca: t?.ca,
        cert: t?.cert,
        key: t?.key,
        passphrase: t?.passphrase,
        rejectUnauthorized: false,
        ALPNProtocols: to.allowH2 ? ['h2', 'http/1.1'] : ['http/1.1']
      })
      s.once('secureConnect', () => {
        s.removeListener('error', reject)
        resolve(s)
      })
      s.once('error', reject)
    }), () => { socket?.destroy(); to.socket?.destroy() })
  } catch (err) {
    to.socket?.destroy()
    const code = codeOf(err)
    const message = code === 'ETIMEDOUT' ? (err as Error).message : `handshake failed: ${code ?? (err as Error).message}`
    return [stepOf('tls', to.target, 'fail', message, start, { code })]
  }
  const cert = socket.getPeerCertificate()
  const protocol = socket.getProtocol() ?? 'TLS'
  const alpn = typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : undefined
  const authorizationError = socket.authorizationError as unknown as string | Error | null
  socket.destroy()
  const steps = [judge(to, cert, protocol, alpn, authorizationError === null ? undefined : String((authorizationError as { code?: string }).code ?? authorizationError), start)]
  if (to.allowH2) {
    steps.push(alpn === 'h2'
      ? stepOf('h2', to.target, 'ok', 'h2 negotiated (ALPN)', start)
      : stepOf('h2', to.target, 'warn', `allowH2 is set but the server chose ${alpn ?? 'no protocol'}: calls use HTTP/1.1`, start))
  }
  return steps
}

/** The `tls` step for a completed handshake. */
function judge (to: TlsTarget, cert: PeerCertificate, protocol: string, alpn: string | undefined, chainError: string | undefined, start: number): CheckStep {
  const extra: Partial<CheckStep> = { alpn }
  const notAfter = Date.parse(cert.valid_to)
  const notBefore = Date.parse(cert.valid_from)
  const now = Date.now()
  // Whole days, toward zero: expired 3 days and an hour ago is -3, as the message says.
  const daysLeft = Number.isFinite(notAfter) ? Math.trunc((notAfter - now) / kDay) + 0 : undefined
  if (daysLeft !== undefined) extra.daysLeft = daysLeft
  let problem: string | undefined
  let code: string | undefined
  if (Number.isFinite(notAfter) && notAfter < now) {
    const ago = Math.floor((now - notAfter) / kDay)
    problem = `certificate expired ${ago === 0 ? 'less than a day' : `${ago} day${ago === 1 ? '' : 's'}`} ago (${isoDay(notAfter)})`
    code = 'CERT_HAS_EXPIRED'
  } else if (Number.isFinite(notBefore) && notBefore > now) {
    problem = `certificate is not valid before ${new Date(notBefore).toISOString()}`
    code = 'CERT_NOT_YET_VALID'
  } else {
    const mismatch = checkServerIdentity(to.name, cert)
    if (mismatch !== undefined) {
      problem = `name mismatch: certificate is for ${namesOf(cert).join(', ') || 'no name'}, not ${to.name}`
      code = 'ERR_TLS_CERT_ALTNAME_INVALID'
    } else if (chainError !== undefined) {
      problem = `certificate not trusted: ${chainError}${to.tls?.ca === undefined ? ' (no tls.ca: the system CAs were used)' : ' (checked against tls.ca)'}`
      code = chainError
    }
  }
  if (problem !== undefined) {
    // The service turned verification off: calls work, so it is a warning, but one worth reading.
    if (to.tls?.rejectUnauthorized === false) return stepOf('tls', to.target, 'warn', `${problem}; accepted (tls.rejectUnauthorized: false)`, start, { ...extra, code })
    return stepOf('tls', to.target, 'fail', problem, start, { ...extra, code })
  }
  const what = `${protocol}, certificate for ${namesOf(cert).join(', ')}, expires`
  if (daysLeft !== undefined && daysLeft < kExpiryWarningDays) {
    return stepOf('tls', to.target, 'warn', `${what} in ${daysLeft} day${daysLeft === 1 ? '' : 's'} (${isoDay(notAfter)})`, start, { ...extra, code: 'CERT_EXPIRES_SOON' })
  }
  return stepOf('tls', to.target, 'ok', `${what} in ${daysLeft ?? '?'} days (${isoDay(notAfter)})`, start, extra)
}

/** The names a certificate is for: its subjectAltName entries, else its CN. */
function namesOf (cert: PeerCertificate): string[] {
  const alt = cert.subjectaltname
  if (typeof alt === 'string' && alt !== '') return alt.split(/,\s*/).map((n) => n.replace(/^(DNS|IP Address):/, ''))
  const cn = cert.subject?.CN
  return cn === undefined ? [] : [String(cn)]
}

function isoDay (ms: number): string {
  return new Date(ms).toISOString().slice(0, 10)
}
