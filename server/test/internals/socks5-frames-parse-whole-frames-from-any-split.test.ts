import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  authReply,
  methodReply,
  type Parsed,
  parseCredentials,
  parseGreeting,
  parseRequest,
  reply,
} from '../../src/gateway/socks5-frames.ts';

/** Every proper prefix is incomplete; the whole frame parses to `size`, trailing bytes or not. */
function assertWhole<T>(parse: (buffer: Buffer) => Parsed<T>, frame: Buffer): T {
  for (let cut = 0; cut < frame.length; cut++) {
    assert.equal(parse(frame.subarray(0, cut)).kind, 'incomplete', `prefix of ${cut} bytes`);
  }
  const parsed = parse(Buffer.concat([frame, Buffer.from('trailing')]));
  assert.equal(parsed.kind, 'frame');
  assert.ok(parsed.kind === 'frame');
  assert.equal(parsed.size, frame.length);
  return parsed.value;
}

describe('socks5 frames', () => {
  test('greetings of 0 to 255 methods', () => {
    assert.deepEqual(assertWhole(parseGreeting, Buffer.from([5, 0])), {
      offersUsernamePassword: false,
      offersNoAuthentication: false,
    });
    assert.deepEqual(assertWhole(parseGreeting, Buffer.from([5, 1, 0])), {
      offersUsernamePassword: false,
      offersNoAuthentication: true,
    });
    assert.deepEqual(assertWhole(parseGreeting, Buffer.from([5, 2, 0, 2])), {
      offersUsernamePassword: true,
      offersNoAuthentication: true,
    });
    const all = Buffer.from([5, 255, ...Array.from({ length: 255 }, (_, i) => i)]);
    assert.deepEqual(assertWhole(parseGreeting, all), {
      offersUsernamePassword: true,
      offersNoAuthentication: true,
    });
    assert.equal(parseGreeting(Buffer.from('GET / HTTP/1.1')).kind, 'invalid');
    assert.equal(parseGreeting(Buffer.from([4])).kind, 'invalid');
  });

  test('credentials of 0 to 255 bytes each, decoded as UTF-8', () => {
    const frame = (user: Buffer, pass: Buffer) =>
      Buffer.concat([Buffer.from([1, user.length]), user, Buffer.from([pass.length]), pass]);
    const long = Buffer.alloc(255, 'z');
    assert.deepEqual(assertWhole(parseCredentials, frame(long, Buffer.alloc(0))), {
      username: long.toString(),
      password: '',
    });
    assert.deepEqual(assertWhole(parseCredentials, frame(Buffer.alloc(0), long)), {
      username: '',
      password: long.toString(),
    });
    assert.deepEqual(
      assertWhole(parseCredentials, frame(Buffer.from('bücher'), Buffer.from('pass'))),
      { username: 'bücher', password: 'pass' },
    );
    assert.equal(parseCredentials(Buffer.from([5, 1, 97])).kind, 'invalid');
  });

  test('requests for IPv4, IPv6 (RFC 5952 text) and domains', () => {
    assert.deepEqual(assertWhole(parseRequest, Buffer.from([5, 1, 0, 1, 10, 0, 0, 1, 1, 187])), {
      host: '10.0.0.1',
      port: 443,
      addressType: 'ipv4',
    });
    const v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];
    assert.deepEqual(assertWhole(parseRequest, Buffer.from([5, 1, 0, 4, ...v6, 0, 80])), {
      host: '2001:db8::1',
      port: 80,
      addressType: 'ipv6',
    });
    const name = Buffer.alloc(255, 'a');
    const domain = Buffer.concat([Buffer.from([5, 1, 0, 3, 255]), name, Buffer.from([0xff, 0xff])]);
    assert.deepEqual(assertWhole(parseRequest, domain), {
      host: name.toString(),
      port: 65535,
      addressType: 'domain',
    });
  });

  test('refused requests name their REP byte; a wrong version is invalid', () => {
    const rep = (bytes: number[]) => {
      const parsed = parseRequest(Buffer.from(bytes));
      return parsed.kind === 'refused' ? parsed.rep : parsed.kind;
    };
    assert.equal(rep([5, 2, 0, 1, 1, 2, 3, 4, 0, 80]), 0x07);
    assert.equal(rep([5, 3, 0, 1, 1, 2, 3, 4, 0, 80]), 0x07);
    assert.equal(rep([5, 1, 0, 9]), 0x08);
    assert.equal(rep([5, 1, 0, 3, 0, 0, 80]), 0x04);
    assert.equal(rep([5, 1, 0, 3, 3, 0x61, 0x0a, 0x62, 0, 80]), 0x04);
    assert.equal(rep([5, 1, 0, 3, 2, 0xc3, 0x28, 0, 80]), 0x04, 'invalid UTF-8');
    assert.equal(rep([5, 1, 0, 1, 1, 2, 3, 4, 0, 0]), 0x02);
    assert.equal(rep([4, 1, 0, 1]), 'invalid');
    // A BIND is refused only once its frame is whole, so nothing is left unread.
    assert.equal(rep([5, 2, 0, 1, 1, 2, 3]), 'incomplete');
  });

  test('replies', () => {
    assert.equal(methodReply(2).toString('hex'), '0502');
    assert.equal(methodReply(0xff).toString('hex'), '05ff');
    assert.equal(authReply(true).toString('hex'), '0100');
    assert.equal(authReply(false).toString('hex'), '0101');
    assert.equal(reply(0).toString('hex'), '05000001000000000000');
    assert.equal(reply(4).toString('hex'), '05040001000000000000');
  });
});
