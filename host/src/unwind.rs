//! Containing panics of dependencies that read untrusted input (symphonia and rubato on audio
//! clips, the parquet crate on rankings files): a panic becomes the message of one input's
//! error, so one hostile file costs that file, never the run.

/// Runs `f`, turning a panic into its message and location. The panic hook stays quiet for
/// contained panics (the message goes into the input's error instead of stderr) and passes every
/// other panic on to the hook that was installed before.
pub(crate) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    use std::cell::{Cell, RefCell};
    thread_local! {
        static CONTAINED: Cell<bool> = const { Cell::new(false) };
        static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(Cell::get) {
                let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
                let msg = info.payload_as_str().unwrap_or("a panic without a message");
                LAST.with(|last| *last.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                previous(info);
            }
        }));
    });
    let was = CONTAINED.with(|c| c.replace(true));
    // AssertUnwindSafe: callers look at nothing `f` touched after a panic (audio: the decoder,
    // the resampler and their buffers are local to the call and dropped while unwinding).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    result.map_err(|payload| {
        LAST.with(|last| last.borrow_mut().take()).unwrap_or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into())
        })
    })
}
