//! `BPF_MAP_TYPE_STACK`: a bounded LIFO of values (no keys).
//!
//! Same storage and rules as the queue (see `queue.rs`); pop and peek take
//! the newest value, and a push with `BPF_EXIST` on a full stack drops the
//! oldest (bottom) value, as the kernel does.

use super::queue::{value_ring_map_impl, Order, ValueRing};
use super::{MapDef, MapError};

/// A LIFO stack map.
pub struct StackMap(ValueRing);

impl StackMap {
    pub fn new(def: &MapDef) -> Result<StackMap, MapError> {
        ValueRing::new(def, Order::Lifo).map(StackMap)
    }
}

value_ring_map_impl!(StackMap);
