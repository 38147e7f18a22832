//! Helper functions: the registry a program's `call N` resolves against.
//!
//! A helper is either a plain C-ABI function pointer (native Rust or C,
//! called directly) or an object implementing [`Helper`], which may read and
//! write the VM memory its pointer arguments point at through
//! [`HelperMemory`].

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::interp::MemoryMap;

/// Largest helper id accepted; ids index a dense table.
pub const MAX_HELPER_ID: u32 = 1 << 16;

/// `uint64_t f(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t)`.
pub type NativeFn = unsafe extern "C" fn(u64, u64, u64, u64, u64) -> u64;

/// Why a helper did not return a value.
pub enum HelperError {
    /// The helper rejected its arguments (the run fails with this message).
    Fault(String),
    /// The helper wants the run abandoned and `payload` handed back to the
    /// caller of `run` unchanged (a Python exception, say).
    Abort(Box<dyn Any + Send>),
    /// A callback run by the helper ([`HelperMemory::call_function`])
    /// faulted; the run fails with that fault.
    Exec(Box<crate::error::ExecError>),
}

/// A helper with access to the memory of the running program.
pub trait Helper: Send + Sync {
    fn call(&self, mem: &mut HelperMemory<'_>, args: [u64; 5]) -> Result<u64, HelperError>;
}

impl<F> Helper for F
where
    F: Fn(&mut HelperMemory<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync,
{
    fn call(&self, mem: &mut HelperMemory<'_>, args: [u64; 5]) -> Result<u64, HelperError> {
        self(mem, args)
    }
}

/// A registered helper.
#[derive(Clone)]
pub enum HelperImpl {
    Native(NativeFn),
    Dyn(Arc<dyn Helper>),
}

/// The helpers visible to a program, by id.
#[derive(Clone, Default)]
pub struct HelperRegistry {
    by_id: BTreeMap<u32, HelperImpl>,
}

impl HelperRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a native function.
    ///
    /// # Safety
    /// `f` must be callable with five `u64` arguments for as long as any
    /// executable built from this registry exists, and must not unwind.
    pub unsafe fn register_native(&mut self, id: u32, f: NativeFn) -> Result<(), String> {
        self.insert(id, HelperImpl::Native(f))
    }

    pub fn register(&mut self, id: u32, h: Arc<dyn Helper>) -> Result<(), String> {
        self.insert(id, HelperImpl::Dyn(h))
    }

    fn insert(&mut self, id: u32, h: HelperImpl) -> Result<(), String> {
        if id > MAX_HELPER_ID {
            return Err(format!(
                "helper id {id} is too large (at most {MAX_HELPER_ID})"
            ));
        }
        self.by_id.insert(id, h);
        Ok(())
    }

    /// Adds every helper of `other`, replacing those with the same id.
    pub fn extend(&mut self, other: &HelperRegistry) {
        for (&id, h) in &other.by_id {
            self.by_id.insert(id, h.clone());
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn get(&self, id: u32) -> Option<&HelperImpl> {
        self.by_id.get(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_id.keys().copied()
    }

    /// Dense table indexed by id, for constant-time dispatch.
    pub fn table(&self) -> Vec<Option<HelperImpl>> {
        let len = self.by_id.keys().next_back().map_or(0, |&m| m as usize + 1);
        let mut t = vec![None; len];
        for (&id, h) in &self.by_id {
            t[id as usize] = Some(h.clone());
        }
        t
    }
}

/// The running program's memory as seen by a helper: every access is checked
/// against the regions the program itself may touch.
pub struct HelperMemory<'a> {
    pub(crate) map: &'a mut MemoryMap,
}

impl<'a> HelperMemory<'a> {
    /// A view of `map` for one helper call (used by engines).
    pub fn new(map: &'a mut MemoryMap) -> Self {
        HelperMemory { map }
    }

    /// The bytes at VM address `addr`, if all `len` of them are accessible.
    pub fn slice(&self, addr: u64, len: u64) -> Result<&[u8], HelperError> {
        let p = self
            .map
            .translate(addr, len, false)
            .ok_or_else(|| bad_access(addr, len, "read"))?;
        // SAFETY: translate proved [addr, addr+len) lies inside one live region.
        Ok(unsafe { std::slice::from_raw_parts(p, len as usize) })
    }

    pub fn slice_mut(&mut self, addr: u64, len: u64) -> Result<&mut [u8], HelperError> {
        let p = self
            .map
            .translate(addr, len, true)
            .ok_or_else(|| bad_access(addr, len, "write"))?;
        // SAFETY: as above, and the region is writable.
        Ok(unsafe { std::slice::from_raw_parts_mut(p, len as usize) })
    }

    /// Copies `len` bytes from `src` to `dst`, which may overlap (memmove),
    /// if the program may read the one and write the other.
    pub fn copy(&mut self, dst: u64, src: u64, len: u64) -> Result<(), HelperError> {
        let from = self
            .map
            .translate(src, len, false)
            .ok_or_else(|| bad_access(src, len, "read"))?;
        let to = self
            .map
            .translate(dst, len, true)
            .ok_or_else(|| bad_access(dst, len, "write"))?;
        // SAFETY: translate proved both ranges lie inside live regions, the
        // second writable; ptr::copy allows them to overlap.
        unsafe { std::ptr::copy(from as *const u8, to, len as usize) };
        Ok(())
    }

    /// A NUL-terminated string starting at `addr`, without the NUL, reading
    /// at most `max` bytes.
    pub fn cstr(&self, addr: u64, max: u64) -> Result<&[u8], HelperError> {
        let avail = self.map.accessible_len(addr, false).min(max);
        let bytes = self.slice(addr, avail)?;
        match bytes.iter().position(|&b| b == 0) {
            Some(n) => Ok(&bytes[..n]),
            None if avail == max => Ok(bytes),
            None => Err(HelperError::Fault(format!(
                "string at 0x{addr:x} runs past the end of accessible memory"
            ))),
        }
    }

    /// The run's per-run state ([`crate::interp::RunSetup::state`]).
    pub fn run_state(&self) -> usize {
        self.map.state
    }

    /// Calls the program's function starting at slot `func` (a callback
    /// such as `bpf_loop`'s) with r1-r5 = `args`, in a new stack frame
    /// below the live ones, and returns its r0. Its instructions count
    /// towards the run's count and budget.
    pub fn call_function(&mut self, func: u64, args: [u64; 5]) -> Result<u64, HelperError> {
        self.map
            .invoke(func, args)
            .map_err(|e| HelperError::Exec(Box::new(e)))
    }

    /// The primary region `(lo, len)`: the input buffer or packet.
    pub fn input(&self) -> (u64, u64) {
        (self.map.mem_lo, self.map.mem_len)
    }

    /// Moves the primary region (packet head/tail adjustments). Engines
    /// loaded with [`crate::interp::LoadOptions::input_may_move`] see the
    /// change at once.
    pub fn set_input(&mut self, lo: u64, len: u64) {
        self.map.set_input(lo, len);
    }

    /// Ends access to a region granted with [`Self::grant`] (memory a
    /// helper is about to free).
    pub fn revoke(&mut self, ptr: *mut u8, len: usize) {
        self.map.revoke(ptr as u64, len as u64);
    }

    /// Makes `len` bytes at `ptr` accessible to the program for the rest of
    /// this run (memory a helper hands out, such as a record it returns).
    ///
    /// # Safety
    /// The memory must stay valid, and not be used elsewhere in a conflicting
    /// way, until the run ends.
    pub unsafe fn grant(&mut self, ptr: *mut u8, len: usize, writable: bool) {
        self.map.grant(ptr as u64, len as u64, writable);
    }
}

fn bad_access(addr: u64, len: u64, what: &str) -> HelperError {
    HelperError::Fault(format!(
        "helper tried to {what} {len} bytes at 0x{addr:x}, outside the program's memory"
    ))
}
