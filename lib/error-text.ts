// Text that came off the wire (an error body's detail, a content-type, a content-encoding) is kept on an error as a
// property, never in its message: Fastify's error handler sends the message to end clients. Even as a property it
// reaches logs and terminals, so it is capped and loses what could forge a log line or drive a terminal.

/** Longest `detail` (and `snippet`) kept from an upstream body, in characters. */
export const kDetailLimit = 200
/** Longest header value (`contentType`, `encoding`) kept on an error, in characters. */
export const kHeaderLimit = 100

// ANSI escape sequences (CSI … final byte, its one-byte C1 form, and OSC … BEL/ST), dropped whole so no `[31m` is
// left behind.
const kAnsi = /\u001b(?:\[[0-?]*[ -/]*[@-~]|\][^\u0007\u001b]*(?:\u0007|\u001b\\)?)|\u009b[0-?]*[ -/]*[@-~]/g
// C0 and C1 controls, DEL, and the bidirectional overrides that make a log line read other than it is.
const kControls = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]+/g
const kSpaces = / {2,}/g

/**
 * `value` with ANSI escapes removed, every run of control characters (CR, LF, NUL, ESC, bidi overrides …) and of
 * spaces made one space, trimmed, and cut to at most `limit` characters (never half of a surrogate pair). `undefined` stays
 * `undefined`; an array (a repeated header) is joined with `, ` first.
 */
export function wireText (value: string | string[] | undefined, limit: number): string | undefined {
  if (value === undefined) return undefined
  const whole = Array.isArray(value) ? value.join(', ') : String(value)
  // Only the start can be kept, so only the start is cleaned (an error body may be 64 KiB): room for what is dropped.
  const start = whole.length > limit * 4 ? whole.slice(0, limit * 4) : whole
  const text = start.replace(kAnsi, '').replace(kControls, ' ').replace(kSpaces, ' ').trim()
  if (text.length <= limit) return text
  const end = isHighSurrogate(text.charCodeAt(limit - 1)) ? limit - 1 : limit
  return text.slice(0, end).trimEnd()
}

function isHighSurrogate (code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff
}
