//! One typed error for everything a plugin can do wrong, always naming the plugin and its file.
use std::fmt;
use std::path::PathBuf;

/// A plugin's name and the file it came from, as errors print them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginId {
    /// The name from the plugin's `info` (or the file stem, before `info` is known).
    pub name: String,
    /// The `.wasm` file.
    pub path: PathBuf,
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin `{}` ({})", self.name, self.path.display())
    }
}

/// What the plugin itself reported through its `plugin-error` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    /// The plugin rejected its input.
    InvalidInput(String),
    /// The plugin does not support what was asked.
    Unsupported(String),
    /// The plugin failed internally.
    Internal(String),
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            GuestError::Unsupported(m) => write!(f, "unsupported: {m}"),
            GuestError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

/// Why a plugin's execution was stopped by the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapKind {
    /// The call used up its fuel: an endless loop, or a limit too low for the work.
    OutOfFuel {
        /// The fuel each call gets.
        fuel: u64,
    },
    /// The plugin tried to grow its memory past the cap.
    OutOfMemory {
        /// Bytes the plugin asked for in total.
        requested: u64,
        /// The cap, in bytes.
        cap: u64,
    },
    /// The plugin panicked; the message is the one its SDK handed over.
    Panic(String),
    /// The plugin called an import that the sandbox does not grant (a file, an env var, a clock, ...).
    CapabilityDenied(String),
    /// The instance was already dead after an earlier trap.
    Dead,
    /// Any other trap (an `unreachable`, a bad memory access, ...), with wasmtime's description.
    Other(String),
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::OutOfFuel { fuel } => write!(f, "ran out of fuel ({fuel} per call): it loops forever, or needs a higher `fuel` in [sandbox]"),
            TrapKind::OutOfMemory { requested, cap } => write!(
                f,
                "tried to grow its memory to {} MiB, past the cap of {} MiB (raise `memory_mib` in [sandbox] if that is expected)",
                requested >> 20,
                cap >> 20
            ),
            TrapKind::Panic(m) => write!(f, "panicked: {m}"),
            TrapKind::CapabilityDenied(import) => {
                write!(f, "called `{import}`, which the sandbox does not grant (grant env vars or clocks in [sandbox.grants])")
            }
            TrapKind::Dead => write!(f, "was stopped by an earlier trap; its instance cannot be used again"),
            TrapKind::Other(m) => write!(f, "trapped: {m}"),
        }
    }
}

/// Everything that can go wrong with a plugin. Each variant names the plugin and its file.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read, compiled or instantiated.
    #[error("cannot load plugin {}: {message}", path.display())]
    Load {
        /// The `.wasm` file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The plugin was built against another version of the `encore:plugin` API.
    #[error("{plugin} was built against encore:plugin@{found}, but this host speaks encore:plugin@{expected}: rebuild it with encore-sdk {expected}")]
    ApiMismatch {
        /// Which plugin.
        plugin: PluginId,
        /// The API version it declares.
        found: String,
        /// The API version this host implements.
        expected: String,
    },
    /// The plugin is of another kind than the one asked for.
    #[error("{plugin} is a {found} plugin, but a {expected} plugin is needed here")]
    WrongKind {
        /// Which plugin.
        plugin: PluginId,
        /// Its kind.
        found: String,
        /// The kind needed.
        expected: String,
    },
    /// The sandbox stopped the plugin.
    #[error("{plugin} {kind}")]
    Trap {
        /// Which plugin.
        plugin: PluginId,
        /// Why.
        kind: TrapKind,
    },
    /// The plugin returned an error of its own.
    #[error("{plugin} returned an error: {error}")]
    Returned {
        /// Which plugin.
        plugin: PluginId,
        /// What it said.
        error: GuestError,
    },
    /// The plugin returned something the host's validation refused.
    #[error("{plugin} returned an invalid result: {reason}")]
    InvalidResult {
        /// Which plugin.
        plugin: PluginId,
        /// What is wrong with it.
        reason: String,
    },
    /// The host refused to send an input the plugin could not hold.
    #[error("{plugin}: input too large: {reason}")]
    InputTooLarge {
        /// Which plugin.
        plugin: PluginId,
        /// Sizes involved.
        reason: String,
    },
}

impl PluginError {
    /// The trap kind, when the sandbox stopped the plugin.
    pub fn trap_kind(&self) -> Option<&TrapKind> {
        match self {
            PluginError::Trap { kind, .. } => Some(kind),
            _ => None,
        }
    }
}
