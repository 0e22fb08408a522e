/**
 * Writes small MaxMind DB (MMDB 2.0) files for tests: IPv4 networks mapped to records, in
 * the format the `maxmind` reader (and every other MMDB reader) reads. npm has no
 * maintained MMDB writer (MaxMind's are in Go and Perl), so this follows the
 * specification (maxmind.github.io/MaxMind-DB) for the few types test records need:
 * maps, strings, unsigned integers, doubles and arrays, with 32-bit search-tree records.
 * The tests read what it writes through the real reader, so a mistake here fails them.
 */
import { rename, writeFile } from 'node:fs/promises';

type Value = string | number | boolean | Value[] | { [key: string]: Value };

export interface MmdbNetwork {
  /** `a.b.c.d/len`; a network inside one written before it overrides that part of it. */
  readonly cidr: string;
  readonly data: { [key: string]: Value };
}

const METADATA_MARKER = Buffer.from([0xab, 0xcd, 0xef, ...Buffer.from('MaxMind.com')]);
const DATA_SEPARATOR = 16;

interface TreeNode {
  children: [TreeNode | number | null, TreeNode | number | null];
  index?: number;
}

/** The MMDB file's bytes: an IPv4 search tree, the data section and the metadata. */
export function mmdbBytes(databaseType: string, networks: readonly MmdbNetwork[]): Buffer {
  const data: Buffer[] = [];
  let dataLength = 0;
  const root: TreeNode = { children: [null, null] };
  for (const network of networks) {
    const [address, length] = network.cidr.split('/') as [string, string];
    const bits = address
      .split('.')
      .reduce((sum, octet) => sum * 256 + Number(octet), 0)
      .toString(2)
      .padStart(32, '0');
    const offset = dataLength;
    const encoded = encode(network.data);
    data.push(encoded);
    dataLength += encoded.length;
    let node = root;
    const prefix = Number(length);
    for (let depth = 0; depth < prefix; depth++) {
      const side = Number(bits[depth]) as 0 | 1;
      if (depth === prefix - 1) {
        node.children[side] = offset;
        break;
      }
      let next = node.children[side];
      if (typeof next !== 'object' || next === null) {
        // A wider network written before keeps the rest of its range.
        next = { children: [next, next] };
        node.children[side] = next;
      }
      node = next;
    }
  }

  const nodes: TreeNode[] = [];
  const number = (node: TreeNode) => {
    node.index = nodes.length;
    nodes.push(node);
    for (const child of node.children) if (typeof child === 'object' && child) number(child);
  };
  number(root);
  const nodeCount = nodes.length;
  const tree = Buffer.alloc(nodeCount * 8);
  nodes.forEach((node, i) => {
    node.children.forEach((child, side) => {
      const record =
        child === null
          ? nodeCount
          : typeof child === 'number'
            ? nodeCount + DATA_SEPARATOR + child
            : (child.index as number);
      tree.writeUInt32BE(record, i * 8 + side * 4);
    });
  });

  const metadata = encode({
    node_count: { uint32: nodeCount },
    record_size: { uint16: 32 },
    ip_version: { uint16: 4 },
    database_type: databaseType,
    languages: ['en'],
    binary_format_major_version: { uint16: 2 },
    binary_format_minor_version: { uint16: 0 },
    build_epoch: { uint64: Math.floor(Date.now() / 1000) },
    description: { en: `IPCola test database: ${databaseType}` },
  } as unknown as { [key: string]: Value });
  return Buffer.concat([tree, Buffer.alloc(DATA_SEPARATOR), ...data, METADATA_MARKER, metadata]);
}

/** Writes the file in one rename, as an operator's update should, so no reader sees half of it. */
export async function writeMmdb(
  file: string,
  databaseType: string,
  networks: readonly MmdbNetwork[],
): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, mmdbBytes(databaseType, networks));
  await rename(temporary, file);
}

/*
 * Data section encoding. Integers in records are unsigned: uint32 unless a field is
 * wrapped as { uint16 | uint32 | uint64: n } (the metadata's fixed types); fractions are
 * doubles.
 */
function encode(value: Value): Buffer {
  if (typeof value === 'string') return withControl(2, Buffer.from(value, 'utf8'));
  if (typeof value === 'boolean') return control(14, value ? 1 : 0);
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0 && value <= 0xffffffff) {
      return withControl(6, unsignedBytes(value));
    }
    const bytes = Buffer.alloc(8);
    bytes.writeDoubleBE(value);
    return withControl(3, bytes);
  }
  if (Array.isArray(value)) {
    return Buffer.concat([control(11, value.length), ...value.map(encode)]);
  }
  const sized = value as { uint16?: number; uint32?: number; uint64?: number };
  const keys = Object.keys(value);
  if (keys.length === 1 && (keys[0] === 'uint16' || keys[0] === 'uint32' || keys[0] === 'uint64')) {
    const type = { uint16: 5, uint32: 6, uint64: 9 }[keys[0]];
    return withControl(type, unsignedBytes(Number(sized[keys[0]])));
  }
  return Buffer.concat([
    control(7, keys.length),
    ...Object.entries(value).flatMap(([key, field]) => [encode(key), encode(field)]),
  ]);
}

function unsignedBytes(value: number): Buffer {
  const bytes: number[] = [];
  let rest = BigInt(value);
  while (rest > 0n) {
    bytes.unshift(Number(rest & 0xffn));
    rest >>= 8n;
  }
  return Buffer.from(bytes);
}

function withControl(type: number, payload: Buffer): Buffer {
  return Buffer.concat([control(type, payload.length), payload]);
}

/** The control byte(s): type (extended types past 7 in a second byte) and size. */
function control(type: number, size: number): Buffer {
  const head: number[] = [];
  const extended = type > 7;
  let sizeBits: number;
  const sizeBytes: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 285) {
    sizeBits = 29;
    sizeBytes.push(size - 29);
  } else if (size < 65_821) {
    sizeBits = 30;
    const rest = size - 285;
    sizeBytes.push(rest >> 8, rest & 0xff);
  } else {
    sizeBits = 31;
    const rest = size - 65_821;
    sizeBytes.push((rest >> 16) & 0xff, (rest >> 8) & 0xff, rest & 0xff);
  }
  head.push(((extended ? 0 : type) << 5) | sizeBits);
  if (extended) head.push(type - 7);
  return Buffer.from([...head, ...sizeBytes]);
}
