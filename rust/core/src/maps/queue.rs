//! `BPF_MAP_TYPE_QUEUE`: a bounded FIFO of values (no keys).
//!
//! User space reaches it as the kernel maps the syscall commands: lookup is
//! peek, update is push, and pop is lookup-and-delete. A push with
//! `BPF_EXIST` on a full queue drops the oldest value to make room;
//! without it a full queue fails with `E2BIG`, as in the kernel.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::reference_maps::{check_create_flags, def_error, BPF_F_ACCESS_MASK, BPF_F_NUMA_NODE};
use super::{MapDef, MapError, BPF_EXIST, BPF_NOEXIST};

/// Largest value the kernel allocates for one element (`KMALLOC_MAX_SIZE`
/// on common configurations).
const MAX_VALUE_SIZE: u32 = 4 << 20;

/// Which end `pop` and `peek` take values from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Order {
    Fifo,
    Lifo,
}

/// The storage shared by queues and stacks: values oldest first.
pub(crate) struct ValueRing {
    order: Order,
    value_size: usize,
    max_entries: usize,
    values: Mutex<VecDeque<Box<[u8]>>>,
}

impl ValueRing {
    pub(crate) fn new(def: &MapDef, order: Order) -> Result<ValueRing, MapError> {
        check_create_flags(def, BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK)?;
        if def.key_size != 0 {
            return Err(def_error(
                def,
                format!("key_size must be 0, got {}", def.key_size),
            ));
        }
        if def.value_size == 0 || def.value_size > MAX_VALUE_SIZE {
            return Err(def_error(
                def,
                format!(
                    "value_size must be 1..={MAX_VALUE_SIZE}, got {}",
                    def.value_size
                ),
            ));
        }
        if def.max_entries == 0 {
            return Err(def_error(def, "max_entries must be positive"));
        }
        if def.value_size as u64 * def.max_entries as u64 > (1 << 32) {
            return Err(def_error(def, "value_size * max_entries is too large"));
        }
        Ok(ValueRing {
            order,
            value_size: def.value_size as usize,
            max_entries: def.max_entries as usize,
            values: Mutex::new(VecDeque::new()),
        })
    }

    fn values(&self) -> std::sync::MutexGuard<'_, VecDeque<Box<[u8]>>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags & BPF_NOEXIST != 0 || flags > BPF_EXIST {
            return Err(MapError::invalid(format!(
                "push flags {flags:#x}: only BPF_ANY or BPF_EXIST apply"
            )));
        }
        if value.len() != self.value_size {
            return Err(MapError::invalid(format!(
                "values are {} bytes, got {}",
                self.value_size,
                value.len()
            )));
        }
        let mut values = self.values();
        if values.len() >= self.max_entries {
            if flags != BPF_EXIST {
                return Err(MapError::TooBig);
            }
            values.pop_front();
        }
        values.push_back(value.into());
        Ok(())
    }

    pub(crate) fn pop(&self) -> Result<Vec<u8>, MapError> {
        let mut values = self.values();
        let v = match self.order {
            Order::Fifo => values.pop_front(),
            Order::Lifo => values.pop_back(),
        };
        v.map(Vec::from).ok_or(MapError::NotFound)
    }

    pub(crate) fn peek(&self) -> Result<Vec<u8>, MapError> {
        let values = self.values();
        let v = match self.order {
            Order::Fifo => values.front(),
            Order::Lifo => values.back(),
        };
        v.map(|v| v.to_vec()).ok_or(MapError::NotFound)
    }

    pub(crate) fn len(&self) -> usize {
        self.values().len()
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.len() * (self.value_size + 16)
    }
}

/// Implements [`MapImpl`] for a type wrapping a [`ValueRing`] in `.0`.
macro_rules! value_ring_map_impl {
    ($ty:ty) => {
        impl $crate::maps::MapImpl for $ty {
            fn lookup(&self, _key: &[u8]) -> Result<Vec<u8>, $crate::maps::MapError> {
                self.0.peek()
            }

            fn update(
                &self,
                _key: &[u8],
                value: &[u8],
                flags: u64,
            ) -> Result<(), $crate::maps::MapError> {
                self.0.push(value, flags)
            }

            fn delete(&self, _key: &[u8]) -> Result<(), $crate::maps::MapError> {
                Err($crate::maps::MapError::invalid(
                    "queue and stack maps have no keys to delete; pop instead",
                ))
            }

            fn next_key(
                &self,
                _key: Option<&[u8]>,
            ) -> Result<Option<Vec<u8>>, $crate::maps::MapError> {
                Err($crate::maps::MapError::invalid(
                    "queue and stack maps have no keys to iterate",
                ))
            }

            fn push(&self, value: &[u8], flags: u64) -> Result<(), $crate::maps::MapError> {
                self.0.push(value, flags)
            }

            fn pop(&self) -> Result<Vec<u8>, $crate::maps::MapError> {
                self.0.pop()
            }

            fn peek(&self, _value: Option<&[u8]>) -> Result<Vec<u8>, $crate::maps::MapError> {
                self.0.peek()
            }

            fn len(&self) -> usize {
                self.0.len()
            }

            fn memory_usage(&self) -> usize {
                self.0.memory_usage()
            }

            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}
pub(crate) use value_ring_map_impl;

/// A FIFO queue map.
pub struct QueueMap(ValueRing);

impl QueueMap {
    pub fn new(def: &MapDef) -> Result<QueueMap, MapError> {
        ValueRing::new(def, Order::Fifo).map(QueueMap)
    }
}

value_ring_map_impl!(QueueMap);
