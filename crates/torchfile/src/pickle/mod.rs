//! A pickle virtual machine that builds values and never runs code.
//!
//! Implements the opcodes of pickle protocols 0 to 5 that PyTorch checkpoints use. Python's
//! unpickler turns GLOBAL into an import and REDUCE/NEWOBJ/BUILD into calls of arbitrary
//! callables; here GLOBAL goes through the allow-list in src/globals.rs and the "calls" are
//! emulations that only build values (dicts, lists, tuples, strings, numbers, storage and tensor
//! descriptions). There is nothing to execute, so a malicious pickle can at worst be refused.
//!
//! Resource safety on hostile input:
//! - objects live in an arena ([`Heap`]) and refer to each other by index, so shared and even
//!   cyclic references cost nothing, dropping is flat, and no code path recurses over the
//!   object graph (a deeply nested pickle is no danger to the call stack);
//! - memo GETs copy an index, never an object, so they cannot amplify memory;
//! - every length read from the file is checked against the bytes that remain before anything
//!   is allocated; stack, memo and arena sizes are capped.

//!
//! Files: this one (input, stack, memo and the opcode loop), heap.rs (the values it builds),
//! calls.rs (emulated REDUCE/NEWOBJ and persistent ids), text.rs (protocol-0 text literals).

mod calls;
mod heap;
mod text;

use std::collections::HashMap;

use crate::error::{limit, malformed, truncated, unsupported, Fault};
use crate::globals;
use crate::tensor::MAX_DIMS;

use heap::DictKey;
pub(crate) use heap::{Dict, Heap, Object, Value};
use text::{decode_raw_unicode_escape, decode_string_repr, parse_int};

/// Most values on the stack at once.
pub(crate) const MAX_STACK: usize = 1 << 22;
/// Most objects one pickle may create.
pub(crate) const MAX_OBJECTS: usize = 1 << 22;
/// Most memo entries.
pub(crate) const MAX_MEMO: usize = 1 << 22;

/// The result of running one pickle.
#[derive(Debug)]
pub(crate) struct Unpickled {
    pub heap: Heap,
    pub root: Value,
    /// Offset just past the STOP opcode (legacy files hold several pickles back to back).
    pub end: usize,
}

/// Runs the pickle starting at `data[start..]` up to its STOP opcode.
pub(crate) fn unpickle(data: &[u8], start: usize) -> Result<Unpickled, Fault> {
    run_machine(data, start, false)
}

/// Runs a TorchScript archive's pickle (`data.pkl`, `constants.pkl`): the checkpoint allow-list plus
/// the archive's own classes (`__torch__.*`, built as plain dicts of their state) and TorchScript's
/// typed-list builders (`torch.jit._pickle.build_intlist` etc., which return their argument).
pub(crate) fn unpickle_script(data: &[u8]) -> Result<Unpickled, Fault> {
    run_machine(data, 0, true)
}

fn run_machine(data: &[u8], start: usize, script: bool) -> Result<Unpickled, Fault> {
    let mut vm = Machine {
        data,
        pos: start,
        heap: Heap::default(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        script,
    };
    let root = vm.run()?;
    Ok(Unpickled { heap: vm.heap, root, end: vm.pos })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    heap: Heap,
    stack: Vec<Value>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// A TorchScript pickle: [`globals::resolve_script`] names, any BUILD state.
    script: bool,
}

impl<'a> Machine<'a> {
    // ---- input ----

    fn take(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        let data: &'a [u8] = self.data;
        match self.pos.checked_add(n).and_then(|end| data.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(truncated(format!(
                "pickle needs {n} more bytes at byte {}, only {} remain",
                self.pos,
                data.len().saturating_sub(self.pos)
            ))),
        }
    }

    fn byte(&mut self) -> Result<u8, Fault> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Fault> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Fault> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Fault> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length field: must fit in what remains of the input, so nothing huge gets allocated.
    fn len_field(&mut self, n: u64) -> Result<&'a [u8], Fault> {
        let n = usize::try_from(n).map_err(|_| truncated(format!("pickle announces {n} bytes")))?;
        self.take(n)
    }

    /// A text line without its `\n` (protocol 0 opcodes).
    fn line(&mut self) -> Result<&'a [u8], Fault> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(truncated(format!("pickle text line at byte {} has no end", self.pos))),
        }
    }

    fn line_str(&mut self) -> Result<&'a str, Fault> {
        let at = self.pos;
        std::str::from_utf8(self.line()?).map_err(|_| malformed(format!("pickle text at byte {at} is not valid UTF-8")))
    }

    /// The global `module.name` under this pickle's allow-list.
    fn resolve(&self, module: &str, name: &str) -> Result<globals::Global, Fault> {
        if self.script {
            globals::resolve_script(module, name)
        } else {
            globals::resolve(module, name)
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> Fault {
        malformed(format!("pickle: {what} (at byte {})", self.pos))
    }

    // ---- stack ----

    fn push(&mut self, v: Value) -> Result<(), Fault> {
        if self.stack.len() >= MAX_STACK {
            return Err(limit(format!("the pickle stack grows beyond {MAX_STACK} values")));
        }
        self.stack.push(v);
        Ok(())
    }

    fn alloc_push(&mut self, o: Object) -> Result<(), Fault> {
        let v = self.heap.alloc(o)?;
        self.push(v)
    }

    /// The lowest stack index the current MARK frame may touch.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value, Fault> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<Value, Fault> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.last().copied().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, Fault> {
        let mark = self.marks.pop().ok_or_else(|| self.err("no MARK to pop to"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, Fault> {
        if self.stack.len() < self.floor() + n {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), Fault> {
        let v = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return Err(limit(format!("the pickle memo grows beyond {MAX_MEMO} entries")));
        }
        self.memo.insert(index, v);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), Fault> {
        let v = *self
            .memo
            .get(&index)
            .ok_or_else(|| self.err(format!("memo slot {index} is read before it is written")))?;
        self.push(v)
    }

    // ---- the interpreter loop ----

    fn run(&mut self) -> Result<Value, Fault> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            match op {
                0x80 => {
                    let proto = self.byte()?;
                    if proto > 5 {
                        return Err(unsupported(format!("pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a buffering hint
                }
                b'.' => {
                    // STOP
                    let v = self.pop()?;
                    return Ok(v);
                }
                // ---- scalars ----
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?
                }
                0x8a => {
                    let n = self.byte()? as u64;
                    let bytes = self.len_field(n)?;
                    self.push_long(bytes)?
                }
                0x8b => {
                    let n = self.u32()? as i32;
                    if n < 0 {
                        return Err(self.err("LONG4 with negative length"));
                    }
                    let bytes = self.len_field(n as u64)?;
                    self.push_long(bytes)?
                }
                b'I' => {
                    let s = self.line_str()?;
                    let v = match s {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        _ => Value::Int(parse_int(s).ok_or_else(|| self.err(format!("bad INT {s:?}")))?),
                    };
                    self.push(v)?
                }
                b'L' => {
                    let s = self.line_str()?;
                    let v = parse_int(s.trim_end_matches('L'))
                        .ok_or_else(|| unsupported(format!("pickled integer {s} does not fit 64 bits")))?;
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)))?
                }
                b'F' => {
                    let s = self.line_str()?;
                    let v: f64 = s.trim().parse().map_err(|_| self.err(format!("bad FLOAT {s:?}")))?;
                    self.push(Value::Float(v))?
                }
                // ---- strings and bytes ----
                b'X' => {
                    let n = self.u32()? as u64;
                    self.push_utf8(n)?
                }
                0x8c => {
                    let n = self.byte()? as u64;
                    self.push_utf8(n)?
                }
                0x8d => {
                    let n = self.u64()?;
                    self.push_utf8(n)?
                }
                b'V' => {
                    let raw = self.line()?;
                    let s = decode_raw_unicode_escape(raw).ok_or_else(|| self.err("bad UNICODE escape"))?;
                    self.alloc_push(Object::Str(s))?
                }
                b'S' => {
                    let raw = self.line()?;
                    let b = decode_string_repr(raw).ok_or_else(|| self.err("bad STRING literal"))?;
                    self.push_py2_str(b)?
                }
                b'T' => {
                    let n = self.u32()? as i32;
                    if n < 0 {
                        return Err(self.err("BINSTRING with negative length"));
                    }
                    let b = self.len_field(n as u64)?.to_vec();
                    self.push_py2_str(b)?
                }
                b'U' => {
                    let n = self.byte()? as u64;
                    let b = self.len_field(n)?.to_vec();
                    self.push_py2_str(b)?
                }
                b'B' => {
                    let n = self.u32()? as u64;
                    let b = self.len_field(n)?.to_vec();
                    self.alloc_push(Object::Bytes(b))?
                }
                b'C' => {
                    let n = self.byte()? as u64;
                    let b = self.len_field(n)?.to_vec();
                    self.alloc_push(Object::Bytes(b))?
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    let b = self.len_field(n)?.to_vec();
                    self.alloc_push(Object::Bytes(b))?
                }
                0x97 | 0x98 => return Err(unsupported("pickle uses out-of-band buffers (protocol 5 NEXT_BUFFER)")),
                // ---- containers ----
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(limit("too many nested MARKs"));
                    }
                    self.marks.push(self.stack.len())
                }
                b')' => self.alloc_push(Object::Tuple(Vec::new()))?,
                0x85..=0x87 => {
                    let items = self.pop_n((op - 0x84) as usize)?;
                    self.alloc_push(Object::Tuple(items))?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.alloc_push(Object::Tuple(items))?
                }
                b']' => self.alloc_push(Object::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.alloc_push(Object::List(items))?
                }
                b'}' => self.alloc_push(Object::Dict(Dict::default()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.heap.alloc(Object::Dict(Dict::default()))?;
                    self.set_items(d, items)?;
                    self.push(d)?
                }
                0x8f => self.alloc_push(Object::Set(Vec::new()))?,
                0x91 => {
                    let items = self.pop_mark()?;
                    self.alloc_push(Object::Set(items))?
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.extend(list, vec![v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend(list, items)?
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    self.extend(set, items)?
                }
                b's' => {
                    let items = self.pop_n(2)?;
                    let d = self.top()?;
                    self.set_items(d, items)?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.set_items(d, items)?
                }
                // ---- stack and memo ----
                b'2' => {
                    let v = self.top()?;
                    self.push(v)?
                }
                b'0' => {
                    if self.stack.len() > self.floor() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'q' => {
                    let i = self.byte()? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                b'p' => {
                    let s = self.line_str()?;
                    let i = s.parse().map_err(|_| self.err(format!("bad PUT index {s:?}")))?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| limit("memo too large"))?;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.byte()? as u32;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b'g' => {
                    let s = self.line_str()?;
                    let i = s.parse().map_err(|_| self.err(format!("bad GET index {s:?}")))?;
                    self.memo_get(i)?
                }
                // ---- globals and calls ----
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let g = self.resolve(module, name)?;
                    self.alloc_push(Object::Global(g))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (module, name) = match (self.heap.as_str(module), self.heap.as_str(name)) {
                        (Some(m), Some(n)) => (m, n),
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    };
                    let g = self.resolve(module, name)?;
                    self.alloc_push(Object::Global(g))?
                }
                b'i' => {
                    // INST: GLOBAL + call with the MARK frame as arguments.
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let g = self.resolve(module, name)?;
                    let args = self.pop_mark()?;
                    let callee = self.heap.alloc(Object::Global(g))?;
                    let v = self.call(callee, args)?;
                    self.push(v)?
                }
                b'o' => {
                    // OBJ: the class is the first item of the MARK frame.
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.err("OBJ without a class"));
                    }
                    let callee = items.remove(0);
                    let v = self.call(callee, items)?;
                    self.push(v)?
                }
                b'R' | 0x81 => {
                    // REDUCE: callable(*args); NEWOBJ: cls.__new__(cls, *args). For the
                    // allow-listed classes both just build the value.
                    let args = self.pop()?;
                    let callee = self.pop()?;
                    let args = self.tuple_items(args, "arguments")?;
                    let v = self.call(callee, args)?;
                    self.push(v)?
                }
                0x92 => {
                    // NEWOBJ_EX: keyword arguments are not used by anything on the allow-list.
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callee = self.pop()?;
                    if !matches!(self.heap.as_dict(kwargs), Some(d) if d.entries.is_empty()) {
                        return Err(self.err("NEWOBJ_EX with keyword arguments"));
                    }
                    let args = self.tuple_items(args, "arguments")?;
                    let v = self.call(callee, args)?;
                    self.push(v)?
                }
                b'b' => {
                    // BUILD sets instance state (`__setstate__`/`__dict__`). Dicts carry a
                    // `_metadata` attribute and tensors Python attributes this way; neither
                    // matters for the weights, so the state is dropped.
                    let _state = self.pop()?;
                    let target = self.top()?;
                    match self.heap.get(target) {
                        Some(Object::Dict(_) | Object::Tensor(_)) => {}
                        // TorchScript objects restore their state with their own `__setstate__`.
                        _ if self.script => {}
                        _ => {
                            return Err(self.err(format!(
                                "BUILD on a {}, which is not a dict or tensor",
                                self.heap.type_name(target)
                            )))
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?
                }
                b'P' => {
                    return Err(unsupported("pickle uses a text persistent id (PERSID); PyTorch writes binary ones"))
                }
                0x82..=0x84 => {
                    return Err(unsupported(
                        "pickle uses the copyreg extension registry (EXT1/EXT2/EXT4), which can name arbitrary code",
                    ))
                }
                _ => {
                    self.pos = at;
                    return Err(self.err(format!("unknown opcode 0x{op:02x}")));
                }
            }
        }
    }

    // ---- opcode helpers ----

    fn push_long(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        if bytes.len() <= 8 {
            let mut v: i64 = 0;
            for (i, &b) in bytes.iter().enumerate() {
                v |= (b as i64) << (8 * i);
            }
            // Sign-extend from the top byte.
            if let Some(&last) = bytes.last() {
                let bits = 8 * bytes.len();
                if last & 0x80 != 0 && bits < 64 {
                    v |= -1i64 << bits;
                }
            }
            self.push(Value::Int(v))
        } else {
            self.alloc_push(Object::BigInt(bytes.to_vec()))
        }
    }

    fn push_utf8(&mut self, n: u64) -> Result<(), Fault> {
        let at = self.pos;
        let b = self.len_field(n)?;
        let s =
            std::str::from_utf8(b).map_err(|_| malformed(format!("pickle string at byte {at} is not valid UTF-8")))?;
        self.alloc_push(Object::Str(s.to_owned()))
    }

    /// Python 2 `str`: torch.load decodes it as UTF-8; undecodable ones stay bytes.
    fn push_py2_str(&mut self, b: Vec<u8>) -> Result<(), Fault> {
        match String::from_utf8(b) {
            Ok(s) => self.alloc_push(Object::Str(s)),
            Err(e) => self.alloc_push(Object::Bytes(e.into_bytes())),
        }
    }

    fn extend(&mut self, target: Value, items: Vec<Value>) -> Result<(), Fault> {
        let type_name = self.heap.type_name(target);
        match self.heap.get_mut(target) {
            Some(Object::List(l) | Object::Set(l)) => {
                l.extend(items);
                Ok(())
            }
            _ => Err(self.err(format!("APPEND/ADDITEMS on a {type_name}"))),
        }
    }

    fn set_items(&mut self, target: Value, items: Vec<Value>) -> Result<(), Fault> {
        if items.len() % 2 != 0 {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let keys: Vec<DictKey> = items.iter().step_by(2).map(|&k| self.heap.dict_key(k)).collect();
        let type_name = self.heap.type_name(target);
        match self.heap.get_mut(target) {
            Some(Object::Dict(d)) => {
                for (key, kv) in keys.into_iter().zip(items.chunks_exact(2)) {
                    d.insert(key, kv[0], kv[1]);
                }
                Ok(())
            }
            _ => Err(self.err(format!("SETITEM on a {type_name}, which is not a dict"))),
        }
    }

    /// The items of a tuple or list value.
    fn tuple_items(&self, v: Value, what: &str) -> Result<Vec<Value>, Fault> {
        match self.heap.get(v) {
            Some(Object::Tuple(t) | Object::List(t)) => Ok(t.clone()),
            _ => Err(self.err(format!("{what} must be a tuple, found a {}", self.heap.type_name(v)))),
        }
    }

    fn uint(&self, v: Value, what: &str) -> Result<u64, Fault> {
        match v {
            Value::Int(i) if i >= 0 => Ok(i as u64),
            Value::Bool(b) => Ok(b as u64),
            _ => Err(self.err(format!("{what} must be a non-negative int"))),
        }
    }

    fn uint_seq(&self, v: Value, what: &str) -> Result<Vec<u64>, Fault> {
        let items = self.tuple_items(v, what)?;
        if items.len() > MAX_DIMS {
            return Err(limit(format!("a tensor has {} dimensions (at most {MAX_DIMS})", items.len())));
        }
        items.into_iter().map(|i| self.uint(i, what)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &[u8]) -> Result<Unpickled, Fault> {
        unpickle(p, 0)
    }

    #[test]
    fn builds_plain_values() {
        // {'a': [1, -2, 300, 70000], 'b': (1.5, None, True), 'c': b'xy'} in protocol 2, using memo.
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        p.extend(b"X\x01\x00\x00\x00a]q\x01(K\x01J\xfe\xff\xff\xffM\x2c\x01J\x70\x11\x01\x00e");
        p.extend(b"X\x01\x00\x00\x00bG\x3f\xf8\x00\x00\x00\x00\x00\x00N\x88\x87");
        p.extend(b"U\x01cC\x02xy");
        p.extend(b"u.");
        let u = run(&p).unwrap();
        let d = u.heap.as_dict(u.root).unwrap();
        assert_eq!(d.entries.len(), 3);
        match u.heap.get(d.get_str("a").unwrap()) {
            Some(Object::List(l)) => {
                assert_eq!(l, &vec![Value::Int(1), Value::Int(-2), Value::Int(300), Value::Int(70000)])
            }
            other => panic!("{other:?}"),
        }
        match u.heap.get(d.get_str("b").unwrap()) {
            Some(Object::Tuple(t)) => {
                assert_eq!(t, &vec![Value::Float(1.5), Value::None, Value::Bool(true)])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(u.heap.get(d.get_str("c").unwrap()), Some(Object::Bytes(b)) if b == b"xy"));
        assert_eq!(u.end, p.len());
    }

    #[test]
    fn protocol_0_text_opcodes() {
        let p = b"(dp0\nS'k\\x41'\np1\nI42\nsVcaf\\u00e9\nL12L\nsS'n'\nF-0.5\ns.";
        let u = run(p).unwrap();
        let d = u.heap.as_dict(u.root).unwrap();
        assert_eq!(d.get_str("kA"), Some(Value::Int(42)));
        assert_eq!(d.get_str("café"), Some(Value::Int(12)));
        assert_eq!(d.get_str("n"), Some(Value::Float(-0.5)));
    }

    #[test]
    fn long1_and_bigint() {
        let u = run(b"\x80\x02\x8a\x02\x00\xff.").unwrap();
        assert_eq!(u.root, Value::Int(-256));
        let u = run(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.").unwrap();
        assert!(matches!(u.heap.get(u.root), Some(Object::BigInt(b)) if b.len() == 10));
    }

    #[test]
    fn forbidden_globals_are_named() {
        // The classic: cos\nsystem\n(S'echo pwned'\ntR.
        let e = run(b"cos\nsystem\n(S'echo pwned'\ntR.").unwrap_err();
        assert!(matches!(&e, Fault::Forbidden { global, .. } if global == "os.system"), "{e:?}");
        // STACK_GLOBAL (protocol 4) route to builtins.eval.
        let e = run(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.").unwrap_err();
        assert!(matches!(&e, Fault::Forbidden { global, .. } if global == "builtins.eval"), "{e:?}");
        // INST route.
        let e = run(b"(S'id'\nisubprocess\nPopen\n.").unwrap_err();
        assert!(matches!(&e, Fault::Forbidden { global, .. } if global == "subprocess.Popen"), "{e:?}");
    }

    #[test]
    fn nothing_but_globals_is_callable() {
        // A string "called" with REDUCE.
        let e = run(b"\x80\x02X\x01\x00\x00\x00a)R.").unwrap_err();
        assert!(matches!(e, Fault::Malformed(_)), "{e:?}");
        let e = run(b"\x80\x02\x82\x01.").unwrap_err();
        assert!(matches!(e, Fault::Unsupported(_)), "{e:?}");
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        // 200k nested lists: [[[[...]]]] built with EMPTY_LIST and APPEND.
        let n = 200_000;
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat(b']').take(n));
        p.extend(std::iter::repeat(b'a').take(n - 1));
        p.push(b'.');
        let u = run(&p).unwrap();
        assert!(matches!(u.heap.get(u.root), Some(Object::List(_))));
        // Self-referencing list: l = []; l.append(l).
        let u = run(b"\x80\x02]q\x00h\x00a.").unwrap();
        assert!(matches!(u.heap.get(u.root), Some(Object::List(l)) if l.len() == 1));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for p in [
            &b""[..],
            b"\x80",
            b"\x80\x02",
            b"\x80\x02X\xff\xff\xff\xffabc.", // length beyond the input
            b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.",
            b"\x80\x02a.",              // APPEND on empty stack
            b"\x80\x02(K\x01\x30\x30.", // POP below the mark frame, then POP_MARK-ish
            b"\x80\x02h\x05.",          // GET of an unset memo slot
            b"\x80\x02K\x01K\x02s.",    // SETITEM on an int
            b"\x80\x02\xff.",           // unknown opcode
            b"\x80\x02t.",              // TUPLE without MARK
            b"\x80\x02\x8b\xff\xff\xff\xff.",
            b"\x80\x02Q.",
            b"\x80\x02K\x01Q.",
            b"\x80\x06.",
            b"I12",
        ] {
            assert!(run(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn memo_and_stack_are_capped() {
        // DUP in a loop until the stack cap.
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat(b'2').take(MAX_STACK + 1));
        p.push(b'.');
        assert!(matches!(run(&p), Err(Fault::Limit(_))));
    }
}
