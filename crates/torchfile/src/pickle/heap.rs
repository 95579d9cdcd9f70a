//! The values the VM builds: scalars inline, everything else in an arena ([`Heap`]) and
//! referred to by index, so shared and cyclic references are free and nothing recurses.

use std::collections::HashMap;

use super::MAX_OBJECTS;
use crate::error::{limit, Fault};
use crate::globals::Global;
use crate::tensor::{StorageRef, TensorRef};

/// Index of an object in a [`Heap`].
pub(crate) type ObjId = usize;

/// A value on the VM stack: scalars inline, everything else by reference into the [`Heap`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Obj(ObjId),
}

/// Objects the VM can build.
#[derive(Debug)]
pub(crate) enum Object {
    Str(String),
    Bytes(Vec<u8>),
    /// An integer that does not fit `i64`: little-endian two's complement, as LONG1 stores it.
    BigInt(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Set(Vec<Value>),
    Dict(Dict),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// An insertion-ordered dict with Python's "last assignment wins" semantics.
#[derive(Debug, Default)]
pub(crate) struct Dict {
    pub entries: Vec<(Value, Value)>,
    index: HashMap<DictKey, usize>,
}

/// The identity of a dict key. Strings, bytes and scalars compare by value like in Python;
/// other objects (tuples...) by identity, which is good enough for checkpoints.
#[derive(Debug, Hash, PartialEq, Eq)]
pub(super) enum DictKey {
    None,
    Int(i64),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    Obj(ObjId),
}

impl Dict {
    /// The value stored under the string key `key`.
    pub(crate) fn get_str(&self, key: &str) -> Option<Value> {
        let &i = self.index.get(&DictKey::Str(key.to_owned()))?;
        self.entries.get(i).map(|e| e.1)
    }

    pub(super) fn insert(&mut self, key: DictKey, k: Value, v: Value) {
        match self.index.get(&key) {
            Some(&i) => {
                if let Some(e) = self.entries.get_mut(i) {
                    e.1 = v;
                }
            }
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push((k, v));
            }
        }
    }
}

/// All objects built by one pickle.
#[derive(Debug, Default)]
pub(crate) struct Heap {
    objects: Vec<Object>,
}

impl Heap {
    pub(super) fn alloc(&mut self, o: Object) -> Result<Value, Fault> {
        if self.objects.len() >= MAX_OBJECTS {
            return Err(limit(format!("the pickle builds more than {MAX_OBJECTS} objects")));
        }
        self.objects.push(o);
        Ok(Value::Obj(self.objects.len() - 1))
    }

    /// The object a value refers to (`None` for scalars).
    pub(crate) fn get(&self, v: Value) -> Option<&Object> {
        match v {
            Value::Obj(id) => self.objects.get(id),
            _ => None,
        }
    }

    pub(super) fn get_mut(&mut self, v: Value) -> Option<&mut Object> {
        match v {
            Value::Obj(id) => self.objects.get_mut(id),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self, v: Value) -> Option<&str> {
        match self.get(v) {
            Some(Object::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_dict(&self, v: Value) -> Option<&Dict> {
        match self.get(v) {
            Some(Object::Dict(d)) => Some(d),
            _ => None,
        }
    }

    pub(crate) fn as_tensor(&self, v: Value) -> Option<&TensorRef> {
        match self.get(v) {
            Some(Object::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// Every storage the pickle referred to, in order of appearance.
    pub(crate) fn storages(&self) -> impl Iterator<Item = &StorageRef> {
        self.objects.iter().filter_map(|o| match o {
            Object::Storage(s) => Some(s),
            _ => None,
        })
    }

    /// The Python-ish type name of a value, for messages.
    pub(crate) fn type_name(&self, v: Value) -> &'static str {
        match v {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Obj(_) => match self.get(v) {
                Some(Object::Str(_)) => "str",
                Some(Object::Bytes(_)) => "bytes",
                Some(Object::BigInt(_)) => "int",
                Some(Object::List(_)) => "list",
                Some(Object::Tuple(_)) => "tuple",
                Some(Object::Set(_)) => "set",
                Some(Object::Dict(_)) => "dict",
                Some(Object::Global(_)) => "class or function",
                Some(Object::Storage(_)) => "storage",
                Some(Object::Tensor(_)) => "tensor",
                None => "dangling reference",
            },
        }
    }

    /// A short rendering of a dict key for lists of ignored entries.
    pub(crate) fn key_repr(&self, v: Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(b) => if b { "True" } else { "False" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Obj(_) => match self.get(v) {
                Some(Object::Str(s)) => s.clone(),
                Some(Object::Bytes(b)) => format!("b{:?}", String::from_utf8_lossy(b)),
                _ => format!("<{}>", self.type_name(v)),
            },
        }
    }

    pub(super) fn dict_key(&self, v: Value) -> DictKey {
        match v {
            Value::None => DictKey::None,
            Value::Bool(b) => DictKey::Int(b as i64),
            Value::Int(i) => DictKey::Int(i),
            Value::Float(f) => DictKey::Float(f.to_bits()),
            Value::Obj(id) => match self.objects.get(id) {
                Some(Object::Str(s)) => DictKey::Str(s.clone()),
                Some(Object::Bytes(b)) => DictKey::Bytes(b.clone()),
                _ => DictKey::Obj(id),
            },
        }
    }
}
