#!/usr/bin/env node
// dynalite (pinned in infra/package.json) with DynamoDB's TransactWriteItems added.
//
// The bridge writes a status change and its tenant's counters together in one TransactWriteItems
// (and a dispatch outcome together with its instance link); dynalite 4.0 has no transactions. This
// launcher takes the same options as dynalite's cli.js and answers TransactWriteItems the way
// DynamoDB does:
//
// - all or nothing: every write request (PutItem, UpdateItem, DeleteItem, BatchWriteItem and the
//   transactions) passes one write lock; a transaction applies its actions one by one with their
//   conditions and, if one fails, restores every item it already changed before it answers, so no
//   other writer ever sees or builds on half of it (plain reads may, for the instant it runs);
// - refused as DynamoDB refuses: more than 100 actions, two actions on one item, an action that is
//   not exactly one of Put, Update, Delete, ConditionCheck (ValidationException);
// - a failed condition cancels the whole transaction with TransactionCanceledException and one
//   CancellationReason per action (`ConditionalCheckFailed` where it failed, `None` elsewhere).
//
// With `--streams DIR` it also keeps DynamoDB Streams' side of the tables created with a
// StreamSpecification: every write that changes an item appends that change's stream record
// (INSERT, MODIFY or REMOVE, with the new image) to DIR/<table>.jsonl before the write is
// answered, so a record exists exactly when the write happened and survives a crash, as in AWS.
// A write that changes nothing gets no record (as in DynamoDB). `bridge streams` plays Lambda's
// event source mapping over these files.

'use strict'

const fs = require('fs')
const http = require('http')
const path = require('path')

// infra/node_modules/dynalite (npm ci --prefix infra), or DYNALITE_DIR.
const dynaliteDir = process.env.DYNALITE_DIR || path.join(__dirname, '..', 'node_modules', 'dynalite')
const minimist = require(require.resolve('minimist', { paths: [dynaliteDir] }))
const argv = minimist(process.argv.slice(2), { alias: { debug: ['d'], verbose: ['v'] } })
const dynalite = require(dynaliteDir)

const TARGET_PREFIX = 'DynamoDB_20120810.'
const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem'])
const INTERNAL = 'x-bridge-dynalite-internal'
const MAX_ACTIONS = 100

/// One writer at a time: plain writes and whole transactions.
class WriteLock {
  constructor () { this.tail = Promise.resolve() }
  run (job) {
    const result = this.tail.then(job, job)
    this.tail = result.then(() => {}, () => {})
    return result
  }
}

const lock = new WriteLock()
const streamsDir = argv.streams ? path.resolve(String(argv.streams)) : null
if (streamsDir) fs.mkdirSync(streamsDir, { recursive: true })
let port
/// Key attribute names by table, from DescribeTable (forgotten when any table is created or deleted).
const keySchemas = new Map()

/// One DynamoDB call to this dynalite itself, past the write lock (the caller holds it).
function call (operation, body) {
  const data = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/',
      headers: {
        'Content-Type': 'application/x-amz-json-1.0',
        'Content-Length': Buffer.byteLength(data),
        'X-Amz-Target': TARGET_PREFIX + operation,
        'X-Amz-Date': '20200101T000000Z',
        Authorization: 'AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, ' +
          'SignedHeaders=host, Signature=0',
        [INTERNAL]: '1',
      },
    }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let parsed = {}
        try { parsed = text ? JSON.parse(text) : {} }
        catch { parsed = { __type: 'InternalFailure', message: text } }
        resolve({ status: res.statusCode, body: parsed })
      })
    })
    req.on('error', reject)
    req.end(data)
  })
}

function errorType (body) {
  return String(body.__type || '').split('#').pop()
}

function keySchemaOf (tables, name) {
  if (tables.has(name)) return Promise.resolve(tables.get(name))
  return call('DescribeTable', { TableName: name }).then((r) => {
    if (r.status !== 200) throw r
    const names = r.body.Table.KeySchema.map((k) => k.AttributeName)
    tables.set(name, names)
    return names
  })
}

function validation (message) {
  return { status: 400, body: { __type: 'com.amazon.coral.validate#ValidationException', message } }
}

/// The single action of a TransactItem and its operation, or a ValidationException.
function actionOf (item) {
  const kinds = Object.keys(item || {})
  if (kinds.length !== 1 || !['Put', 'Update', 'Delete', 'ConditionCheck'].includes(kinds[0])) {
    return { error: validation('TransactItems can only contain one of Check, Put, Update or Delete') }
  }
  return { kind: kinds[0], action: item[kinds[0]] }
}

async function transactWriteItems (body) {
  const items = body.TransactItems
  if (!Array.isArray(items) || items.length === 0 || items.length > MAX_ACTIONS) {
    return validation(`1 validation error detected: Value at 'transactItems' failed to satisfy constraint: ` +
      `Member must have length less than or equal to ${MAX_ACTIONS} and greater than or equal to 1`)
  }
  const tables = keySchemas
  const actions = []
  const seen = new Set()
  for (const raw of items) {
    const { kind, action, error } = actionOf(raw)
    if (error) return error
    let schema
    try { schema = await keySchemaOf(tables, action.TableName) }
    catch (r) { return r }
    const source = kind === 'Put' ? action.Item : action.Key
    if (!source) return validation(`${kind} needs ${kind === 'Put' ? 'Item' : 'Key'}`)
    const key = {}
    for (const attr of schema) {
      if (!source[attr]) return validation('The provided key element does not match the schema')
      key[attr] = source[attr]
    }
    const id = action.TableName + '\u0000' + JSON.stringify(schema.map((a) => key[a]))
    if (seen.has(id)) {
      return validation('Transaction request cannot include multiple operations on one item')
    }
    seen.add(id)
    actions.push({ kind, action, key })
  }
  return lock.run(async () => {
    const items = streamsDir ? await touched('TransactWriteItems', body) : []
    const before = await imagesBefore(items)
    const done = await applyAll(actions)
    if (done.status === 200 && items.length) await appendRecords(items, before)
    return done
  })
}

/// Applies the actions in order; on the first failure restores what was applied and cancels.
async function applyAll (actions) {
  const undo = []
  for (let i = 0; i < actions.length; i++) {
    const { kind, action, key } = actions[i]
    // ALL_OLD: the item as it was, to restore it if a later action fails.
    const request = { TableName: action.TableName, ReturnValues: 'ALL_OLD' }
    for (const field of ['ConditionExpression', 'ExpressionAttributeNames', 'ExpressionAttributeValues']) {
      if (action[field] !== undefined) request[field] = action[field]
    }
    let operation
    if (kind === 'Put') {
      operation = 'PutItem'
      request.Item = action.Item
    }
    else if (kind === 'Delete') {
      operation = 'DeleteItem'
      request.Key = key
    }
    else {
      // Update, and ConditionCheck as an update that changes nothing (undone below if it created
      // an item that was not there).
      operation = 'UpdateItem'
      request.Key = key
      if (kind === 'Update') request.UpdateExpression = action.UpdateExpression
    }
    if (kind === 'ConditionCheck' && request.ExpressionAttributeValues &&
        !Object.keys(request.ExpressionAttributeValues).length) {
      delete request.ExpressionAttributeValues
    }
    const done = await call(operation, request)
    if (done.status === 200) {
      undo.push({ table: action.TableName, key, item: done.body.Attributes })
      if (kind === 'ConditionCheck') {
        await restore([undo.pop()])
      }
      continue
    }
    await restore(undo)
    if (errorType(done.body) === 'ConditionalCheckFailedException') {
      const reasons = actions.map((_, j) => j === i
        ? { Code: 'ConditionalCheckFailed', Message: 'The conditional request failed' }
        : { Code: 'None' })
      return {
        status: 400,
        body: {
          __type: 'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
          message: 'Transaction cancelled, please refer cancellation reasons for specific reasons [' +
            reasons.map((r) => r.Code).join(', ') + ']',
          CancellationReasons: reasons,
        },
      }
    }
    return done
  }
  return { status: 200, body: {} }
}

/// Puts back the items as they were before, last change first.
async function restore (undo) {
  for (const { table, key, item } of undo.reverse()) {
    if (item) await call('PutItem', { TableName: table, Item: item })
    else await call('DeleteItem', { TableName: table, Key: key })
  }
}


// ---- DynamoDB Streams' side (--streams DIR) ----

const streamFile = (table) => path.join(streamsDir, table + '.jsonl')
const streamSpecFile = (table) => path.join(streamsDir, table + '.stream.json')
/// Next sequence number by table (recovered from the file's last line after a restart).
const sequences = new Map()

function streamViewOf (table) {
  if (!streamsDir) return null
  try { return JSON.parse(fs.readFileSync(streamSpecFile(table), 'utf8')).StreamViewType || 'NEW_IMAGE' }
  catch { return null }
}

function nextSequence (table) {
  if (!sequences.has(table)) {
    let last = 0
    try {
      const lines = fs.readFileSync(streamFile(table), 'utf8').trimEnd().split('\n')
      const tail = lines[lines.length - 1]
      if (tail) last = Number(JSON.parse(tail).dynamodb.SequenceNumber)
    }
    catch {}
    sequences.set(table, last)
  }
  const n = sequences.get(table) + 1
  sequences.set(table, n)
  return n
}

/// Attribute values with their keys sorted, so two images compare by content.
function canonical (value) {
  if (Array.isArray(value)) return value.map(canonical)
  if (value && typeof value === 'object') {
    const out = {}
    for (const k of Object.keys(value).sort()) out[k] = canonical(value[k])
    return out
  }
  return value
}

async function currentItem (table, key) {
  const r = await call('GetItem', { TableName: table, Key: key, ConsistentRead: true })
  return r.status === 200 ? (r.body.Item || null) : null
}

/// The items a write request touches, as [table, key] pairs (tables with a stream only).
async function touched (operation, body) {
  const out = []
  const add = async (table, source) => {
    if (!source || !streamViewOf(table)) return
    let schema
    try { schema = await keySchemaOf(keySchemas, table) }
    catch { return }
    const key = {}
    for (const attr of schema) { if (source[attr]) key[attr] = source[attr] }
    if (Object.keys(key).length === schema.length) out.push([table, key])
  }
  if (operation === 'PutItem') await add(body.TableName, body.Item)
  else if (operation === 'UpdateItem' || operation === 'DeleteItem') await add(body.TableName, body.Key)
  else if (operation === 'BatchWriteItem') {
    for (const [table, requests] of Object.entries(body.RequestItems || {})) {
      for (const r of requests) await add(table, r.PutRequest ? r.PutRequest.Item : r.DeleteRequest && r.DeleteRequest.Key)
    }
  }
  else if (operation === 'TransactWriteItems') {
    for (const item of body.TransactItems || []) {
      const kind = Object.keys(item || {})[0]
      if (kind === 'ConditionCheck') continue
      const a = item[kind] || {}
      await add(a.TableName, kind === 'Put' ? a.Item : a.Key)
    }
  }
  return out
}

/// The items' images before a write (the caller holds the write lock).
async function imagesBefore (items) {
  const before = []
  for (const [table, key] of items) before.push(await currentItem(table, key))
  return before
}

/// Appends one stream record per item the write changed (the caller holds the write lock).
async function appendRecords (items, before) {
  const lines = new Map()
  for (let i = 0; i < items.length; i++) {
    const [table, key] = items[i]
    const after = await currentItem(table, key)
    const old = before[i]
    if (JSON.stringify(canonical(old)) === JSON.stringify(canonical(after))) continue
    const seq = nextSequence(table)
    const view = streamViewOf(table)
    const change = {
      ApproximateCreationDateTime: Math.floor(Date.now() / 1000),
      Keys: key,
      SequenceNumber: String(seq).padStart(21, '0'),
      SizeBytes: Buffer.byteLength(JSON.stringify(after || key)),
      StreamViewType: view,
    }
    if (after && view !== 'KEYS_ONLY' && view !== 'OLD_IMAGE') change.NewImage = after
    if (old && (view === 'OLD_IMAGE' || view === 'NEW_AND_OLD_IMAGES')) change.OldImage = old
    const record = {
      eventID: String(seq),
      eventName: !old ? 'INSERT' : !after ? 'REMOVE' : 'MODIFY',
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: 'us-east-1',
      dynamodb: change,
      eventSourceARN: `arn:aws:dynamodb:us-east-1:000000000000:table/${table}/stream/local`,
    }
    if (!lines.has(table)) lines.set(table, [])
    lines.get(table).push(JSON.stringify(record) + '\n')
  }
  for (const [table, chunk] of lines) fs.appendFileSync(streamFile(table), chunk.join(''))
}

/// A plain write on a table with a stream: the write and its records under the write lock.
function writeWithRecords (operation, body, res) {
  return lock.run(async () => {
    const items = await touched(operation, body)
    const before = await imagesBefore(items)
    const done = await call(operation, body)
    if (done.status === 200 && items.length) await appendRecords(items, before)
    send(res, done)
  })
}

/// CreateTable and DeleteTable: the stream's files follow the table.
function tableChange (operation, body, res) {
  call(operation, body).then((done) => {
    keySchemas.clear()
    if (done.status === 200 && streamsDir && body.TableName) {
      const spec = body.StreamSpecification
      for (const f of [streamFile(body.TableName), streamSpecFile(body.TableName)]) {
        try { fs.unlinkSync(f) }
        catch {}
      }
      sequences.delete(body.TableName)
      if (operation === 'CreateTable' && spec && spec.StreamEnabled) {
        fs.writeFileSync(streamSpecFile(body.TableName), JSON.stringify(spec))
      }
    }
    send(res, done)
  }, (e) => send(res, { status: 500, body: { __type: 'InternalFailure', message: String(e && e.message || e) } }))
}

function readBody (req, then) {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    let body
    try { body = JSON.parse(Buffer.concat(chunks).toString() || '{}') }
    catch { body = null }
    then(body)
  })
}

function send (res, { status, body }) {
  const text = JSON.stringify(body)
  res.statusCode = status
  res.setHeader('Content-Type', 'application/x-amz-json-1.0')
  res.setHeader('Content-Length', Buffer.byteLength(text))
  res.setHeader('x-amzn-RequestId', 'bridge-' + Date.now().toString(36))
  res.end(text)
}

const server = dynalite(argv)
const [handle] = server.listeners('request')
server.removeAllListeners('request')
server.on('request', (req, res) => {
  const target = String(req.headers['x-amz-target'] || '')
  const operation = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : ''
  if (operation === 'CreateTable' || operation === 'DeleteTable') keySchemas.clear()
  if (streamsDir && !req.headers[INTERNAL] && (operation === 'CreateTable' || operation === 'DeleteTable')) {
    return readBody(req, (body) => body
      ? tableChange(operation, body, res)
      : send(res, { status: 400, body: { __type: 'com.amazon.coral.service#SerializationException' } }))
  }
  if (req.headers[INTERNAL] || !(WRITES.has(operation) || operation === 'TransactWriteItems')) {
    return handle(req, res)
  }
  if (streamsDir && operation !== 'TransactWriteItems') {
    return readBody(req, (body) => body
      ? writeWithRecords(operation, body, res)
      : send(res, { status: 400, body: { __type: 'com.amazon.coral.service#SerializationException' } }))
  }
  if (operation !== 'TransactWriteItems') {
    // Held until dynalite has answered, so no write lands inside a transaction.
    return lock.run(() => new Promise((resolve) => {
      res.on('finish', resolve)
      res.on('close', resolve)
      handle(req, res)
    }))
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    let body
    try { body = JSON.parse(Buffer.concat(chunks).toString() || '{}') }
    catch {
      return send(res, { status: 400, body: { __type: 'com.amazon.coral.service#SerializationException' } })
    }
    transactWriteItems(body).then((r) => send(res, r), (e) => {
      send(res, { status: 500, body: { __type: 'InternalFailure', message: String(e && e.message || e) } })
    })
  })
})

server.listen(argv.port || 4567, argv.host || undefined, () => {
  port = server.address().port
  console.log('Dynalite (with TransactWriteItems) listening at: http://%s:%s', argv.host || 'localhost', port)
})
