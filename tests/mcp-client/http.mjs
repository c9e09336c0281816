// http.mjs - the official MCP TypeScript SDK as a client of `embstore
// serve`'s /mcp (Streamable HTTP): node http.mjs BASE_URL ADMIN_TOKEN
// READ_TOKEN.  The store is empty, of 3 dimensions.  Prints "ok" and a
// summary on success.
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [base, adminToken, readToken, tenantToken] = process.argv.slice(2);
const url = new URL('/mcp', base);

const open = async (token) => {
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'embstore-http-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
};

const call = async (client, name, args) => {
  const r = await client.callTool({ name, arguments: args });
  assert.equal(r.isError, false, `${name}: ${JSON.stringify(r.content)}`);
  return r.structuredContent;
};

// An admin token: every tool, a session of its own.
const admin = await open(adminToken);
assert.match(admin.transport.sessionId, /^[0-9a-f]{32}$/);
const { tools } = await admin.client.listTools();
assert.equal(tools.length, 8);
const stored = await call(admin.client, 'store', {
  source_id: 'web',
  documents: [{ id: 'h1', text: 'served over http', embedding: [1, 0, 0] },
              { id: 'h2', text: 'second page', embedding: [0, 1, 0] }],
});
assert.equal(stored.inserted, 2);
const hits = await call(admin.client, 'search', { vector: [1, 0, 0.1], k: 1 });
assert.equal(hits.results[0].id, 'h1');
const stats = await call(admin.client, 'get_statistics', {});
assert.equal(stats.documents, 2);
const clean = await call(admin.client, 'cleanup_orphaned', {});
assert.equal(clean.dry_run, true);

// A read token: only the read-only tools, and no writing.
const reader = await open(readToken);
assert.notEqual(reader.transport.sessionId, admin.transport.sessionId);
const readTools = (await reader.client.listTools()).tools.map((t) => t.name).sort();
assert.deepEqual(readTools, ['get', 'get_statistics', 'list', 'search']);
await assert.rejects(reader.client.callTool({ name: 'delete', arguments: { ids: ['h1'] } }),
  /unknown tool/);
const got = await call(reader.client, 'get', { id: 'h2' });
assert.equal(got.text, 'second page');

// A tenant (a token of workspace w1): its own documents only.
const tenant = await open(tenantToken);
const mine = await call(tenant.client, 'store', {
  documents: [{ id: 'sdk-t1', text: 'a tenant page', embedding: [1, 0, 0.2] }],
});
assert.equal(mine.inserted, 1);
const seen = await call(tenant.client, 'search', { vector: [1, 0, 0], k: 10 });
assert.deepEqual(seen.results.map((h) => h.id), ['sdk-t1']);
const hidden = await tenant.client.callTool({ name: 'get', arguments: { id: 'h1' } });
assert.equal(hidden.isError, true);
const over = await tenant.client.callTool({ name: 'store', arguments: {
  documents: [{ id: 'h1', text: 'taken over', embedding: [1, 0, 0] }] } });
assert.equal(over.isError, true);
assert.match(over.content[0].text, /workspace this token may not write/);
const tstats = await call(tenant.client, 'get_statistics', {});
assert.equal(tstats.documents, 1);
await tenant.client.close();

// Ending a session: its id is no longer accepted.
const ended = admin.transport.sessionId;
await admin.transport.terminateSession();
const res = await fetch(url, {
  method: 'POST',
  headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/json',
             Accept: 'application/json, text/event-stream', 'Mcp-Session-Id': ended },
  body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'ping' }),
});
assert.equal(res.status, 404);
await reader.client.close();
console.log(`ok: ${tools.length} tools for admin, ${readTools.length} for read, a tenant isolated`);
