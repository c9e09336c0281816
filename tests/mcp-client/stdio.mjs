// stdio.mjs - the official MCP TypeScript SDK as a client of `embstore mcp`
// over stdio: node stdio.mjs EMBSTORE_BINARY CONNINFO.  Spawns the server
// with StdioClientTransport, initializes, lists the tools and calls every
// one against the store (an empty store of 3 dimensions), checks the
// results, and prints "ok" with a summary on success.  The SDK itself
// validates each structuredContent against the tool's outputSchema.
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';

const [bin, conninfo] = process.argv.slice(2);
const transport = new StdioClientTransport({
  command: bin,
  args: ['--db', conninfo, 'mcp'],
  stderr: 'pipe',
});
let stderr = '';
transport.stderr?.on('data', (d) => { stderr += d; });
const client = new Client({ name: 'embstore-test', version: '1.0.0' });
await client.connect(transport);

// The SDK asks for its newest revision; embstore answers it.
assert.equal(client.getServerVersion().name, 'embstore');

const { tools } = await client.listTools();
const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
assert.deepEqual(Object.keys(byName).sort(), ['cleanup_orphaned', 'delete', 'delete_by_source',
  'get', 'get_statistics', 'list', 'search', 'store']);
for (const t of tools) {
  assert.equal(t.inputSchema.type, 'object', t.name);
  assert.equal(t.outputSchema.type, 'object', t.name);
}
assert.equal(byName.search.annotations.readOnlyHint, true);
assert.equal(byName.get_statistics.annotations.readOnlyHint, true);
assert.equal(byName.delete.annotations.destructiveHint, true);
assert.equal(byName.cleanup_orphaned.annotations.destructiveHint, true);
assert.equal(byName.store.annotations.idempotentHint, true);

const call = async (name, args) => {
  const r = await client.callTool({ name, arguments: args });
  assert.equal(r.isError, false, `${name}: ${JSON.stringify(r.content)}`);
  assert.deepEqual(JSON.parse(r.content[0].text), r.structuredContent, name);
  return r.structuredContent;
};

const stored = await call('store', {
  source_id: 'notes',
  documents: [
    { text: 'the harbour lighthouse', embedding: [1, 0, 0.1] },
    { id: 'b', text: 'mountain river', embedding: [0, 1, 0.3],
      chunks: [{ id: 'b#0', text: 'river bank', embedding: [0, 1, 0] }] },
  ],
});
assert.equal(stored.inserted, 2);
assert.equal(stored.generated_ids.length, 1);
const again = await call('store', { source_id: 'notes',
  documents: [{ id: 'b', text: 'mountain river', embedding: [0, 1, 0.3],
                chunks: [{ id: 'b#0', text: 'river bank', embedding: [0, 1, 0] }] }] });
assert.equal(again.unchanged, 1);

const text = await call('search', { query: 'lighthouse' });
assert.equal(text.results[0].id, stored.generated_ids[0]);
const near = await call('search', { vector: [0, 1, 0.2], k: 1 });
assert.equal(near.results[0].id, 'b');
const chunk = await call('get', { id: 'b' });
assert.equal(chunk.chunks[0].id, 'b#0');
const page = await call('list', { limit: 1 });
assert.equal(page.documents.length, 1);
const stats = await call('get_statistics', {});
assert.equal(stats.documents, 2);
assert.equal(stats.chunks, 1);
const dry = await call('delete_by_source', { source_id: 'notes', dry_run: true });
assert.deepEqual([dry.deleted, dry.chunks_removed, dry.dry_run], [2, 1, true]);
const cleanup = await call('cleanup_orphaned', {});
assert.equal(cleanup.dry_run, true);
const del = await call('delete', { ids: ['b', 'missing'] });
assert.equal(del.deleted, 1);
assert.equal(del.not_found, 1);

// A failed operation is a tool error with embstore's message.
const missing = await client.callTool({ name: 'get', arguments: { id: 'b' } });
assert.equal(missing.isError, true);
assert.match(missing.content[0].text, /no document with id "b"/);

const resources = await client.listResources();
assert.deepEqual(resources.resources.map((r) => r.uri).sort(),
  ['embstore://sources', 'embstore://stats']);
const src = await client.readResource({ uri: 'embstore://sources' });
assert.equal(JSON.parse(src.contents[0].text).sources[0].documents, 1);

await client.close();
assert.match(stderr, /ready on stdio/);
console.log(`ok: protocol ${LATEST_PROTOCOL_VERSION}, ${tools.length} tools called`);
