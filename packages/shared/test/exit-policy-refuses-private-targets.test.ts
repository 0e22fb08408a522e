import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { describe, test } from 'node:test';
import {
  createExitPolicy,
  type ExitDecision,
  type LookupAll,
  normalizeTargetHost,
  resolveTarget,
} from '@ipcola/shared/exit-policy';

const policy = createExitPolicy({});

function assertRefused(decision: ExitDecision, what: string): void {
  assert.equal(decision.allowed, false, `${what} should be refused`);
  if (!decision.allowed) assert.ok(decision.reason.length > 0, `${what} needs a reason`);
}

function assertAllowed(decision: ExitDecision, what: string): void {
  assert.deepEqual(decision, { allowed: true }, `${what} should be allowed`);
}

/** A stand-in for dns.promises.lookup that records its calls. */
function fakeLookup(answer: LookupAddress[] | Error): {
  lookup: LookupAll;
  calls: Array<[string, unknown]>;
} {
  const calls: Array<[string, unknown]> = [];
  const lookup: LookupAll = async (hostname, options) => {
    calls.push([hostname, options]);
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { lookup, calls };
}

function dnsError(code: string, hostname: string): Error {
  return Object.assign(new Error(`getaddrinfo ${code} ${hostname}`), {
    code,
    syscall: 'getaddrinfo',
    hostname,
  });
}

const noLookupAllowed: LookupAll = async (hostname) => {
  throw new Error(`lookup must not be called, was called for ${hostname}`);
};

/** Teredo address whose client (last 32 bits) is `v4`, XOR-ed as the protocol stores it. */
function teredo(v4: string): string {
  const [a = 0, b = 0, c = 0, d = 0] = v4.split('.').map(Number);
  const high = (((a << 8) | b) ^ 0xffff).toString(16);
  const low = (((c << 8) | d) ^ 0xffff).toString(16);
  return `2001:0:4136:e378:8000:63bf:${high}:${low}`;
}

describe('exit policy refuses non-public address ranges', () => {
  const refusedRanges: Array<{ range: string; ipv4: string[]; ipv6: string[] }> = [
    { range: 'loopback', ipv4: ['127.0.0.1', '127.255.255.254'], ipv6: ['::1'] },
    {
      range: 'private',
      ipv4: ['10.0.0.1', '10.255.255.255', '172.16.0.1', '172.31.255.255', '192.168.1.1'],
      ipv6: ['fc00::1', 'fd12:3456:789a::1'],
    },
    { range: 'link-local', ipv4: ['169.254.0.1', '169.254.255.254'], ipv6: ['fe80::1', 'febf::1'] },
    {
      range: 'carrier-grade NAT',
      ipv4: ['100.64.0.1', '100.127.255.254'],
      ipv6: ['::ffff:100.64.0.1'],
    },
    {
      range: 'multicast',
      ipv4: ['224.0.0.1', '239.255.255.250'],
      ipv6: ['ff02::1', 'ff0e::1'],
    },
    { range: 'broadcast', ipv4: ['255.255.255.255'], ipv6: ['::ffff:255.255.255.255'] },
    { range: 'unspecified', ipv4: ['0.0.0.0', '0.1.2.3'], ipv6: ['::', '::ffff:0.0.0.0'] },
    {
      range: 'reserved',
      ipv4: ['240.0.0.1', '192.0.0.8', '192.88.99.1'],
      ipv6: ['2001:1::1', 'fec0::1', '100::1'],
    },
    { range: 'benchmarking', ipv4: ['198.18.0.1', '198.19.255.255'], ipv6: ['2001:2::1'] },
    {
      range: 'documentation',
      ipv4: ['192.0.2.1', '198.51.100.1', '203.0.113.1'],
      ipv6: ['2001:db8::1', '3fff::1'],
    },
    {
      range: 'cloud metadata',
      ipv4: ['169.254.169.254', '100.100.100.200', '168.63.129.16'],
      ipv6: ['fd00:ec2::254', '::ffff:169.254.169.254'],
    },
  ];

  for (const { range, ipv4, ipv6 } of refusedRanges) {
    test(`refuses ${range} addresses (${[...ipv4, ...ipv6].join(', ')})`, () => {
      for (const address of [...ipv4, ...ipv6]) {
        assertRefused(policy.checkAddress(address), address);
      }
    });
  }

  test('names the metadata service in the refusal reason', () => {
    const decision = policy.checkAddress('169.254.169.254');
    assert.equal(decision.allowed, false);
    if (!decision.allowed) assert.match(decision.reason, /metadata/);
    const azure = policy.checkAddress('168.63.129.16');
    assert.equal(azure.allowed, false);
    if (!azure.allowed) assert.match(azure.reason, /Azure/);
  });

  test('refuses IPv6 outside global unicast 2000::/3 even when ipaddr.js calls it unicast', () => {
    for (const address of ['4000::1', '1::1', 'e000::1', '::1:0:0:1']) {
      assertRefused(policy.checkAddress(address), address);
    }
  });

  test('refuses the IPv4-translated form ::ffff:0:a.b.c.d', () => {
    assertRefused(policy.checkAddress('::ffff:0:7f00:1'), '::ffff:0:7f00:1');
    assertRefused(policy.checkAddress('::ffff:0:5db8:d822'), '::ffff:0:5db8:d822');
  });

  test('refuses text that is not a strict IP literal (zone ids, legacy IPv4 spellings, names)', () => {
    for (const text of [
      '',
      'localhost',
      'example.com',
      '127.1',
      '0177.0.0.1',
      '0x7f000001',
      '2130706433',
      '93.184.216.34 ',
      ' 93.184.216.34',
      '93.184.216.34\n',
      '[2606:4700::1111]',
      '2606:4700::1111%eth0',
      'fe80::1%eth0',
      '1.2.3.4.5',
      '256.1.1.1',
      ':::1',
    ]) {
      assertRefused(policy.checkAddress(text), JSON.stringify(text));
    }
  });
});

describe('exit policy judges IPv6 forms that embed IPv4 by the embedded address', () => {
  const embeddingForms: Array<{ form: string; refused: string[]; allowed: string[] }> = [
    {
      form: 'IPv4-mapped ::ffff:a.b.c.d',
      refused: ['::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:192.168.0.1'],
      allowed: ['::ffff:93.184.216.34', '::ffff:5db8:d822'],
    },
    {
      form: 'IPv4-compatible ::a.b.c.d',
      refused: ['::127.0.0.1', '::7f00:1', '::10.0.0.1', '::a9fe:a9fe', '::0.0.0.2'],
      allowed: ['::93.184.216.34'],
    },
    {
      form: 'NAT64 64:ff9b::/96',
      refused: ['64:ff9b::7f00:1', '64:ff9b::127.0.0.1', '64:ff9b::a00:1', '64:ff9b::a9fe:a9fe'],
      allowed: ['64:ff9b::5db8:d822', '64:ff9b::8.8.8.8'],
    },
    {
      form: 'local-use NAT64 64:ff9b:1::/48',
      refused: ['64:ff9b:1::7f00:1', '64:ff9b:1::c0a8:101', '64:ff9b:1:ffff::5db8:d822'],
      allowed: ['64:ff9b:1::5db8:d822'],
    },
    {
      form: '6to4 2002::/16',
      refused: ['2002:7f00:1::1', '2002:a00:1::', '2002:c0a8:101:1::1', '2002:a9fe:a9fe::1'],
      allowed: ['2002:5db8:d822::1'],
    },
    {
      form: 'Teredo 2001::/32 (client address XOR-ed)',
      refused: [teredo('127.0.0.1'), teredo('10.0.0.1'), teredo('169.254.169.254')],
      allowed: [teredo('93.184.216.34')],
    },
  ];

  for (const { form, refused, allowed } of embeddingForms) {
    test(`${form}: refuses embedded private targets and allows embedded public ones`, () => {
      for (const address of refused) assertRefused(policy.checkAddress(address), address);
      for (const address of allowed) assertAllowed(policy.checkAddress(address), address);
    });
  }

  test('the Teredo helper really XORs the client address (127.0.0.1 is 80ff:fffe)', () => {
    assert.equal(teredo('127.0.0.1'), '2001:0:4136:e378:8000:63bf:80ff:fffe');
  });

  test('reasons name the embedded IPv4 address', () => {
    const decision = policy.checkAddress('64:ff9b::7f00:1');
    assert.equal(decision.allowed, false);
    if (!decision.allowed) assert.match(decision.reason, /127\.0\.0\.1/);
  });
});

describe('exit policy allows public unicast addresses', () => {
  test('allows public IPv4 and IPv6 addresses', () => {
    for (const address of [
      '93.184.216.34',
      '8.8.8.8',
      '1.1.1.1',
      '2606:4700::1111',
      '2001:4860:4860::8888',
      '2a00:1450:4001::200e',
    ]) {
      assertAllowed(policy.checkAddress(address), address);
    }
  });

  test('allows addresses just outside the refused IPv4 ranges', () => {
    for (const address of [
      '9.255.255.255',
      '11.0.0.0',
      '172.15.255.255',
      '172.32.0.0',
      '192.167.255.255',
      '192.169.0.0',
      '100.63.255.255',
      '100.128.0.0',
      '169.253.255.255',
      '169.255.0.0',
      '126.255.255.255',
      '128.0.0.0',
      '223.255.255.255',
      '1.0.0.0',
    ]) {
      assertAllowed(policy.checkAddress(address), address);
    }
  });
});

describe('exit policy ports', () => {
  test('refuses SMTP ports 25, 465 and 587', () => {
    for (const port of [25, 465, 587]) {
      const decision = policy.checkPort(port);
      assertRefused(decision, `port ${port}`);
      if (!decision.allowed) assert.match(decision.reason, /SMTP/);
    }
  });

  test('refuses port 0, ports above 65535, negative and non-integer ports', () => {
    for (const port of [0, 65536, 70000, -1, 80.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assertRefused(policy.checkPort(port), `port ${port}`);
    }
  });

  test('allows ordinary ports including 1 and 65535', () => {
    for (const port of [1, 22, 80, 443, 8080, 2525, 65535]) {
      assertAllowed(policy.checkPort(port), `port ${port}`);
    }
  });
});

describe('--allow-target is the only exception mechanism', () => {
  const local = createExitPolicy({ allowTargets: ['127.0.0.1/32'] });

  test('127.0.0.1/32 allows 127.0.0.1 but not 127.0.0.2 or ::1', () => {
    assertAllowed(local.checkAddress('127.0.0.1'), '127.0.0.1');
    assertRefused(local.checkAddress('127.0.0.2'), '127.0.0.2');
    assertRefused(local.checkAddress('::1'), '::1');
    assertRefused(local.checkAddress('10.0.0.1'), '10.0.0.1');
  });

  test('127.0.0.1/32 does not lift the SMTP port block', async () => {
    assertRefused(local.checkPort(25), 'port 25');
    const result = await resolveTarget('127.0.0.1', 25, local, noLookupAllowed);
    assert.equal(result.ok, false);
    if (!result.ok) assert.equal(result.code, 'target_forbidden');
  });

  test('127.0.0.1/32 lets resolveTarget reach 127.0.0.1 on an ordinary port', async () => {
    assert.deepEqual(await resolveTarget('127.0.0.1', 8080, local, noLookupAllowed), {
      ok: true,
      addresses: ['127.0.0.1'],
    });
  });

  test('an IPv4 allow-target also covers the IPv4-mapped spelling of the same address', () => {
    assertAllowed(local.checkAddress('::ffff:127.0.0.1'), '::ffff:127.0.0.1');
    assertRefused(local.checkAddress('::ffff:127.0.0.2'), '::ffff:127.0.0.2');
  });

  test('an IPv4 allow-target does not lift NAT64, 6to4, Teredo or IPv4-compatible embeddings', () => {
    for (const address of ['64:ff9b::7f00:1', '2002:7f00:1::1', teredo('127.0.0.1'), '::7f00:1']) {
      assertRefused(local.checkAddress(address), address);
    }
  });

  test('IPv6 allow-targets allow addresses inside them only', () => {
    const lab = createExitPolicy({ allowTargets: ['fd00::/8', '::1/128', '10.1.0.0/16'] });
    assertAllowed(lab.checkAddress('fd12::1'), 'fd12::1');
    assertAllowed(lab.checkAddress('::1'), '::1');
    assertAllowed(lab.checkAddress('10.1.2.3'), '10.1.2.3');
    assertRefused(lab.checkAddress('fc00::1'), 'fc00::1');
    assertRefused(lab.checkAddress('10.2.0.1'), '10.2.0.1');
    assertRefused(lab.checkAddress('127.0.0.1'), '127.0.0.1');
  });

  test('an IPv4-mapped allow-target counts as the IPv4 range it maps', () => {
    const mapped = createExitPolicy({ allowTargets: ['::ffff:192.168.0.0/112'] });
    assertAllowed(mapped.checkAddress('192.168.3.4'), '192.168.3.4');
    assertAllowed(mapped.checkAddress('::ffff:192.168.3.4'), '::ffff:192.168.3.4');
    assertRefused(mapped.checkAddress('10.0.0.1'), '10.0.0.1');
  });

  test('an allow-target does not open anything outside it', () => {
    const wide = createExitPolicy({ allowTargets: ['192.168.0.0/16'] });
    assertRefused(wide.checkAddress('169.254.169.254'), '169.254.169.254');
    assertRefused(wide.checkAddress('fd00:ec2::254'), 'fd00:ec2::254');
    assertAllowed(wide.checkAddress('93.184.216.34'), '93.184.216.34');
  });

  test('an invalid CIDR throws at construction and the error names it', () => {
    for (const cidr of [
      'not-a-cidr',
      '10.0.0.0',
      '10.0.0.0/33',
      '10.0.0.0/-1',
      '10.0.0.0/08',
      '10.0.0.0/ 8',
      '127.1/32',
      '0177.0.0.1/32',
      '::1/129',
      'fe80::1%eth0/64',
      '300.0.0.0/8',
      '',
    ]) {
      assert.throws(
        () => createExitPolicy({ allowTargets: [cidr] }),
        (error: unknown) =>
          error instanceof Error &&
          error.message.includes('--allow-target') &&
          error.message.includes(JSON.stringify(cidr)),
        `allow-target ${JSON.stringify(cidr)} should be rejected`,
      );
    }
  });
});

describe('normalizeTargetHost decodes IP addresses in disguise', () => {
  const disguisedIPv4: Array<[string, string]> = [
    ['2130706433', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0x7F000001', '127.0.0.1'],
    ['0x7f.0.0.0x1', '127.0.0.1'],
    ['127.0.0.1.', '127.0.0.1'],
    ['10.1', '10.0.0.1'],
    ['3232235777', '192.168.1.1'],
    ['0xa9.0xfe.0xa9.0xfe', '169.254.169.254'],
    ['0', '0.0.0.0'],
  ];
  for (const [host, address] of disguisedIPv4) {
    test(`${JSON.stringify(host)} is the address ${address} and is refused`, async () => {
      assert.deepEqual(normalizeTargetHost(host), { kind: 'ip', address });
      assertRefused(policy.checkAddress(address), address);
      const result = await resolveTarget(host, 80, policy, noLookupAllowed);
      assert.equal(result.ok, false);
      if (!result.ok) assert.equal(result.code, 'target_forbidden');
    });
  }

  const disguisedIPv6: Array<[string, string]> = [
    ['[::ffff:127.0.0.1]', '::ffff:7f00:1'],
    ['[::ffff:7f00:1]', '::ffff:7f00:1'],
    ['[64:ff9b::7f00:1]', '64:ff9b::7f00:1'],
    ['[64:ff9b::127.0.0.1]', '64:ff9b::7f00:1'],
    ['[::127.0.0.1]', '::7f00:1'],
    ['[0:0:0:0:0:0:0:1]', '::1'],
    ['[::FFFF:A9FE:A9FE]', '::ffff:a9fe:a9fe'],
    ['::1', '::1'],
    ['[2002:7f00:0001::1]', '2002:7f00:1::1'],
  ];
  for (const [host, address] of disguisedIPv6) {
    test(`${host} is the address ${address} and is refused`, async () => {
      assert.deepEqual(normalizeTargetHost(host), { kind: 'ip', address });
      assertRefused(policy.checkAddress(address), address);
      const result = await resolveTarget(host, 443, policy, noLookupAllowed);
      assert.equal(result.ok, false);
      if (!result.ok) assert.equal(result.code, 'target_forbidden');
    });
  }

  test('keeps IPv4-compatible ::a.b.c.d distinct from IPv4-mapped (ipaddr.js alone conflates them)', () => {
    assert.deepEqual(normalizeTargetHost('[::93.184.216.34]'), {
      kind: 'ip',
      address: '::5db8:d822',
    });
  });

  test('public literals come out canonical and are allowed', async () => {
    assert.deepEqual(normalizeTargetHost('93.184.216.34'), {
      kind: 'ip',
      address: '93.184.216.34',
    });
    assert.deepEqual(normalizeTargetHost('[2606:4700:0:0::1111]'), {
      kind: 'ip',
      address: '2606:4700::1111',
    });
    assert.deepEqual(await resolveTarget('[2606:4700::1111]', 443, policy, noLookupAllowed), {
      ok: true,
      addresses: ['2606:4700::1111'],
    });
  });
});

describe('normalizeTargetHost accepts DNS names and rejects everything else', () => {
  test('lower-cases names and removes one trailing dot', () => {
    assert.deepEqual(normalizeTargetHost('Example.COM.'), { kind: 'name', name: 'example.com' });
    assert.deepEqual(normalizeTargetHost('localhost'), { kind: 'name', name: 'localhost' });
    assert.deepEqual(normalizeTargetHost('_dmarc.example-1.org'), {
      kind: 'name',
      name: '_dmarc.example-1.org',
    });
  });

  test('accepts a 63-character label and a 253-character name', () => {
    const label63 = 'a'.repeat(63);
    assert.deepEqual(normalizeTargetHost(`${label63}.com`), {
      kind: 'name',
      name: `${label63}.com`,
    });
    const name253 = `${label63}.${label63}.${label63}.${'b'.repeat(61)}`;
    assert.equal(name253.length, 253);
    assert.deepEqual(normalizeTargetHost(name253), { kind: 'name', name: name253 });
    assert.deepEqual(normalizeTargetHost(`${name253}.`), { kind: 'name', name: name253 });
  });

  const invalidHosts: Array<[string, string]> = [
    ['a space', 'exa mple.com'],
    ['CR/LF', 'a\r\nb'],
    ['a tab', 'a\tb.com'],
    ['empty', ''],
    ['userinfo', 'user@host'],
    ['a path', 'example.com/x'],
    ['a port', 'example.com:80'],
    ['a backslash', 'example.com\\x'],
    ['a 300-character name', `${'a'.repeat(60)}.`.repeat(5)],
    ['a 254-character name', `${'a'.repeat(63)}.`.repeat(3).concat('b'.repeat(62))],
    ['a 64-character label', `${'a'.repeat(64)}.com`],
    ['an empty label', 'a..b'],
    ['a lone dot', '.'],
    ['a name ending in a number', 'foo.123'],
    ['an IPv4 address with too many parts', '1.2.3.4.5'],
    ['an IPv4 octet above 255', '256.1.1.1'],
    ['an IPv4 number above 32 bits', '4294967296'],
    ['a bad octal number', '08'],
    ['percent-encoding', '%31%32%37.0.0.1'],
    ['full-width digits', '１２７.０.０.１'],
    ['non-ASCII letters', 'bücher.de'],
    ['a bracketed IPv4 address', '[127.0.0.1]'],
    ['an IPv6 zone id', '[fe80::1%25eth0]'],
    ['a raw zone id', 'fe80::1%eth0'],
    ['unbalanced brackets', '[::1'],
    ['a malformed IPv6 address', '[::1::2]'],
    ['a NUL byte', 'example.com\0'],
    ['invalid punycode', 'xn--zz.example'],
  ];
  for (const [what, host] of invalidHosts) {
    test(`rejects a host with ${what} as invalid, and resolveTarget refuses it without DNS`, async () => {
      const normalized = normalizeTargetHost(host);
      assert.equal(normalized.kind, 'invalid', `${JSON.stringify(host)} should be invalid`);
      const result = await resolveTarget(host, 80, policy, noLookupAllowed);
      assert.equal(result.ok, false);
      if (!result.ok) {
        assert.equal(result.code, 'target_forbidden');
        assert.match(result.reason, /^invalid host: /);
      }
    });
  }
});

describe('resolveTarget checks every resolved address', () => {
  test('localhost with the real resolver is refused (it resolves to loopback)', async () => {
    const result = await resolveTarget('localhost', 80, policy);
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.equal(result.code, 'target_forbidden');
      assert.match(result.reason, /loopback/);
    }
  });

  test('a name with one public and one private address is refused as a whole', async () => {
    for (const answers of [
      [
        { address: '93.184.216.34', family: 4 },
        { address: '10.0.0.5', family: 4 },
      ],
      [
        { address: '192.168.0.10', family: 4 },
        { address: '93.184.216.34', family: 4 },
      ],
      [
        { address: '2606:4700::1111', family: 6 },
        { address: '::ffff:169.254.169.254', family: 6 },
      ],
    ]) {
      const { lookup } = fakeLookup(answers);
      const result = await resolveTarget('rebind.example', 443, policy, lookup);
      assert.equal(result.ok, false);
      if (!result.ok) assert.equal(result.code, 'target_forbidden');
    }
  });

  test('a name resolving to a dotted IPv4-compatible loopback (as glibc prints it) is refused', async () => {
    const { lookup } = fakeLookup([{ address: '::127.0.0.1', family: 6 }]);
    const result = await resolveTarget('compat.example', 443, policy, lookup);
    assert.equal(result.ok, false);
  });

  test('a resolver answer that is not an IP literal is refused', async () => {
    const { lookup } = fakeLookup([{ address: 'not-an-address', family: 4 }]);
    const result = await resolveTarget('odd.example', 443, policy, lookup);
    assert.equal(result.ok, false);
    if (!result.ok) assert.equal(result.code, 'target_forbidden');
  });

  test('public answers come back exactly, canonical and de-duplicated, from one verbatim lookup', async () => {
    const { lookup, calls } = fakeLookup([
      { address: '2606:4700:0:0:0:0:0:1111', family: 6 },
      { address: '93.184.216.34', family: 4 },
      { address: '93.184.216.34', family: 4 },
    ]);
    const result = await resolveTarget('WWW.Example.org.', 443, policy, lookup);
    assert.deepEqual(result, { ok: true, addresses: ['2606:4700::1111', '93.184.216.34'] });
    assert.deepEqual(calls, [['www.example.org', { all: true, verbatim: true }]]);
  });

  test('ENOTFOUND and EAI_AGAIN give target_unreachable', async () => {
    for (const code of ['ENOTFOUND', 'EAI_AGAIN', 'ESERVFAIL']) {
      const { lookup } = fakeLookup(dnsError(code, 'missing.example'));
      const result = await resolveTarget('missing.example', 443, policy, lookup);
      assert.equal(result.ok, false);
      if (!result.ok) {
        assert.equal(result.code, 'target_unreachable');
        assert.match(result.reason, new RegExp(code));
      }
    }
  });

  test('an empty DNS answer gives target_unreachable', async () => {
    const { lookup } = fakeLookup([]);
    const result = await resolveTarget('empty.example', 443, policy, lookup);
    assert.equal(result.ok, false);
    if (!result.ok) assert.equal(result.code, 'target_unreachable');
  });

  test('a forbidden port is refused before any DNS query is made', async () => {
    const { lookup, calls } = fakeLookup([{ address: '93.184.216.34', family: 4 }]);
    for (const port of [25, 465, 587, 0, 65536]) {
      const result = await resolveTarget('mail.example', port, policy, lookup);
      assert.equal(result.ok, false);
      if (!result.ok) assert.equal(result.code, 'target_forbidden');
    }
    assert.equal(calls.length, 0);
  });

  test('IP literal hosts are checked without any DNS query', async () => {
    assert.deepEqual(await resolveTarget('93.184.216.34', 80, policy, noLookupAllowed), {
      ok: true,
      addresses: ['93.184.216.34'],
    });
    const refused = await resolveTarget('10.0.0.1', 80, policy, noLookupAllowed);
    assert.equal(refused.ok, false);
  });
});
