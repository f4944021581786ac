//! A safe wrapper over corosync's CPG client library, loaded at run time.
//!
//! `libcpg.so.4` is opened with `libloading` when [`Lib::load`] is called, and only the
//! functions used are looked up: `cpg_model_initialize` (model V1 with the deliver, confchg
//! and totem confchg callbacks, `CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF`), `cpg_fd_get`,
//! `cpg_dispatch` (`CS_DISPATCH_ALL`), `cpg_join`, `cpg_leave`, `cpg_mcast_joined`
//! (`CPG_TYPE_AGREED`), `cpg_local_get` and `cpg_finalize`.
//!
//! Guarantees:
//! - the structure layouts are those of `/usr/include/corosync/cpg.h` and `corotypes.h`
//!   (corosync 3.1.7), checked by a layout test (and, where a C compiler and the headers are
//!   present, against the headers themselves);
//! - a missing library is [`CpgError::Missing`], whose message says what to install; a
//!   library without one of the functions is [`CpgError::Symbol`];
//! - callbacks never call back into Rust code that could panic across the C frame: they copy
//!   what they are given into a per-thread queue that [`Cpg::dispatch`] hands back as
//!   [`CpgEvent`]s, in the order corosync called them;
//! - `CS_ERR_TRY_AGAIN` from `cpg_mcast_joined` is back-pressure ([`Mcast::TryAgain`]), not
//!   an error;
//! - the handle is finalized when the [`Cpg`] is dropped; the library stays loaded while any
//!   [`Cpg`] made from it lives.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::sync::Arc;

/// The library's file name, as the dynamic loader finds it.
pub const LIBRARY: &str = "libcpg.so.4";

/// `CPG_MAX_NAME_LENGTH`.
pub const CPG_MAX_NAME_LENGTH: usize = 128;
/// `CPG_MODEL_V1`.
const CPG_MODEL_V1: c_int = 1;
/// `CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF`.
const CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF: c_uint = 0x01;
/// `CS_DISPATCH_ALL`.
const CS_DISPATCH_ALL: c_int = 2;
/// `CPG_TYPE_AGREED`.
const CPG_TYPE_AGREED: c_int = 2;

/// `cpg_handle_t`.
pub type CpgHandle = u64;

/// `struct cpg_name`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CpgName {
    /// Bytes used of `value`.
    pub length: u32,
    /// The name (not NUL-terminated).
    pub value: [c_char; CPG_MAX_NAME_LENGTH],
}

impl CpgName {
    /// Returns the group name `name`; [`CpgError::NameTooLong`] past 128 bytes.
    pub fn new(name: &str) -> Result<Self, CpgError> {
        let b = name.as_bytes();
        if b.len() > CPG_MAX_NAME_LENGTH {
            return Err(CpgError::NameTooLong(b.len()));
        }
        let mut value = [0 as c_char; CPG_MAX_NAME_LENGTH];
        for (d, s) in value.iter_mut().zip(b) {
            *d = *s as c_char;
        }
        Ok(Self {
            length: b.len() as u32,
            value,
        })
    }
}

/// `struct cpg_address`: a process of the group.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpgAddress {
    /// Its node.
    pub nodeid: u32,
    /// Its process id there.
    pub pid: u32,
    /// Why it joined or left (`CPG_REASON_*`; 0 in member lists).
    pub reason: u32,
}

/// `struct cpg_ring_id`: the totem ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpgRingId {
    /// The representative's node id.
    pub nodeid: u32,
    /// The ring sequence number.
    pub seq: u64,
}

type DeliverFn = unsafe extern "C" fn(CpgHandle, *const CpgName, u32, u32, *mut c_void, usize);
type ConfchgFn = unsafe extern "C" fn(
    CpgHandle,
    *const CpgName,
    *const CpgAddress,
    usize,
    *const CpgAddress,
    usize,
    *const CpgAddress,
    usize,
);
type TotemConfchgFn = unsafe extern "C" fn(CpgHandle, CpgRingId, u32, *const u32);

/// `cpg_model_v1_data_t`.
#[repr(C)]
struct CpgModelV1Data {
    model: c_int,
    cpg_deliver_fn: Option<DeliverFn>,
    cpg_confchg_fn: Option<ConfchgFn>,
    cpg_totem_confchg_fn: Option<TotemConfchgFn>,
    flags: c_uint,
}

/// `struct iovec`.
#[repr(C)]
struct IoVec {
    base: *const c_void,
    len: usize,
}

type ModelInitializeFn =
    unsafe extern "C" fn(*mut CpgHandle, c_int, *mut CpgModelV1Data, *mut c_void) -> c_int;
type HandleFn = unsafe extern "C" fn(CpgHandle) -> c_int;
type FdGetFn = unsafe extern "C" fn(CpgHandle, *mut c_int) -> c_int;
type DispatchFn = unsafe extern "C" fn(CpgHandle, c_int) -> c_int;
type GroupFn = unsafe extern "C" fn(CpgHandle, *const CpgName) -> c_int;
type McastFn = unsafe extern "C" fn(CpgHandle, c_int, *const IoVec, c_uint) -> c_int;
type LocalGetFn = unsafe extern "C" fn(CpgHandle, *mut c_uint) -> c_int;

/// A `cs_error_t` other than `CS_OK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsError(pub i32);

impl CsError {
    /// `CS_ERR_LIBRARY`: the connection to corosync is gone.
    pub const LIBRARY: Self = Self(2);
    /// `CS_ERR_TRY_AGAIN`.
    pub const TRY_AGAIN: Self = Self(6);

    /// Returns corosync's name for the code.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "CS_OK",
            2 => "CS_ERR_LIBRARY",
            3 => "CS_ERR_VERSION",
            4 => "CS_ERR_INIT",
            5 => "CS_ERR_TIMEOUT",
            6 => "CS_ERR_TRY_AGAIN",
            7 => "CS_ERR_INVALID_PARAM",
            8 => "CS_ERR_NO_MEMORY",
            9 => "CS_ERR_BAD_HANDLE",
            10 => "CS_ERR_BUSY",
            11 => "CS_ERR_ACCESS",
            12 => "CS_ERR_NOT_EXIST",
            13 => "CS_ERR_NAME_TOO_LONG",
            14 => "CS_ERR_EXIST",
            15 => "CS_ERR_NO_SPACE",
            16 => "CS_ERR_INTERRUPT",
            17 => "CS_ERR_NAME_NOT_FOUND",
            18 => "CS_ERR_NO_RESOURCES",
            19 => "CS_ERR_NOT_SUPPORTED",
            20 => "CS_ERR_BAD_OPERATION",
            21 => "CS_ERR_FAILED_OPERATION",
            22 => "CS_ERR_MESSAGE_ERROR",
            23 => "CS_ERR_QUEUE_FULL",
            24 => "CS_ERR_QUEUE_NOT_AVAILABLE",
            25 => "CS_ERR_BAD_FLAGS",
            26 => "CS_ERR_TOO_BIG",
            27 => "CS_ERR_NO_SECTIONS",
            28 => "CS_ERR_CONTEXT_NOT_FOUND",
            30 => "CS_ERR_TOO_MANY_GROUPS",
            100 => "CS_ERR_SECURITY",
            _ => "unknown cs_error_t",
        }
    }
}

impl fmt::Display for CsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

fn check(call: &'static str, rc: c_int) -> Result<(), CpgError> {
    if rc == 1 {
        Ok(())
    } else {
        Err(CpgError::Call {
            call,
            err: CsError(rc),
        })
    }
}

/// Why a CPG call failed.
#[derive(Debug, thiserror::Error)]
pub enum CpgError {
    /// The library could not be opened.
    #[error(
        "corosync's CPG library (libcpg.so.4) is not installed: apt-get install corosync libcpg4 \
         ({0})"
    )]
    Missing(String),
    /// The library lacks a function.
    #[error("libcpg.so.4 has no {symbol}: {detail}")]
    Symbol {
        /// The function.
        symbol: &'static str,
        /// The loader's message.
        detail: String,
    },
    /// A call returned an error code.
    #[error("{call}: {err}")]
    Call {
        /// The function.
        call: &'static str,
        /// Its `cs_error_t`.
        err: CsError,
    },
    /// A group name longer than `CPG_MAX_NAME_LENGTH`.
    #[error("CPG group name of {0} bytes is longer than 128")]
    NameTooLong(usize),
}

impl CpgError {
    /// Returns whether corosync asked to try again (`CS_ERR_TRY_AGAIN`).
    pub fn is_try_again(&self) -> bool {
        matches!(self, Self::Call { err, .. } if *err == CsError::TRY_AGAIN)
    }
}

struct Fns {
    model_initialize: ModelInitializeFn,
    finalize: HandleFn,
    fd_get: FdGetFn,
    dispatch: DispatchFn,
    join: GroupFn,
    leave: GroupFn,
    mcast_joined: McastFn,
    local_get: LocalGetFn,
}

/// The loaded library.
#[derive(Clone)]
pub struct Lib {
    inner: Arc<(Fns, libloading::Library)>,
}

impl fmt::Debug for Lib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lib(libcpg.so.4)")
    }
}

impl Lib {
    /// Opens `libcpg.so.4` and looks up the functions used.
    pub fn load() -> Result<Self, CpgError> {
        Self::load_from(LIBRARY)
    }

    /// Opens the library at `path` (a file name the loader searches, or a path).
    pub fn load_from(path: &str) -> Result<Self, CpgError> {
        // SAFETY: loading libcpg runs its initialisers, which only set up libqb's logging.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| CpgError::Missing(e.to_string()))?;
        macro_rules! sym {
            ($name:literal, $ty:ty) => {{
                // SAFETY: the type is the function's prototype in cpg.h.
                let s: libloading::Symbol<'_, $ty> = unsafe {
                    lib.get(concat!($name, "\0").as_bytes())
                }
                .map_err(|e| CpgError::Symbol {
                    symbol: $name,
                    detail: e.to_string(),
                })?;
                *s
            }};
        }
        let fns = Fns {
            model_initialize: sym!("cpg_model_initialize", ModelInitializeFn),
            finalize: sym!("cpg_finalize", HandleFn),
            fd_get: sym!("cpg_fd_get", FdGetFn),
            dispatch: sym!("cpg_dispatch", DispatchFn),
            join: sym!("cpg_join", GroupFn),
            leave: sym!("cpg_leave", GroupFn),
            mcast_joined: sym!("cpg_mcast_joined", McastFn),
            local_get: sym!("cpg_local_get", LocalGetFn),
        };
        Ok(Self {
            inner: Arc::new((fns, lib)),
        })
    }

    fn fns(&self) -> &Fns {
        &self.inner.0
    }
}

/// What a dispatch handed back, in corosync's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpgEvent {
    /// A message multicast to the group.
    Deliver {
        /// The sender's node.
        nodeid: u32,
        /// The sender's process id.
        pid: u32,
        /// The message.
        data: Vec<u8>,
    },
    /// The group's process membership changed.
    Confchg {
        /// The processes in the group now.
        members: Vec<CpgAddress>,
        /// Those that left.
        left: Vec<CpgAddress>,
        /// Those that joined.
        joined: Vec<CpgAddress>,
    },
    /// The totem ring changed (and once at start: the ring then).
    TotemConfchg {
        /// The ring.
        ring: CpgRingId,
        /// Its members (node ids).
        members: Vec<u32>,
    },
}

thread_local! {
    /// What the callbacks were handed, by handle, until `dispatch` takes it.
    static PENDING: RefCell<Vec<(CpgHandle, CpgEvent)>> = const { RefCell::new(Vec::new()) };
}

fn push(handle: CpgHandle, e: CpgEvent) {
    PENDING.with(|p| p.borrow_mut().push((handle, e)));
}

/// Copies `n` entries at `p` (none when null).
///
/// # Safety
/// `p` is null or points to `n` valid `T`s.
unsafe fn slice<T: Copy>(p: *const T, n: usize) -> Vec<T> {
    if p.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(p, n) }.to_vec()
}

unsafe extern "C" fn on_deliver(
    handle: CpgHandle,
    _group: *const CpgName,
    nodeid: u32,
    pid: u32,
    msg: *mut c_void,
    len: usize,
) {
    // SAFETY: libcpg hands `len` bytes at `msg`.
    let data = unsafe { slice(msg as *const u8, len) };
    push(handle, CpgEvent::Deliver { nodeid, pid, data });
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn on_confchg(
    handle: CpgHandle,
    _group: *const CpgName,
    members: *const CpgAddress,
    n_members: usize,
    left: *const CpgAddress,
    n_left: usize,
    joined: *const CpgAddress,
    n_joined: usize,
) {
    // SAFETY: libcpg hands arrays of the lengths given.
    let e = unsafe {
        CpgEvent::Confchg {
            members: slice(members, n_members),
            left: slice(left, n_left),
            joined: slice(joined, n_joined),
        }
    };
    push(handle, e);
}

unsafe extern "C" fn on_totem_confchg(
    handle: CpgHandle,
    ring: CpgRingId,
    n_members: u32,
    members: *const u32,
) {
    // SAFETY: libcpg hands an array of `n_members` node ids.
    let members = unsafe { slice(members, n_members as usize) };
    push(handle, CpgEvent::TotemConfchg { ring, members });
}

/// Whether a multicast went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mcast {
    /// corosync took it.
    Sent,
    /// corosync's queue is full (`CS_ERR_TRY_AGAIN`): back-pressure, try later.
    TryAgain,
}

/// One connection to corosync's CPG service.
#[derive(Debug)]
pub struct Cpg {
    lib: Lib,
    handle: CpgHandle,
}

impl Cpg {
    /// Connects (`cpg_model_initialize`, model V1, the initial totem configuration asked
    /// for); fails with `CS_ERR_LIBRARY` while corosync is not up.
    pub fn initialize(lib: &Lib) -> Result<Self, CpgError> {
        let mut model = CpgModelV1Data {
            model: CPG_MODEL_V1,
            cpg_deliver_fn: Some(on_deliver),
            cpg_confchg_fn: Some(on_confchg),
            cpg_totem_confchg_fn: Some(on_totem_confchg),
            flags: CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
        };
        let mut handle: CpgHandle = 0;
        // SAFETY: valid pointers for the call; libcpg copies the model data.
        let rc = unsafe {
            (lib.fns().model_initialize)(
                &mut handle,
                CPG_MODEL_V1,
                &mut model,
                std::ptr::null_mut(),
            )
        };
        check("cpg_model_initialize", rc)?;
        Ok(Self {
            lib: lib.clone(),
            handle,
        })
    }

    /// Returns the file descriptor that becomes readable when there is something to
    /// dispatch.
    pub fn fd(&self) -> Result<i32, CpgError> {
        let mut fd: c_int = -1;
        // SAFETY: a live handle and a valid pointer.
        check("cpg_fd_get", unsafe {
            (self.lib.fns().fd_get)(self.handle, &mut fd)
        })?;
        Ok(fd)
    }

    /// Runs every callback waiting (`CS_DISPATCH_ALL`, which does not block) and returns
    /// what they were handed, in order.
    pub fn dispatch(&self) -> Result<Vec<CpgEvent>, CpgError> {
        // SAFETY: a live handle.
        let rc = unsafe { (self.lib.fns().dispatch)(self.handle, CS_DISPATCH_ALL) };
        let taken = self.take();
        match check("cpg_dispatch", rc) {
            Ok(()) => Ok(taken),
            Err(e) if e.is_try_again() => Ok(taken),
            Err(e) => Err(e),
        }
    }

    fn take(&self) -> Vec<CpgEvent> {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let (mine, others): (Vec<_>, Vec<_>) =
                p.drain(..).partition(|(h, _)| *h == self.handle);
            *p = others;
            mine.into_iter().map(|(_, e)| e).collect()
        })
    }

    /// Joins group `name`.
    pub fn join(&self, name: &str) -> Result<(), CpgError> {
        let n = CpgName::new(name)?;
        // SAFETY: a live handle and a valid name.
        check("cpg_join", unsafe {
            (self.lib.fns().join)(self.handle, &n)
        })
    }

    /// Leaves group `name`.
    pub fn leave(&self, name: &str) -> Result<(), CpgError> {
        let n = CpgName::new(name)?;
        // SAFETY: a live handle and a valid name.
        check("cpg_leave", unsafe {
            (self.lib.fns().leave)(self.handle, &n)
        })
    }

    /// Multicasts the concatenation of `parts` to the joined group in agreed order.
    pub fn mcast(&self, parts: &[&[u8]]) -> Result<Mcast, CpgError> {
        let iov: Vec<IoVec> = parts
            .iter()
            .map(|p| IoVec {
                base: p.as_ptr() as *const c_void,
                len: p.len(),
            })
            .collect();
        // SAFETY: the iovecs point into `parts`, alive for the call.
        let rc = unsafe {
            (self.lib.fns().mcast_joined)(
                self.handle,
                CPG_TYPE_AGREED,
                iov.as_ptr(),
                iov.len() as c_uint,
            )
        };
        match check("cpg_mcast_joined", rc) {
            Ok(()) => Ok(Mcast::Sent),
            Err(e) if e.is_try_again() => Ok(Mcast::TryAgain),
            Err(e) => Err(e),
        }
    }

    /// Returns this node's id as corosync knows it.
    pub fn local_nodeid(&self) -> Result<u32, CpgError> {
        let mut id: c_uint = 0;
        // SAFETY: a live handle and a valid pointer.
        check("cpg_local_get", unsafe {
            (self.lib.fns().local_get)(self.handle, &mut id)
        })?;
        Ok(id)
    }
}

impl Drop for Cpg {
    fn drop(&mut self) {
        // SAFETY: the handle is live until here and not used after.
        let rc = unsafe { (self.lib.fns().finalize)(self.handle) };
        if rc != 1 {
            tracing::debug!(err = %CsError(rc), "cpg_finalize");
        }
        self.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts_match_cpg_h() {
        assert_eq!(size_of::<CpgName>(), 132);
        assert_eq!(offset_of!(CpgName, value), 4);
        assert_eq!(size_of::<CpgAddress>(), 12);
        assert_eq!(offset_of!(CpgAddress, pid), 4);
        assert_eq!(offset_of!(CpgAddress, reason), 8);
        assert_eq!(size_of::<CpgRingId>(), 16);
        assert_eq!(align_of::<CpgRingId>(), 8);
        assert_eq!(offset_of!(CpgRingId, seq), 8);
        assert_eq!(size_of::<CpgModelV1Data>(), 40);
        assert_eq!(offset_of!(CpgModelV1Data, cpg_deliver_fn), 8);
        assert_eq!(offset_of!(CpgModelV1Data, cpg_confchg_fn), 16);
        assert_eq!(offset_of!(CpgModelV1Data, cpg_totem_confchg_fn), 24);
        assert_eq!(offset_of!(CpgModelV1Data, flags), 32);
        assert_eq!(size_of::<IoVec>(), 16);
        assert_eq!(size_of::<CpgHandle>(), 8);
    }

    /// Compiles a C program against the installed headers, where there are both a C
    /// compiler and the headers, and compares its sizes and offsets with ours.
    #[test]
    fn layouts_match_the_installed_headers() {
        let header = std::path::Path::new("/usr/include/corosync/cpg.h");
        let cc = std::process::Command::new("cc").arg("--version").output();
        if !header.exists() || cc.is_err() {
            eprintln!("skipped: no C compiler or no /usr/include/corosync/cpg.h");
            return;
        }
        let dir = std::env::temp_dir().join(format!("ringlab-cpg-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("l.c");
        std::fs::write(
            &src,
            r#"#include <stdio.h>
#include <stddef.h>
#include <corosync/cpg.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %d %d %d %d\n",
    sizeof(struct cpg_name), offsetof(struct cpg_name, value),
    sizeof(struct cpg_address), offsetof(struct cpg_address, reason),
    sizeof(struct cpg_ring_id), offsetof(struct cpg_ring_id, seq),
    sizeof(cpg_model_v1_data_t), offsetof(cpg_model_v1_data_t, cpg_totem_confchg_fn),
    offsetof(cpg_model_v1_data_t, flags), sizeof(cpg_handle_t), sizeof(cs_error_t),
    (int)CPG_MODEL_V1, (int)CS_DISPATCH_ALL, (int)CPG_TYPE_AGREED,
    (int)CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF);
  return 0;
}
"#,
        )
        .unwrap();
        let bin = dir.join("l");
        let built = std::process::Command::new("cc")
            .arg(&src)
            .arg("-o")
            .arg(&bin)
            .status()
            .unwrap();
        assert!(built.success(), "cc failed on the layout program");
        let out = std::process::Command::new(&bin).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let got = String::from_utf8(out.stdout).unwrap();
        let want = format!(
            "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {}\n",
            size_of::<CpgName>(),
            offset_of!(CpgName, value),
            size_of::<CpgAddress>(),
            offset_of!(CpgAddress, reason),
            size_of::<CpgRingId>(),
            offset_of!(CpgRingId, seq),
            size_of::<CpgModelV1Data>(),
            offset_of!(CpgModelV1Data, cpg_totem_confchg_fn),
            offset_of!(CpgModelV1Data, flags),
            size_of::<CpgHandle>(),
            size_of::<c_int>(),
            CPG_MODEL_V1,
            CS_DISPATCH_ALL,
            CPG_TYPE_AGREED,
            CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
        );
        assert_eq!(got, want);
    }

    #[test]
    fn a_missing_library_says_what_to_install() {
        let e = Lib::load_from("libcpg-not-here.so.4").unwrap_err();
        assert!(matches!(e, CpgError::Missing(_)));
        assert!(
            e.to_string().contains("apt-get install corosync libcpg4"),
            "{e}"
        );
    }

    #[test]
    fn names_are_bounded_and_codes_named() {
        assert_eq!(CpgName::new("ringlab").unwrap().length, 7);
        assert!(matches!(
            CpgName::new(&"x".repeat(129)),
            Err(CpgError::NameTooLong(129))
        ));
        assert_eq!(CsError::TRY_AGAIN.to_string(), "CS_ERR_TRY_AGAIN (6)");
    }
}
