#!/usr/bin/env python3
"""Hostile-input corpus for pgivf, run by tests/integration/bad_input.sh.

  corpus.py gen WORK          writes WORK/corpus.sql (one psql session), WORK/corpus.json (what each
                              statement must produce) and the binary COPY files under WORK/bin/
  corpus.py check WORK        compares WORK/corpus.out (what psql printed) with WORK/corpus.json
  corpus.py corrupt FILE KIND overwrites part of an ivfflat index's relation file (the cluster is down)
  corpus.py corrupt_heap FILE SPEC rewrites the dimension count of stored vectors in a table's file

Text literals are judged against a model of pgvector's vector_in that calls the C library's strtof
through ctypes, exactly as pgvector does, so the expected SQLSTATE (and, for accepted literals, every
float's bits) comes from pgvector's own algorithm rather than from a hand-written table.
"""
import ctypes
import ctypes.util
import errno
import json
import math
import os
import random
import re
import struct
import sys

MAX_DIM = 16000
WS = b' \t\n\r\x0b\x0c'
OK = '00000'

libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
libc.strtof.restype = ctypes.c_float
libc.strtof.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]


def f32_bits(x):
    return struct.unpack('<I', struct.pack('<f', x))[0]


class CString:
    """A NUL-terminated copy of `data` that strtof can be pointed into."""

    def __init__(self, data):
        self.data = data
        self.buf = ctypes.create_string_buffer(data)
        self.base = ctypes.addressof(self.buf)

    def strtof(self, pos):
        end = ctypes.c_void_p()
        ctypes.set_errno(0)
        value = libc.strtof(self.base + pos, ctypes.byref(end))
        return value, end.value - self.base, ctypes.get_errno()


def model_vector_in(data, typmod=-1):
    """pgvector's vector_in: (SQLSTATE, [f32 bits] or None)."""
    s = CString(data)
    n = len(data)

    def at(i):
        return data[i] if i < n else 0

    p = 0
    while at(p) and at(p) in WS:
        p += 1
    if at(p) != ord('['):
        return '22P02', None
    p += 1
    while at(p) and at(p) in WS:
        p += 1
    if at(p) == ord(']'):
        return '22000', None
    values = []
    while True:
        if len(values) == MAX_DIM:
            return '54000', None
        while at(p) and at(p) in WS:
            p += 1
        if at(p) == 0:
            return '22P02', None
        value, end, err = s.strtof(p)
        if end == p:
            return '22P02', None
        if err == errno.ERANGE and math.isinf(value):
            return '22003', None
        if math.isnan(value) or math.isinf(value):
            return '22000', None
        values.append(f32_bits(value))
        p = end
        while at(p) and at(p) in WS:
            p += 1
        if at(p) == ord(','):
            p += 1
        elif at(p) == ord(']'):
            p += 1
            break
        else:
            return '22P02', None
    while at(p) and at(p) in WS:
        p += 1
    if p != n:
        return '22P02', None
    if typmod != -1 and typmod != len(values):
        return '22000', None
    return OK, values


def model_vector_recv(payload, typmod):
    """pgvector's vector_recv plus COPY's check that the field was consumed: (SQLSTATE, message)."""
    short = ('08P01', 'insufficient data left in message')
    if len(payload) < 4:
        return short
    # pq_getmsgint returns the 16 bits unsigned, so dim and unused are 0..65535 (checked against the
    # installed pgvector 0.8.6: dim 0xFFFF gives 54000, unused 0xFFFF is reported as 65535).
    dim, unused = struct.unpack('>HH', payload[:4])
    if dim < 1:
        return '22000', 'vector must have at least 1 dimension'
    if dim > MAX_DIM:
        return '54000', 'vector cannot have more than 16000 dimensions'
    if typmod != -1 and typmod != dim:
        return '22000', f'expected {typmod} dimensions, not {dim}'
    if unused != 0:
        return '22000', f'expected unused to be 0, not {unused}'
    for i in range(dim):
        chunk = payload[4 + 4 * i: 8 + 4 * i]
        if len(chunk) < 4:
            return short
        x = struct.unpack('>f', chunk)[0]
        if math.isnan(x):
            return '22000', 'NaN not allowed in vector'
        if math.isinf(x):
            return '22000', 'infinite value not allowed in vector'
    if len(payload) != 4 + 4 * dim:
        return '22P03', 'incorrect binary data format'
    return OK, None


# ---------------------------------------------------------------------------------------------
# generation

ALPHABET = ['[', ']', ',', '.', '-', '+', 'e', 'E', ' ', 'x', 'p', 'inf', 'nan', 'infinity'] + \
    list('0123456789') * 2


def rand_number(rng):
    kind = rng.randrange(12)
    sign = rng.choice(['', '', '', '-', '+'])
    digits = lambda lo, hi: ''.join(rng.choice('0123456789') for _ in range(rng.randrange(lo, hi)))
    if kind == 0:
        s = str(rng.randrange(0, 10 ** rng.randrange(1, 12)))
    elif kind == 1:
        s = repr(abs(rng.uniform(-1e3, 1e3)))
    elif kind == 2:
        s = f'{rng.randrange(1, 10)}.{digits(0, 9)}{rng.choice("eE")}{rng.choice(["", "+", "-"])}{rng.randrange(0, 60)}'
    elif kind == 3:
        s = rng.choice(['3.4028235e38', '3.4028236e38', '3.40282357e38', '3.4028235677973366e38',
                        '3.40282356779733661637539395458142568448e38', '1e38', '1e39', '1e-45',
                        '1.4e-45', '7e-46', '7.1e-46', '1e-46', '1.17549435e-38', '0.0', '0', '00',
                        '1e-400', '1e400', '123456789012345678901234567890'])
    elif kind == 4:
        hexd = lambda lo, hi: ''.join(rng.choice('0123456789abcdefABCDEF') for _ in range(rng.randrange(lo, hi)))
        s = '0' + rng.choice('xX') + hexd(0, 8)
        if rng.random() < 0.5:
            s += '.' + hexd(0, 6)
        if rng.random() < 0.6:
            s += rng.choice('pP') + rng.choice(['', '+', '-']) + str(rng.choice([0, 1, 3, 126, 127, 128, 149, 150, 1000]))
    elif kind == 5:
        s = rng.choice(['inf', 'nan', 'infinity', 'INF', 'NaN', 'Infinity', 'nan(0x1)', 'nan()', 'nan(',
                        'infinit', 'infinityx', 'na', 'in', 'i', 'n'])
    elif kind == 6:
        s = '.' + digits(0, 6)
    elif kind == 7:
        s = digits(1, 6) + '.'
    elif kind == 8:
        s = digits(1, 3) + rng.choice(['e', 'E', 'e+', 'E-', 'e-', 'ee1', 'e1.5'])
    elif kind == 9:
        s = digits(40, 400)
    else:
        s = str(rng.randrange(-100, 100))
    return sign + s


def rand_ws(rng):
    if rng.random() < 0.7:
        return ''
    return ''.join(rng.choice([' ', ' ', '\t', '\n', '\r', '\x0b', '\x0c']) for _ in range(rng.randrange(1, 4)))


def rand_vector_text(rng):
    n = rng.choice([1, 1, 2, 3, 3, 4, 5, 8, 16])
    parts = [rand_ws(rng) + rand_number(rng) + rand_ws(rng) for _ in range(n)]
    return rand_ws(rng) + '[' + ','.join(parts) + ']' + rand_ws(rng)


def mutate(rng, s):
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(s) + 1)
        if op == 0:
            s = s[:pos] + rng.choice(ALPHABET) + s[pos:]
        elif op == 1 and s:
            s = s[:pos] + s[pos + 1:]
        elif op == 2 and s:
            s = s[:pos] + rng.choice(ALPHABET) + s[pos + 1:]
        elif op == 3:
            s = s[:pos]
        else:
            a = rng.randrange(len(s) + 1)
            s = s[:pos] + s[a:a + 5] + s[pos:]
    return s


def soup(rng):
    s = ''.join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 30)))
    if rng.random() < 0.6:
        s = '[' + s
    if rng.random() < 0.6:
        s = s + ']'
    return s


def sql_text(data):
    """An SQL expression whose text is exactly `data` (bytes, valid UTF-8)."""
    if all(32 <= b < 127 or b in (9, 10) for b in data) and b"'" not in data:
        return "'" + data.decode() + "'"
    return f"convert_from(decode('{data.hex()}', 'hex'), 'UTF8')"


class Corpus:
    def __init__(self, work):
        self.work = work
        self.cases = []
        self.lines = ['\\set QUIET on', '\\set VERBOSITY verbose', '\\o /dev/null']
        os.makedirs(os.path.join(work, 'bin'), exist_ok=True)

    def add(self, cat, desc, **expect):
        case = dict(id=len(self.cases) + 1, cat=cat, desc=desc[:160], **expect)
        self.cases.append(case)
        return case['id']

    def text(self, cat, desc, data, typmod=-1, expr=None):
        """A text literal through vector_in, judged by the model."""
        code, values = model_vector_in(data, typmod)
        i = self.add(cat, desc, model=True, code=code, values=values)
        cast = 'vector' if typmod == -1 else f'vector({typmod})'
        expr = expr or sql_text(data)
        self.lines += ['\\unset t', '\\unset a',
                       f'SELECT x::text AS t, x::real[]::text AS a FROM (SELECT {expr}::{cast} AS x) s \\gset',
                       f'\\echo R {i} :SQLSTATE', '\\if :ERROR', '\\else',
                       f'\\echo V {i} :t', f'\\echo A {i} :a', '\\endif']

    def stmt(self, cat, sql, codes, msg=None, setup=False):
        i = self.add(cat, sql, codes=codes, msg=msg, setup=setup)
        self.lines += [sql.rstrip(';') + ';', f'\\echo R {i} :SQLSTATE']
        if msg:
            self.lines.append(f'\\echo M {i} :LAST_ERROR_MESSAGE')

    def copy(self, cat, desc, table, content, codes, msg=None, rows=0):
        i = self.add(cat, desc, codes=codes, msg=msg, table=table, rows=rows)
        path = os.path.join(self.work, 'bin', f'{i:04d}.bin')
        with open(path, 'wb') as f:
            f.write(content)
        # psql does not set SQLSTATE or LAST_ERROR_MESSAGE for \\copy: the error is read from stderr,
        # between two markers that \\warn writes to the same stream
        self.lines += [f'\\warn COPYSTART {i}', f"\\copy {table} FROM '{path}' WITH (FORMAT binary)",
                       f'\\warn COPYDONE {i}', f'\\echo R {i} COPY']

    def write(self):
        self.lines += ['SELECT count(*) AS n FROM bin_any \\gset', '\\echo C bin_any :n',
                       'SELECT count(*) AS n FROM bin3 \\gset', '\\echo C bin3 :n',
                       'SELECT 1 AS alive \\gset', '\\echo ALIVE :alive']
        with open(os.path.join(self.work, 'corpus.sql'), 'w') as f:
            f.write('\n'.join(self.lines) + '\n')
        with open(os.path.join(self.work, 'corpus.json'), 'w') as f:
            json.dump(self.cases, f)


SIGNATURE = b'PGCOPY\n\xff\r\n\x00'


def copy_file(rows, signature=SIGNATURE, flags=0, extension=b'', trailer=True, after=b''):
    """A binary COPY file; each row is a list of fields: bytes, None (NULL) or (declared length, bytes)."""
    out = signature + struct.pack('>ii', flags, len(extension)) + extension
    for fields in rows:
        out += struct.pack('>h', len(fields))
        for field in fields:
            if field is None:
                out += struct.pack('>i', -1)
            elif isinstance(field, tuple):
                out += struct.pack('>i', field[0]) + field[1]
            else:
                out += struct.pack('>i', len(field)) + field
    if trailer:
        out += struct.pack('>h', -1)
    return out + after


def payload(dim, floats=None, unused=0):
    floats = [float(i + 1) for i in range(dim)] if floats is None else floats
    head = struct.pack('>HH', dim & 0xFFFF, unused & 0xFFFF)
    return head + b''.join(f if isinstance(f, bytes) else struct.pack('>f', f) for f in floats)


NAN_BITS = [b'\x7f\xc0\x00\x00', b'\xff\xc0\x00\x00', b'\x7f\x80\x00\x01', b'\xff\xff\xff\xff', b'\x7f\xbf\xff\xff']
INF_BITS = [b'\x7f\x80\x00\x00', b'\xff\x80\x00\x00']


def generate(work):
    rng = random.Random(20251123)
    c = Corpus(work)

    # --- text input: designed literals -------------------------------------------------------
    designed = [
        '', ' ', '[', ']', '[]', '[ ]', '[\t\n]', '[,]', '[1,]', '[,1]', '[1,,2]', '[1 2]', '[1]]', '[[1]]',
        '[1]x', '[1] ', ' [1] ', '[1]\n', '1,2', '(1,2)', '{1,2}', '[1;2]', '[1,2', '[1.2.3]', '[--1]',
        '[+-1]', '[1e]', '[1e+]', '[e1]', '[.]', '[.e1]', '[-]', '[+]', '[1e39]', '[-1e39]', '[1e38]',
        '[3.4028235e38]', '[3.4028236e38]', '[3.40282357e38]', '[-3.40282357e38]', '[1e-46]', '[1e-39]',
        '[1e-45]', '[7e-46]', '[inf]', '[-inf]', '[Infinity]', '[+INFINITY]', '[infinit]', '[nan]',
        '[NaN]', '[-nan]', '[nan(123)]', '[nan(]', '[nan()]', '[0x1p3]', '[0x]', '[0xg]', '[0x.p1]',
        '[0x1p128]', '[0x1.fffffep127]', '[0x1.ffffffp127]', '[0x1p-150]', '[0x1p-149]', '[0X1P+1]',
        '[1,2,3]\x00', '[1, 2 ,3 ]', '[1e1e1]', '[1..2]', '[١]', '[1\u00a0]', '[\u00a01]', '[1]\u2003',
        '[0]', '[-0]', '[-0.0,0.0]', '[00000000000000000000001]', '[1_000]', '[1,000]', '[ 1 , 2 ]',
    ]
    for lit in designed:
        data = lit.encode()
        if b'\x00' in data:
            continue  # SQL text cannot hold NUL
        c.text('text designed', repr(lit), data)

    # very long numbers and literals
    c.text('text long', "'[' + '1' * 100000 + ']'", b'[' + b'1' * 100000 + b']')
    c.text('text long', "'[-' + '9' * 60000 + ']'", b'[-' + b'9' * 60000 + b']')
    c.text('text long', "'[0.' + '0' * 100000 + '1]'", b'[0.' + b'0' * 100000 + b'1]')
    c.text('text long', "'[' + '0' * 100000 + '1]'", b'[' + b'0' * 100000 + b'1]')
    c.text('text long', "'[1.' + '9' * 50000 + ']'", b'[1.' + b'9' * 50000 + b']')
    c.text('text long', "'[1e' + '9' * 5000 + ']'", b'[1e' + b'9' * 5000 + b']')
    c.text('text long', "'[1e-' + '9' * 5000 + ']'", b'[1e-' + b'9' * 5000 + b']')
    c.text('text long', "'[0x' + 'f' * 5000 + ']'", b'[0x' + b'f' * 5000 + b']')
    c.text('text long', "'[nan(' + 'a' * 5000 + ')]'", b'[nan(' + b'a' * 5000 + b')]')
    # dimension limits
    for n, label in [(16000, '16000 elements'), (16001, '16001 elements'), (20000, '20000 elements')]:
        c.text('text dims', label, ('[' + ','.join('0' for _ in range(n)) + ']').encode())
    c.text('text dims', '16000 elements and a trailing comma', ('[' + '1,' * 16000 + ']').encode())
    c.text('text dims', '16000 elements into vector(16000)', ('[' + ','.join('2' for _ in range(16000)) + ']').encode(), 16000)
    c.text('text dims', '16000 mixed-format elements', ('[' + ','.join(rand_number(rng).replace('nan', '1').replace('inf', '2') for _ in range(16000)) + ']').encode())
    # deep whitespace
    c.text('text whitespace', '100000 spaces', b' ' * 100000)
    c.text('text whitespace', 'deep whitespace around elements',
           b' ' * 50000 + b'[' + b'\t' * 30000 + b'1' + b' \t\n\r\x0b\x0c' * 10000 + b',2' + b'\n' * 20000 + b']' + b'\r' * 10000)
    c.text('text whitespace', 'whitespace between 2000 elements', b'[' + b',\n\t '.join(b'1.5' for _ in range(2000)) + b']')
    c.text('text whitespace', 'vertical tab and form feed inside numbers', b'[1\x0b2]')
    # typmod checks
    for lit, tm in [('[1,2,3]', 3), ('[1,2,3]', 2), ('[1,2,3]', 4), ('[1]', 1), ('[1e39,2]', 3), ('[nan,1,2]', 3), ('[]', 3), ('x', 3)]:
        c.text('text typmod', f'{lit!r}::vector({tm})', lit.encode(), tm)

    # --- text input: random -----------------------------------------------------------------
    for _ in range(150):
        c.text('text random valid', '', rand_vector_text(rng).encode())
    for _ in range(170):
        c.text('text random mutated', '', mutate(rng, rand_vector_text(rng)).encode())
    for _ in range(120):
        c.text('text random soup', '', soup(rng).encode())
    for _ in range(30):
        c.text('text random typmod', '', rand_vector_text(rng).encode(), rng.choice([1, 3, 5]))
    for case in c.cases:
        if case['desc'] == '':
            case['desc'] = 'random'
    # random bytes: non-ASCII and control characters, through convert_from(..., 'LATIN1'), so the
    # server sees the UTF-8 encoding of those Latin-1 characters
    for k in range(50):
        base = rand_vector_text(rng).encode() if k % 2 else b''
        raw = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            raw.insert(rng.randrange(len(raw) + 1), rng.randrange(1, 256))
        raw = bytes(raw)
        c.text('text random bytes', f'LATIN1 bytes {raw.hex()}', raw.decode('latin-1').encode('utf-8'),
               expr=f"convert_from(decode('{raw.hex()}', 'hex'), 'LATIN1')")
    # byte sequences that are not UTF-8 are refused before vector_in ever sees them
    for raw in [b'[1,\xff]', b'[\xc3]', b'\xed\xa0\x80[1]', b'[1]\xf8\x88\x80\x80\x80']:
        c.stmt('text invalid UTF-8', f"SELECT convert_from(decode('{raw.hex()}', 'hex'), 'UTF8')::vector", ['22021'])
    c.stmt('text invalid UTF-8', r"SELECT E'[1,\xff]'::vector", ['22021'])
    c.stmt('text NUL', r"SELECT E'[1,\\x00]'::vector", ['22P02'])
    c.stmt('text NUL', "SELECT chr(0)::vector", ['54000', '22P02', '22021'])

    # --- binary input through \copy ... (FORMAT binary) ---------------------------------------
    def binary(desc, table, field, rows_extra=None):
        typmod = 3 if table == 'bin3' else -1
        code, msg = model_vector_recv(field, typmod)
        c.copy('binary', desc, table, copy_file([[field]]), [code], msg if code != OK else None, rows=1 if code == OK else 0)

    binary('valid [1,2,3]', 'bin3', payload(3))
    binary('valid 16000 dimensions', 'bin_any', payload(16000))
    binary('dim 16001 with a full payload', 'bin_any', payload(16001))
    binary('dim 16001 into vector(3)', 'bin3', payload(16001))
    binary('dim 65535, no payload', 'bin_any', payload(65535, []))
    binary('dim 65535 into vector(3)', 'bin3', payload(65535, []))
    binary('dim 32768, no payload', 'bin_any', payload(32768, []))
    binary('dim 0', 'bin_any', payload(0))
    binary('unused = 1', 'bin_any', payload(3, unused=1))
    binary('unused = 0x7fff', 'bin_any', payload(3, unused=0x7FFF))
    binary('unused = 0xffff', 'bin_any', payload(3, unused=0xFFFF))
    for bits in NAN_BITS:
        binary(f'NaN element {bits.hex()}', 'bin_any', payload(3, [1.0, bits, 2.0]))
    for bits in INF_BITS:
        binary(f'infinite element {bits.hex()}', 'bin3', payload(3, [bits, 1.0, 2.0]))
    binary('denormal and negative zero elements', 'bin3', payload(3, [b'\x00\x00\x00\x01', b'\x80\x00\x00\x00', 1.0]))
    binary('truncated: dim 3, two floats', 'bin_any', payload(3)[:-4])
    binary('truncated: dim 3, half a float', 'bin_any', payload(3)[:-2])
    binary('truncated: 3-byte header', 'bin_any', payload(3)[:3])
    binary('truncated: 1 byte', 'bin_any', b'\x00')
    binary('empty field', 'bin_any', b'')
    binary('dim 16000, payload cut short', 'bin_any', payload(16000)[:40000])
    binary('4 extra bytes after the floats', 'bin_any', payload(3) + b'\x00\x00\x00\x00')
    binary('1 extra byte after the floats', 'bin3', payload(3) + b'\x01')
    binary('dim 4 into vector(3)', 'bin3', payload(4))
    binary('dim 2 into vector(3)', 'bin3', payload(2))
    binary('dim 2 into vector(3), unused = 5', 'bin3', payload(2, unused=5))
    # framing problems (PostgreSQL's own COPY errors, 22P04) with vector payloads
    frame = [
        ('field length longer than the file', copy_file([[(100, payload(3))]]), ['22P04']),
        ('field length -2', copy_file([[(-2, payload(3))]]), ['22P04']),
        ('field length shorter than the payload', copy_file([[(8, payload(3))]]), ['08P01', '22P04', '22P03']),
        ('bad signature', copy_file([[payload(3)]], signature=b'PGCOPY\n\xff\r\n\x01'), ['22P04']),
        ('critical flag bit 20 set', copy_file([[payload(3)]], flags=1 << 20), ['22P04']),
        ('header extension length -1', copy_file([[payload(3)]], extension=b'')[:15] + struct.pack('>i', -1), ['22P04']),
        ('header extension of 8 bytes', copy_file([[payload(3)]], extension=b'\x00' * 8), [OK]),
        ('two fields for one column', copy_file([[payload(3), payload(3)]]), ['22P04']),
        ('zero fields', copy_file([[]]), ['22P04']),
        ('no trailer', copy_file([[payload(3)]], trailer=False), [OK, '22P04']),
        ('data after the trailer', copy_file([[payload(3)]], after=b'\x00\x01'), ['22P04']),
        ('file of 5 bytes', SIGNATURE[:5], ['22P04']),
        ('NULL field', copy_file([[None]]), [OK]),
        ('valid row then a NaN row', copy_file([[payload(3)], [payload(3, [1.0, NAN_BITS[0], 2.0])]]), ['22000']),
        ('valid row then a truncated row', copy_file([[payload(3)], [payload(3)[:9]]]), ['08P01']),
        ('1000 valid rows then dim 65535', copy_file([[payload(3)]] * 1000 + [[payload(65535, [])]]), ['22000', '54000']),
    ]
    for desc, content, codes in frame:
        table = 'bin_any' if 'header extension of' in desc or 'NULL' in desc or 'trailer' in desc else 'bin3'
        rows = 1 if codes[0] == OK else 0
        c.copy('binary framing', desc, table, content, codes, rows=rows)
    # random payloads, judged by the model of vector_recv
    for _ in range(120):
        dim = rng.choice([0, 1, 2, 3, 3, 3, 4, 5, 17, 16000, 16001, 32767, 32768, 65535, rng.randrange(65536)])
        unused = rng.choice([0, 0, 0, 0, 1, 0x8000, 0xFFFF])
        n = min(dim, 20) if dim <= 16000 else rng.randrange(0, 4)
        floats = []
        for _ in range(n):
            r = rng.random()
            floats.append(rng.choice(NAN_BITS + INF_BITS) if r < 0.05 else
                          bytes(rng.randrange(256) for _ in range(4)) if r < 0.3 else rng.uniform(-1e6, 1e6))
        field = payload(dim, floats, unused) if dim <= 20 else payload(dim, floats, unused)
        if dim == 16000 and rng.random() < 0.5:
            field = payload(16000)
        cut = rng.random()
        if cut < 0.25:
            field = field[:rng.randrange(len(field) + 1)]
        elif cut < 0.35:
            field += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        table = rng.choice(['bin3', 'bin_any'])
        binary(f'random payload {field[:24].hex()} ({len(field)} bytes)', table, field)

    # --- wrong dimensions -------------------------------------------------------------------
    dm = ['22000']
    for op in ['<->', '<#>', '<=>', '<+>', '+', '-', '*']:
        c.stmt('dimensions', f"SELECT '[1,2,3]'::vector {op} '[1,2]'", dm, 'different vector dimensions 3 and 2')
        c.stmt('dimensions', f"SELECT '[1]'::vector {op} array_fill(1, ARRAY[16000])::vector", dm, 'different vector dimensions 1 and 16000')
    for fn in ['l2_distance', 'inner_product', 'cosine_distance', 'l1_distance', 'vector_l2_squared_distance',
               'vector_negative_inner_product', 'vector_spherical_distance']:
        c.stmt('dimensions', f"SELECT {fn}('[1,2]', '[1,2,3]')", dm, 'different vector dimensions 2 and 3')
    for op in ['<', '<=', '=', '<>', '>=', '>']:
        c.stmt('dimensions', f"SELECT '[1,2]'::vector {op} '[1,2,3]'", [OK])  # compares like arrays
    c.stmt('dimensions', "SELECT vector_cmp('[1,2]', '[1]')", [OK])
    c.stmt('dimensions', "SELECT '[1]'::vector || '[2,3]'", [OK])
    c.stmt('dimensions', "SELECT array_fill(1, ARRAY[16000])::vector || '[1]'", ['54000'], 'vector cannot have more than 16000 dimensions')
    c.stmt('dimensions', "SELECT array_fill(1, ARRAY[8000])::vector || array_fill(1, ARRAY[8001])::vector", ['54000'])
    c.stmt('dimensions', "SELECT avg(v) FROM (VALUES ('[1,2]'::vector), ('[1,2,3]')) s(v)", dm, 'expected 2 dimensions, not 3')
    c.stmt('dimensions', "SELECT sum(v) FROM (VALUES ('[1,2]'::vector), ('[1,2,3]')) s(v)", dm)
    c.stmt('dimensions', "SELECT avg(v) FROM (VALUES ('[3e38]'::vector), ('[3e38]')) s(v)", [OK])
    c.stmt('dimensions', "SELECT sum(v) FROM (VALUES ('[3e38]'::vector), ('[3e38]')) s(v)", ['22003'])
    c.stmt('dimensions', "SELECT '[3e38]'::vector + '[3e38]'", ['22003'], 'value out of range: overflow')
    c.stmt('dimensions', "SELECT '[-3e38]'::vector - '[3e38]'", ['22003'], 'value out of range: overflow')
    c.stmt('dimensions', "SELECT '[1e30]'::vector * '[1e30]'", ['22003'], 'value out of range: overflow')
    c.stmt('dimensions', "SELECT '[1e-30]'::vector * '[1e-30]'", ['22003'], 'value out of range: underflow')
    for start, count in [(0, 2), (1, 0), (2, -1), (4, 1), (3, 1), (-5, 7), (-2147483648, 2147483647),
                         (2147483647, 2147483647), (2147483647, 1), (1, 2147483647), (-2147483648, -2147483648)]:
        c.stmt('dimensions', f"SELECT subvector('[1,2,3]', {start}, {count})", [OK, '22000'])
    c.stmt('dimensions', "SELECT l2_normalize('[0,0]'), l2_normalize('[3e38,3e38]'), vector_norm('[3e38,3e38]')", [OK])
    c.stmt('dimensions', "SELECT binary_quantize(array_fill(1, ARRAY[16000])::vector)", [OK])
    # aggregate state arrays passed directly (pgvector raises "expected state array" with elog, XX000)
    for sql, codes in [
        ("SELECT vector_avg('{}')", ['XX000']), ("SELECT vector_avg('{1}')", ['22000']),
        ("SELECT vector_avg('{0}')", [OK]), ("SELECT vector_avg('{2,1,NULL}')", ['XX000']),
        ("SELECT vector_avg('{{1,2}}')", ['XX000']), ("SELECT vector_avg(array_fill(1::float8, ARRAY[70000]))", ['54000']),
        ("SELECT vector_avg('{NaN,1}')", ['22000']), ("SELECT vector_avg('{1e-320,1e300}')", ['22000']),
        ("SELECT vector_avg('{-1,5}')", [OK]), ("SELECT vector_avg('[3:4]={2,4}'::float8[])", [OK]),
        ("SELECT vector_accum('{1,2}', '[1,2]')", ['22000']), ("SELECT vector_accum('{}', '[1,2]')", ['XX000']),
        ("SELECT vector_accum('{0}', '[1,2]')", [OK]), ("SELECT vector_accum('{1,1e308}', '[3e38]')", [OK, '22003']),
        ("SELECT vector_accum('{1,1.7976931348623157e308}', '[3e38]')", [OK]),
        ("SELECT vector_combine('{1,1}', '{1,1,1}')", ['22000']), ("SELECT vector_combine('{0}', '{}')", ['XX000']),
        ("SELECT vector_combine('{0}', array_fill(1::float8, ARRAY[70000]))", ['54000']),
        ("SELECT vector_combine('{1,1e308}', '{1,1e308}')", ['22003']),
        ("SELECT vector_combine('{1,NULL}', '{1,1}')", ['XX000']),
    ]:
        c.stmt('aggregate state', sql, codes)

    # --- casts from arrays ------------------------------------------------------------------
    for sql, codes, msg in [
        ("SELECT '{1,NULL}'::real[]::vector", ['22004'], 'array must not contain nulls'),
        ("SELECT ARRAY[NULL]::int[]::vector", ['22004'], None),
        ("SELECT ARRAY[1,NULL,3]::float8[]::vector", ['22004'], None),
        ("SELECT ARRAY[NULL]::numeric[]::vector", ['22004'], None),
        ("SELECT '{{1,2},{3,4}}'::real[]::vector", ['22000'], 'array must be 1-D'),
        ("SELECT '{{{1}}}'::int[]::vector", ['22000'], None),
        ("SELECT '{{1,NULL}}'::real[]::vector", ['22000'], 'array must be 1-D'),
        ("SELECT '{}'::real[]::vector", ['22000'], 'vector must have at least 1 dimension'),
        ("SELECT ARRAY['NaN']::real[]::vector", ['22000'], 'NaN not allowed in vector'),
        ("SELECT ARRAY['Infinity']::real[]::vector", ['22000'], 'infinite value not allowed in vector'),
        ("SELECT ARRAY[1, '-Infinity']::float8[]::vector", ['22000'], 'infinite value not allowed in vector'),
        ("SELECT ARRAY['NaN']::float8[]::vector", ['22000'], 'NaN not allowed in vector'),
        ("SELECT ARRAY[1e300]::float8[]::vector", ['22000'], 'infinite value not allowed in vector'),
        ("SELECT ARRAY[-1e300]::float8[]::vector", ['22000'], None),
        ("SELECT ARRAY[1e-300]::float8[]::vector", [OK], None),
        ("SELECT ARRAY['NaN']::numeric[]::vector", ['22000'], 'NaN not allowed in vector'),
        ("SELECT ARRAY['Infinity']::numeric[]::vector", ['22000'], 'infinite value not allowed in vector'),
        ("SELECT ARRAY[1e39]::numeric[]::vector", ['22003'], 'is out of range for type real'),
        ("SELECT ARRAY[-1e39]::numeric[]::vector", ['22003'], None),
        ("SELECT ARRAY[1e-50]::numeric[]::vector", ['22003'], None),
        ("SELECT ARRAY[repeat('9', 1000)::numeric]::vector", ['22003'], None),
        ("SELECT ARRAY[('0.' || repeat('0', 1000) || '1')::numeric]::vector", ['22003'], None),
        ("SELECT ARRAY[('1e' || 100000)::numeric]::vector", ['22003'], None),
        ("SELECT ARRAY[3.4028234e38]::numeric[]::vector", [OK], None),
        ("SELECT ARRAY[2147483647, -2147483648]::int[]::vector", [OK], None),
        ("SELECT array_fill(1.5::real, ARRAY[16000])::vector IS NOT NULL", [OK], None),
        ("SELECT array_fill(1.5::real, ARRAY[16001])::vector", ['54000'], 'vector cannot have more than 16000 dimensions'),
        ("SELECT array_fill(1, ARRAY[16001])::vector", ['54000'], None),
        ("SELECT array_fill(1::numeric, ARRAY[16001])::vector", ['54000'], None),
        ("SELECT array_fill(1::float8, ARRAY[100000])::vector", ['54000'], None),
        ("SELECT array_fill(NULL::real, ARRAY[16001])::vector", ['22004'], None),
        ("SELECT '[5:7]={1,2,3}'::real[]::vector", [OK], None),
        ("SELECT '[-2147483648:-2147483646]={1,2,3}'::real[]::vector", [OK], None),
        ("SELECT '{1,2,3}'::real[]::vector(2)", ['22000'], 'expected 2 dimensions, not 3'),
        ("SELECT '{1,2,3}'::numeric[]::vector(16000)", ['22000'], 'expected 16000 dimensions, not 3'),
        ("SELECT ARRAY[1,2]::smallint[]::vector", ['42846'], None),
        ("SELECT ARRAY[1,2]::bigint[]::vector", ['42846'], None),
        ("SELECT ARRAY['1']::text[]::vector", ['42846'], None),
        ("SELECT '[1,2,3]'::vector::real[]::vector(4)", ['22000'], None),
        ("SELECT '[1,2,3]'::vector(3)::vector(4)", ['22000'], 'expected 4 dimensions, not 3'),
        ("SELECT '[1,2,3]'::vector(0)", ['22023'], 'dimensions for type vector must be at least 1'),
        ("SELECT '[1,2,3]'::vector(16001)", ['22023'], 'dimensions for type vector cannot exceed 16000'),
        ("SELECT '[1,2,3]'::vector(3,3)", ['22023'], 'invalid type modifier'),
        ("SELECT '[1]'::vector(-1)", ['22023'], None),
        ("SELECT vector_in('[1,2]', 0, 0)", ['22000'], 'expected 0 dimensions, not 2'),
        ("SELECT vector_in('[1,2]', 0, -2)", ['22000'], None),
        ("SELECT vector_in('[1,2]', 0, 2147483647)", ['22000'], None),
        ("SELECT vector_in('[1,2]', 0, -1)", [OK], None),
        ("SELECT vector_typmod_in('{1,2}'::cstring[])", ['22023'], 'invalid type modifier'),
        ("SELECT vector_typmod_in('{abc}'::cstring[])", ['22P02'], None),
        ("SELECT vector_typmod_in('{}'::cstring[])", ['22023', '2202E'], None),
        ("SELECT vector_typmod_in('{99999999999}'::cstring[])", ['22003', '22P02'], None),
        ("SELECT vector_typmod_in('{{1},{2}}'::cstring[])", ['2202E'], None),
        ("SELECT vector_typmod_in(ARRAY[NULL]::cstring[])", ['22004'], None),
        ("SELECT vector('[1,2,3]'::vector, 2, true)", ['22000'], 'expected 2 dimensions, not 3'),
        ("SELECT vector('[1,2,3]'::vector, -1, true)", [OK], None),
        ("SELECT vector_to_float4('[1,2]'::vector, 5, true)", [OK], None),
        ("SELECT array_to_vector('{1,2}'::int[], 5, true)", ['22000'], None),
        ("SELECT array_to_vector('{1,2}'::int[], -7, true)", ['22000'], None),
        ("SELECT array_to_vector('{1,2}'::float8[], 0, true)", ['22000'], None),
    ]:
        c.stmt('casts', sql, codes, msg)

    # --- the index: wrong-dimension queries and rows, bad options and settings --------------
    c.stmt('index', 'SET enable_seqscan = off', [OK], setup=True)
    c.stmt('index', 'SET ivfflat.probes = 3', [OK], setup=True)
    q3, q17 = "'[1,2,3]'", "'[" + ','.join(['0.5'] * 17) + "]'"
    for table, op in [('items_l2', '<->'), ('items_ip', '<#>'), ('items_cos', '<=>')]:
        c.stmt('index', f'SELECT id FROM {table} ORDER BY v {op} {q3} LIMIT 5', dm, 'different vector dimensions 16 and 3')
        c.stmt('index', f'SELECT id FROM {table} ORDER BY v {op} {q17} LIMIT 5', dm, 'different vector dimensions 16 and 17')
        c.stmt('index', f'SELECT count(*) FROM (SELECT id FROM {table} ORDER BY v {op} NULL LIMIT 5) s', [OK])
        c.stmt('index', f"SELECT id FROM {table} ORDER BY v {op} (SELECT array_fill(1, ARRAY[16000])::vector) LIMIT 5", dm)
        c.stmt('index', f"SELECT count(*) FROM generate_series(1, 3) g CROSS JOIN LATERAL (SELECT id FROM {table} ORDER BY v {op} (SELECT array_fill(1, ARRAY[15 + g])::vector) LIMIT 2) s", dm)
    c.stmt('index', "INSERT INTO items_l2 VALUES (-1, '[1,2,3]')", dm, 'expected 16 dimensions, not 3')
    c.stmt('index', "UPDATE items_l2 SET v = '[1]' WHERE id = 1", dm, 'expected 16 dimensions, not 1')
    c.stmt('index', "INSERT INTO items_l2 VALUES (-1, '[1,2,3]'::vector::real[]::vector)", dm)
    c.stmt('index', "INSERT INTO anyv VALUES (1, '[1,2]')", dm, 'expected 3 dimensions, not 2')
    c.stmt('index', "INSERT INTO anyv VALUES (2, '[1,2,3]')", [OK])
    c.stmt('index', "INSERT INTO anyv VALUES (3, array_fill(1, ARRAY[16000])::vector)", dm)
    c.stmt('index', "INSERT INTO anyv VALUES (4, NULL)", [OK])
    c.stmt('index', "SELECT id FROM anyv ORDER BY v::vector(3) <-> '[1,2]' LIMIT 1", dm)
    c.stmt('index', "CREATE INDEX ON anyv USING ivfflat (v)", ['22023', 'XX000'])  # pgvector: elog "column does not have dimensions"
    c.stmt('index', "CREATE INDEX ON wide USING ivfflat (v)", ['54000'], 'column cannot have more than 2000 dimensions for ivfflat index')
    c.stmt('index', "CREATE INDEX ON items_l2 USING ivfflat (v) WITH (lists = 0)", ['22023'])
    c.stmt('index', "CREATE INDEX ON items_l2 USING ivfflat (v) WITH (lists = 32769)", ['22023'])
    c.stmt('index', "CREATE INDEX ON items_l2 USING ivfflat (v) WITH (lists = -1)", ['22023'])
    c.stmt('index', "CREATE INDEX ON items_l2 USING ivfflat (v) WITH (lists = 'many')", ['22023'])
    c.stmt('index', "CREATE INDEX ON items_l2 USING ivfflat (v) WITH (m = 16)", ['22023'])
    c.stmt('index', "CREATE INDEX ON items_l2 USING ivfflat (v, v)", ['0A000'])
    c.stmt('index', "CREATE INDEX ON items_l2 USING ivfflat (v text_ops)", ['42704'])
    c.stmt('index', "CREATE INDEX ON items_l2 USING ivfflat (id)", ['42704'])  # pgivf: "needs a vector column"
    c.stmt('index', "SET ivfflat.probes = 0", ['22023'])
    c.stmt('index', "SET ivfflat.probes = 32769", ['22023'])
    c.stmt('index', "SET ivfflat.probes = 'x'", ['22023'])
    c.stmt('index', "SET ivfflat.iterative_scan = strict_order", [OK])  # pgivf's addition; pgvector: 22023
    c.stmt('index', "SET ivfflat.iterative_scan = strictest", ['22023'])
    c.stmt('index', "SET ivfflat.max_probes = 0", ['22023'])
    c.stmt('index', "SET ivfflat.nonexistent = 1", ['42602', '42704'])
    c.stmt('index', "SELECT ivfflat_verify(0)", ['42809'])
    c.stmt('index', "SELECT ivfflat_verify(4294967295)", ['42809', '42P01', 'XX000'])
    c.stmt('index', "SELECT ivfflat_verify('pg_class')", ['42809'])
    c.stmt('index', "SELECT ivfflat_verify('pg_class_oid_index')", ['42809'])
    c.stmt('index', "SELECT ivfflat_verify('no_such_index')", ['42P01'])
    c.stmt('index', "SELECT ivfflat_verify(NULL)", [OK])
    c.stmt('index', "SELECT ivfflat_verify('items_l2_v', true)", [OK])
    c.stmt('index', "SELECT ivfflat_verify('anyv_v3', true)", [OK])
    c.stmt('index', 'RESET ALL', [OK], setup=True)
    c.write()
    return c


# ---------------------------------------------------------------------------------------------
# checking

def check(work):
    cases = json.load(open(os.path.join(work, 'corpus.json')))
    got = {}
    values = {}
    messages = {}
    counts = {}
    alive = False
    copy_errors = {}
    current = None
    with open(os.path.join(work, 'corpus.err'), encoding='utf-8', errors='replace') as f:
        for line in f:
            line = line.rstrip('\n')
            if line.startswith('COPYSTART '):
                current = int(line.split()[1])
                copy_errors[current] = (OK, '')
            elif line.startswith('COPYDONE '):
                current = None
            elif current is not None and copy_errors[current][0] == OK:
                m = re.search(r'ERROR:  ([0-9A-Z]{5}): (.*)', line)
                if m:
                    copy_errors[current] = (m.group(1), m.group(2))
    with open(os.path.join(work, 'corpus.out'), encoding='utf-8', errors='replace') as f:
        for line in f:
            line = line.rstrip('\n')
            tag, _, rest = line.partition(' ')
            if tag in ('R', 'V', 'A', 'M'):
                i, _, value = rest.partition(' ')
                if not i.isdigit():
                    continue
                i = int(i)
                if tag == 'R' and value == 'COPY':
                    got[i], messages[i] = copy_errors.get(i, ('no marker', ''))
                elif tag == 'R':
                    got[i] = value
                elif tag == 'M':
                    messages[i] = value
                else:
                    values.setdefault(i, {})[tag] = value
            elif tag == 'C':
                table, _, n = rest.partition(' ')
                counts[table] = int(n)
            elif tag == 'ALIVE' and rest == '1':
                alive = True
    failures = []
    tried = errors = accepted = 0
    by_cat = {}
    for case in cases:
        i = case['id']
        code = got.get(i)
        if code is None:
            failures.append(f'#{i} [{case["cat"]}] {case["desc"]}: no result (the session died at or before this statement)')
            break
        if not case.get('setup'):
            tried += 1
            stats = by_cat.setdefault(case['cat'], [0, 0])
            if code == OK:
                accepted += 1
                stats[0] += 1
            else:
                errors += 1
                stats[1] += 1
        if case.get('model'):
            if code != case['code']:
                failures.append(f'#{i} [{case["cat"]}] {case["desc"]}: SQLSTATE {code}, pgvector gives {case["code"]}')
            elif code == OK:
                v = values.get(i, {})
                inner = v.get('A', '')[1:-1]
                if v.get('V') != '[' + inner + ']':
                    failures.append(f'#{i} [{case["cat"]}] {case["desc"]}: text output {v.get("V", "")[:80]!r} does not match real[] {v.get("A", "")[:80]!r}')
                else:
                    bits = []
                    for token in inner.split(','):
                        s = CString(token.encode())
                        bits.append(f32_bits(s.strtof(0)[0]))
                    if bits != case['values']:
                        diff = next(k for k in range(min(len(bits), len(case['values'])) + 1)
                                    if k >= len(bits) or k >= len(case['values']) or bits[k] != case['values'][k])
                        failures.append(f'#{i} [{case["cat"]}] {case["desc"]}: element {diff} parsed differently from strtof '
                                        f'({len(bits)} vs {len(case["values"])} elements)')
        else:
            if code not in case['codes']:
                failures.append(f'#{i} [{case["cat"]}] {case["desc"]}: SQLSTATE {code}, expected {"/".join(case["codes"])}'
                                + (f' ({messages.get(i, "")[:120]})' if code != OK else ''))
            elif case.get('msg') and code != OK and case['msg'] not in messages.get(i, ''):
                failures.append(f'#{i} [{case["cat"]}] {case["desc"]}: message {messages.get(i, "")[:120]!r}, expected {case["msg"]!r}')
        if code.startswith('XX') and not (case.get('codes') and code in case['codes']):
            failures.append(f'#{i} [{case["cat"]}] {case["desc"]}: internal error {code} {messages.get(i, "")[:120]}')
    if not alive and len(got) == len(cases):
        failures.append('the session did not answer SELECT 1 at the end')
    for table in ('bin_any', 'bin3'):
        expected = sum(case.get('rows', 0) for case in cases if case.get('table') == table and got.get(case['id']) == OK)
        if table in counts and counts[table] != expected:
            failures.append(f'{table} has {counts[table]} rows, the successful COPYs loaded {expected}')
    for cat, (ok, err) in by_cat.items():
        print(f'  {cat:<22} {ok + err:>4} inputs: {err:>4} clean errors, {ok:>4} accepted')
    for failure in failures[:60]:
        print('FAIL: ' + failure)
    if len(failures) > 60:
        print(f'... and {len(failures) - 60} more failures')
    print(f'bad inputs tried: {tried}, clean errors: {errors}, accepted: {accepted}')
    with open(os.path.join(work, 'corpus.summary'), 'w') as f:
        f.write(f'{tried} {errors} {accepted} {len(failures)}\n')
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------------
# corrupting index files (layout: crates/pgivf-core/src/page.rs)

BLOCK = 8192
HEADER = 24
SPECIAL = BLOCK - 16
CAPACITY = BLOCK - HEADER - 16
INVALID = 0xFFFFFFFF


def corrupt(path, kind):
    with open(path, 'rb') as f:
        buf = bytearray(f.read())
    nblocks = len(buf) // BLOCK
    (magic, version, dims, lists, metric, _, build_id, cstart, cpages, dstart, dpages, rows) = \
        struct.unpack_from('<IIIIIIQIIIIQ', buf, HEADER)
    per_dir_page = CAPACITY // 16
    stride = 8 + ((4 * dims + 7) // 8) * 8

    def dir_offset(lst):
        return (dstart + lst // per_dir_page) * BLOCK + HEADER + (lst % per_dir_page) * 16

    def next_of(block):
        return struct.unpack_from('<I', buf, block * BLOCK + SPECIAL)[0]

    def chain_of(lst):
        head = struct.unpack_from('<I', buf, dir_offset(lst))[0]
        chain = [head] if head != INVALID else []
        while chain and next_of(chain[-1]) != INVALID and len(chain) < nblocks:
            chain.append(next_of(chain[-1]))
        return chain

    # the longest list, so that it has a page in the middle
    lst = max(range(lists), key=lambda k: len(chain_of(k)))
    chain = chain_of(lst)
    head, tail, hint = struct.unpack_from('<III', buf, dir_offset(lst))
    if len(chain) < 3:
        sys.exit(f'the longest list of {path} has only {len(chain)} pages; the test needs at least 3')
    middle = chain[len(chain) // 2]
    rng = random.Random(kind)
    where = f'list {lst} is pages {chain}'
    if kind == 'random_bytes':          # (a) random bytes in the middle of an entry page
        at = middle * BLOCK + HEADER + 2000
        buf[at:at + 512] = bytes(rng.randrange(256) for _ in range(512))
        where += f'; 512 random bytes on page {middle}'
    elif kind == 'zero_special':        # (b) a zeroed special area
        buf[middle * BLOCK + SPECIAL:(middle + 1) * BLOCK] = bytes(16)
        where += f'; special area of page {middle} zeroed'
    elif kind == 'bad_magic':           # (c) a bad magic number on the meta page
        struct.pack_into('<I', buf, HEADER, 0xDEADBEEF)
    elif kind == 'format_1':            # the meta page as 0.1.0 to 0.3.0 wrote it: not damage, must be read
        struct.pack_into('<I', buf, HEADER + 4, 1)
    elif kind == 'newer_format':        # the meta page of a later pgivf's format (version + 1)
        struct.pack_into('<I', buf, HEADER + 4, struct.unpack_from('<I', buf, HEADER + 4)[0] + 1)
    elif kind == 'dir_past_end':        # (d) a directory entry pointing past the end
        struct.pack_into('<I', buf, dir_offset(lst), nblocks + 1000)
        where += f'; head of list {lst} set to {nblocks + 1000} (the index has {nblocks} pages)'
    elif kind == 'cycle':               # (e) the tail's next pointer back to the head
        struct.pack_into('<I', buf, tail * BLOCK + SPECIAL, head)
        where += f'; next of tail page {tail} set to head page {head}'
    elif kind == 'self_loop':           # a middle page pointing to itself
        struct.pack_into('<I', buf, middle * BLOCK + SPECIAL, middle)
        where += f'; next of page {middle} set to itself'
    elif kind == 'next_to_meta':        # a chain that runs into the meta page
        struct.pack_into('<I', buf, middle * BLOCK + SPECIAL, 0)
    elif kind == 'nan_centroid':        # a NaN in the first centroid
        struct.pack_into('<I', buf, cstart * BLOCK + HEADER + 4, 0x7FC00000)
    elif kind == 'pd_lower':            # pd_lower cut back to the middle of an entry (a valid page to PostgreSQL)
        struct.pack_into('<H', buf, middle * BLOCK + 12, HEADER + 100)
        where += f'; pd_lower of page {middle} set to {HEADER + 100}'
    elif kind == 'first_entry':         # first-entry offset that does not match the stream
        at = middle * BLOCK + SPECIAL + 4
        struct.pack_into('<H', buf, at, (struct.unpack_from('<H', buf, at)[0] + 8) % stride)
    elif kind == 'meta_lists':          # meta page fields that contradict each other
        struct.pack_into('<I', buf, HEADER + 12, 5000)
    elif kind == 'meta_metric':         # the meta page's metric changed to another valid one (L2 -> inner product)
        struct.pack_into('<I', buf, HEADER + 16, 1)
    elif kind == 'meta_metric_high':    # the metric field's low byte right (L2), a high byte set
        struct.pack_into('<I', buf, HEADER + 16, 0x100)
    elif kind == 'meta_flags':          # a meta page flag no build sets
        struct.pack_into('<I', buf, HEADER + 64, struct.unpack_from('<I', buf, HEADER + 64)[0] | 0x80)
    elif kind == 'meta_shape':          # consistent-looking meta page: dims 8, lists 20 (same centroid count)
        struct.pack_into('<II', buf, HEADER + 8, dims // 2, lists * 2)
    elif kind == 'zero_meta':           # an all-zero meta page (PostgreSQL accepts all-zero pages)
        buf[0:BLOCK] = bytes(BLOCK)
    elif kind == 'garbage_page':        # a whole page of random bytes, header included
        buf[middle * BLOCK:(middle + 1) * BLOCK] = bytes(rng.randrange(256) for _ in range(BLOCK))
    elif kind == 'truncated':           # the last 3 pages cut off
        del buf[(nblocks - 3) * BLOCK:]
        where += f'; file cut from {nblocks} to {nblocks - 3} pages'
    elif kind == 'tid_invalid_block':   # an entry whose heap TID has block 0xFFFFFFFF (P_NEW)
        struct.pack_into('<I', buf, head * BLOCK + HEADER + 0, INVALID)
        where += f'; first entry of page {head} points at heap block 0xFFFFFFFF'
    elif kind == 'tid_past_heap':       # an entry whose heap TID is past the end of the table
        struct.pack_into('<I', buf, head * BLOCK + HEADER + stride, 1000000)
    elif kind == 'q_location_p_new':    # a quantized entry's vector location at block 0xFFFFFFFF
        # (PostgreSQL 15 reads that block number, P_NEW, by extending the relation)
        struct.pack_into('<I', buf, head * BLOCK + HEADER + 8, INVALID)
        where += f'; vector location of the first entry of page {head} set to block 0xFFFFFFFF'
    elif kind == 'q_location_past_end': # ... past the end of the index, at an offset past the page
        struct.pack_into('<IH', buf, head * BLOCK + HEADER + 8, nblocks + 1000, 0xFFFF)
    elif kind == 'q_location_offset':   # ... inside the index, at an offset past the page's end
        struct.pack_into('<H', buf, head * BLOCK + HEADER + 12, 0xFFF0)
    elif kind == 'q_random_codes':      # random bytes in the middle of a page of codes
        at = middle * BLOCK + HEADER + 2000
        buf[at:at + 512] = bytes(rng.randrange(256) for _ in range(512))
        where += f'; 512 random bytes on page {middle}'
    elif kind == 'tail_to_directory':   # every list's tail is the directory page: an insert must not
        # write entries into it (nor, once it is full, wait for its own lock to extend the list)
        for k in range(lists):
            struct.pack_into('<I', buf, dir_offset(k) + 4, dstart)
        where += f'; every list\'s tail set to directory page {dstart}'
    elif kind == 'dead_next_self':      # a dead entry that continues onto the "next" page, which is
        # its own page, where inserts are told to reuse slots: the overwrite must not lock its page twice
        damaged = []
        for k in range(lists):
            first = struct.unpack_from('<I', buf, dir_offset(k))[0]
            if first == INVALID:
                continue
            page = first * BLOCK
            first_entry, = struct.unpack_from('<H', buf, page + SPECIAL + 4)
            used = struct.unpack_from('<H', buf, page + 12)[0] - HEADER
            starts = range(first_entry, used, stride)
            straddling = [o for o in starts if o + stride > CAPACITY]
            if not straddling:
                continue
            at = page + HEADER + straddling[0]
            struct.pack_into('<H', buf, at + 6, struct.unpack_from('<H', buf, at + 6)[0] | 1)
            struct.pack_into('<I', buf, page + SPECIAL, first)
            struct.pack_into('<I', buf, dir_offset(k) + 8, first)
            damaged.append(k)
        if not damaged:
            sys.exit(f'no list of {path} has an entry that continues past its first page')
        where += f'; lists {damaged}: a straddling entry of the first page dead, the page its own next, the free-slot hint on it'
    elif kind == 'tid_offset_zero':     # heap offsets 0 and 0xFFFF
        struct.pack_into('<H', buf, head * BLOCK + HEADER + 4, 0)
        struct.pack_into('<H', buf, head * BLOCK + HEADER + stride + 4, 0xFFFF)
    else:
        sys.exit(f'unknown corruption {kind}')
    with open(path, 'wb') as f:
        f.write(buf)
    print(f'{kind}: {where}')


def corrupt_heap(path, spec):
    """Rewrites the dim field of stored vectors: spec is [[vector text, new dim], ...]."""
    with open(path, 'rb') as f:
        buf = bytearray(f.read())
    for text, dim in json.loads(spec):
        floats = [float(x) for x in text.strip('[]').split(',')]
        pattern = struct.pack('<hh', len(floats), 0) + struct.pack(f'<{len(floats)}f', *floats)
        at = buf.find(pattern)
        if at < 0 or buf.find(pattern, at + 1) >= 0:
            sys.exit(f'vector {text[:40]}... is not stored exactly once in {path}')
        struct.pack_into('<H', buf, at, dim & 0xFFFF)
        print(f'heap: the stored vector {text[:30]}... now says {dim} dimensions')
    with open(path, 'wb') as f:
        f.write(buf)


if __name__ == '__main__':
    if sys.argv[1] == 'gen':
        c = generate(sys.argv[2])
        print(f'{len(c.cases)} statements')
    elif sys.argv[1] == 'check':
        sys.exit(check(sys.argv[2]))
    elif sys.argv[1] == 'corrupt':
        corrupt(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == 'corrupt_heap':
        corrupt_heap(sys.argv[2], sys.argv[3])
