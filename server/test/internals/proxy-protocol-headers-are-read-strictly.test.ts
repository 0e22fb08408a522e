/** The PROXY protocol header parser: what a balancer sends is read, anything else refused. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseProxyHeader } from '../../src/listeners/proxy-protocol.ts';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A version 2 header: command, family/transport, address block and TLVs. */
function v2(command: number, familyTransport: number, block: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | command;
  head[1] = familyTransport;
  head.writeUInt16BE(block.length, 2);
  return Buffer.concat([SIGNATURE, head, block]);
}

function inet4(source: number[], sourcePort: number, extra = Buffer.alloc(0)): Buffer {
  const block = Buffer.alloc(12);
  Buffer.from(source).copy(block, 0);
  Buffer.from([192, 0, 2, 1]).copy(block, 4);
  block.writeUInt16BE(sourcePort, 8);
  block.writeUInt16BE(8000, 10);
  return Buffer.concat([block, extra]);
}

describe('PROXY protocol version 1', () => {
  test('TCP4 and TCP6 lines give the client, and where the client bytes start', () => {
    const line = Buffer.from('PROXY TCP4 198.51.100.7 192.0.2.1 51234 8000\r\nCONNECT x');
    assert.deepEqual(parseProxyHeader(line), {
      state: 'complete',
      length: 46,
      source: { address: '198.51.100.7', port: 51234 },
    });
    const six = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n'));
    assert.deepEqual(six, {
      state: 'complete',
      length: 44,
      source: { address: '2001:db8::7', port: 1 },
    });
  });

  test('UNKNOWN keeps the balancer as the client', () => {
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\nGET')), {
      state: 'complete',
      length: 15,
      source: null,
    });
  });

  test('a line still arriving is incomplete, byte by byte', () => {
    const line = 'PROXY TCP4 198.51.100.7 192.0.2.1 51234 8000\r\n';
    for (let i = 1; i < line.length; i++) {
      assert.equal(
        parseProxyHeader(Buffer.from(line.slice(0, i))).state,
        'incomplete',
        `${i} bytes`,
      );
    }
  });

  test('bad lines are refused', () => {
    for (const line of [
      'PROXY TCP4 198.51.100.7 192.0.2.1 51234\r\n',
      'PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n',
      'PROXY TCP6 198.51.100.7 192.0.2.1 1 2\r\n',
      'PROXY TCP4 198.51.100.7 192.0.2.1 051234 8000\r\n',
      'PROXY TCP4 198.51.100.7 192.0.2.1 65536 8000\r\n',
      'PROXY TCP4 198.51.100.07 192.0.2.1 1 2\r\n',
      'PROXY UDP4 198.51.100.7 192.0.2.1 1 2\r\n',
      'PROXY TCP4  198.51.100.7 192.0.2.1 1 2\r\n',
      `PROXY UNKNOWN ${'x'.repeat(100)}\r\n`,
      `PROXY TCP4 ${'1'.repeat(120)}`,
      'GET / HTTP/1.1\r\n\r\n',
      '\x05\x01\x00',
    ]) {
      assert.equal(parseProxyHeader(Buffer.from(line)).state, 'invalid', JSON.stringify(line));
    }
  });
});

describe('PROXY protocol version 2', () => {
  test('PROXY over TCP/IPv4 and IPv6 give the client; TLVs are skipped', () => {
    const tlv = Buffer.from([0x04, 0x00, 0x01, 0x00]);
    const header = v2(0x1, 0x11, inet4([198, 51, 100, 9], 40000, tlv));
    assert.deepEqual(parseProxyHeader(Buffer.concat([header, Buffer.from('\x05\x01\x00')])), {
      state: 'complete',
      length: 16 + 12 + 4,
      source: { address: '198.51.100.9', port: 40000 },
    });
    const block = Buffer.alloc(36);
    block[0] = 0x20;
    block[1] = 0x01;
    block[2] = 0x0d;
    block[3] = 0xb8;
    block[15] = 0x09;
    block.writeUInt16BE(443, 32);
    assert.deepEqual(parseProxyHeader(v2(0x1, 0x21, block)), {
      state: 'complete',
      length: 52,
      source: { address: '2001:db8::9', port: 443 },
    });
  });

  test("LOCAL (the balancer's own health check) and UNSPEC keep the balancer as the client", () => {
    const balancer = { state: 'complete', length: 16, source: null };
    assert.deepEqual(parseProxyHeader(v2(0x0, 0x00, Buffer.alloc(0))), balancer);
    assert.deepEqual(parseProxyHeader(v2(0x1, 0x00, Buffer.alloc(0))), balancer);
  });

  test('a header still arriving is incomplete, byte by byte', () => {
    const header = v2(0x1, 0x11, inet4([198, 51, 100, 9], 40000));
    for (let i = 1; i < header.length; i++) {
      assert.equal(parseProxyHeader(header.subarray(0, i)).state, 'incomplete', `${i} bytes`);
    }
  });

  test('bad headers are refused', () => {
    const good = v2(0x1, 0x11, inet4([198, 51, 100, 9], 40000));
    const version1 = Buffer.from(good);
    version1[12] = 0x11;
    const command = Buffer.from(good);
    command[12] = 0x22;
    const datagram = Buffer.from(good);
    datagram[13] = 0x12;
    const family = Buffer.from(good);
    family[13] = 0x41;
    const tooLong = Buffer.from(good);
    tooLong.writeUInt16BE(4096, 14);
    const short = v2(0x1, 0x11, Buffer.alloc(8));
    for (const [name, header] of Object.entries({
      version1,
      command,
      datagram,
      family,
      tooLong,
      short,
    })) {
      assert.equal(parseProxyHeader(header).state, 'invalid', name);
    }
  });
});
