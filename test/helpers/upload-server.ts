import { fork } from 'node:child_process'
import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import multipart from '@fastify/multipart'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'

/** What the upload app received in one request. */
export interface Received {
  contentType: string
  contentLength: string | null
  fields: Array<[string, string]>
  /** Files are hashed as they stream in, never buffered; `text` is kept for files of at most 4 KiB. */
  files: Array<{ field: string, filename: string, type: string, size: number, sha256: string, text?: string }>
}

/**
 * A Fastify app with @fastify/multipart. `/upload` (POST, PUT, PATCH) answers what it received; `/flaky` does the
 * same but answers 503 to the first upload it sees.
 */
export async function uploadApp (): Promise<{ app: FastifyInstance, received: Received[] }> {
  const app = Fastify()
  await app.register(multipart, { limits: { fileSize: 256 * 1024 * 1024 } })
  const received: Received[] = []
  const receive = async (request: FastifyRequest): Promise<Received> => {
    const out: Received = {
      contentType: String(request.headers['content-type']),
      contentLength: request.headers['content-length'] ?? null,
      fields: [],
      files: []
    }
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        const hash = createHash('sha256')
        let size = 0
        let small: Buffer[] | undefined = []
        for await (const chunk of part.file) {
          hash.update(chunk)
          size += chunk.length
          if (small !== undefined && size <= 4096) small.push(chunk)
          else small = undefined
        }
        out.files.push({
          field: part.fieldname,
          filename: part.filename,
          type: part.mimetype,
          size,
          sha256: hash.digest('hex'),
          ...(small !== undefined ? { text: Buffer.concat(small).toString('utf8') } : {})
        })
      } else {
        out.fields.push([part.fieldname, String(part.value)])
      }
    }
    received.push(out)
    return out
  }
  app.post('/upload', receive)
  app.put('/upload', receive)
  app.patch('/upload', receive)
  app.post('/flaky', async (request, reply) => {
    const out = await receive(request)
    if (received.length === 1) return reply.code(503).send({ message: 'try again' })
    return out
  })
  return { app, received }
}

/**
 * The upload app in a child process, so that memory measured in the test process is the client's alone.
 * Resolves with its base URL and a function that stops it.
 */
export async function startUploadChild (): Promise<{ url: string, stop: () => Promise<void> }> {
  const child = fork(__filename, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`upload server exited with ${code}`)))
    child.once('message', (msg) => resolve((msg as { port: number }).port))
  })
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill()
      await exited
    }
  }
}

if (require.main === module) {
  void uploadApp().then(async ({ app }) => {
    await app.listen({ port: 0, host: '127.0.0.1' })
    process.send?.({ port: (app.server.address() as AddressInfo).port })
    process.on('disconnect', () => process.exit(0))
  })
}
