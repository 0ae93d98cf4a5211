//! The wasmtime sandbox every plugin runs in.
//!
//! - One [`Engine`] per [`Runtime`], with fuel metering on.
//! - Compiled components are cached on disk, keyed by a SHA-256 of the `.wasm`, the wasmtime
//!   version and the engine's compatibility hash, so a second load costs a file read instead of a
//!   compilation. The entries are native code, so each is loaded only after its MAC checks out
//!   ([`CompileCache`]).
//! - One [`Store`] per plugin instance, with a memory cap, a fuel budget per call, and no
//!   capabilities: the host links its own `encore:plugin/host` interface, and every other import a
//!   component declares (WASI's cli, io, filesystem, clocks, ...) becomes a stub that stops the
//!   plugin with [`TrapKind::CapabilityDenied`] when called. Environment variables and clocks can
//!   be granted one by one in the config.
//!
//! Extractor plugins also get `encore:plugin/host-models`, backed by the runtime's
//! [`ModelRegistry`]; other kinds that import it get the denying stubs.
//!
//! We link our own denying stubs instead of `wasmtime-wasi` with nothing granted: the result for a
//! plugin is the same (no file, env, clock or network), the host builds ~10 minutes faster, and a
//! denied call is reported by name instead of as an opaque I/O error inside the guest.
use super::error::{GuestError, PluginError, PluginId, TrapKind};
use crate::hostmodels::{ModelError, ModelRegistry};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};
use wasmtime::{Config, Engine, Store, StoreContextMut};

/// The `encore:plugin` API version this host implements: `wit/encore-plugin.wit`'s package
/// version, read at build time (host/build.rs), so no copy of it can drift.
pub const API_VERSION: &str = env!("ENCORE_PLUGIN_API");
/// wasmtime's version, part of the compilation cache key (the crate is pinned in Cargo.toml).
const WASMTIME_VERSION: &str = "48.0.8";
const HOST_INTERFACE: &str = concat!("encore:plugin/host@", env!("ENCORE_PLUGIN_API"));
const HOST_MODELS_INTERFACE: &str = concat!("encore:plugin/host-models@", env!("ENCORE_PLUGIN_API"));

/// Sandbox limits and grants, from the `[sandbox]` table of a config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Linear-memory cap per plugin instance, in MiB.
    pub memory_mib: u64,
    /// Fuel per call (about one unit per Wasm instruction).
    pub fuel: u64,
    /// Capabilities granted to every plugin. Nothing by default.
    pub grants: Grants,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig { memory_mib: 256, fuel: 20_000_000_000, grants: Grants::default() }
    }
}

/// Capabilities a config may grant. Filesystem, network and process access cannot be granted:
/// pass data to plugins through their parameters and inputs instead.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Environment variables the plugin may read (only these, with their values at load time).
    pub env: Vec<String>,
    /// Whether the plugin may read the wall clock and the monotonic clock.
    pub clock: bool,
}

/// The kinds of plugin, one per WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// World `extractor-plugin`.
    Extractor,
    /// World `fusion-plugin`.
    Fusion,
    /// World `metric-plugin`.
    Metric,
}

impl PluginKind {
    fn interface(self) -> &'static str {
        match self {
            PluginKind::Extractor => "extractor",
            PluginKind::Fusion => "fusion",
            PluginKind::Metric => "metric",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.interface())
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Its name, used to refer to it in configs.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// Its kind.
    pub kind: PluginKind,
    /// The `encore:plugin` API version it was built against.
    pub api: String,
    /// One line on what it does.
    pub description: String,
}

/// The sandbox: an engine, limits, grants and the compilation cache.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    config: Arc<SandboxConfig>,
    cache: Option<Arc<CompileCache>>,
    models: ModelRegistry,
}

/// The default compilation cache: `$ENCORE_CACHE_DIR`, else `$XDG_CACHE_HOME/encore`, else
/// `~/.cache/encore`, with `wasm/` appended.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("ENCORE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("encore")))
        .or_else(|| std::env::var_os("HOME").map(|p| PathBuf::from(p).join(".cache/encore")))?;
    Some(base.join("wasm"))
}

impl Runtime {
    /// A runtime with these limits. `cache_dir: None` compiles every time; so does a cache
    /// directory that cannot be made private to this user (with a warning saying why).
    pub fn new(config: SandboxConfig, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        if config.memory_mib == 0 || config.fuel == 0 {
            anyhow::bail!("[sandbox] memory_mib and fuel must be positive");
        }
        memory_cap_bytes(config.memory_mib).map_err(|e| anyhow::anyhow!("[sandbox] memory_mib: {e}"))?;
        let mut cfg = Config::new();
        cfg.wasm_component_model(true);
        cfg.consume_fuel(true);
        let engine = Engine::new(&cfg).map_err(|e| anyhow::anyhow!("creating the wasmtime engine: {e}"))?;
        let cache = cache_dir.and_then(|dir| match CompileCache::open(&dir) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!("not caching compiled plugins in {}: {e}", dir.display());
                None
            }
        });
        Ok(Runtime { engine, config: Arc::new(config), cache, models: ModelRegistry::new() })
    }

    /// The same runtime, with `models` as the models extractor plugins can call (by default, an
    /// empty registry that resolves names from `ENCORE_MODEL_<NAME>`).
    pub fn with_models(mut self, models: ModelRegistry) -> Self {
        self.models = models;
        self
    }

    /// The models extractor plugins can call.
    pub fn models(&self) -> &ModelRegistry {
        &self.models
    }

    /// The sandbox limits in force.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Compiles (or loads from the cache) a plugin, checks its API version and reads its `info`.
    pub fn load(&self, path: &Path) -> Result<Plugin, PluginError> {
        let load_err = |message: String| PluginError::Load { path: path.to_path_buf(), message };
        let bytes = std::fs::read(path).map_err(|e| load_err(format!("reading the file: {e}")))?;
        let component = self.compile(&bytes).map_err(|e| load_err(format!("{e:#}")))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut id = PluginId { name: stem, path: path.to_path_buf() };

        // The exported interfaces tell the API version and the kind before any code runs.
        let exports: Vec<String> = component.component_type().exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let plugin_export = exports.iter().find_map(|e| e.strip_prefix("encore:plugin/plugin@"));
        let Some(found) = plugin_export else {
            return Err(load_err(format!(
                "not an encore plugin: it exports no `encore:plugin/plugin` interface (it exports: {})",
                if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
            )));
        };
        if found != API_VERSION {
            return Err(PluginError::ApiMismatch { plugin: id, found: found.to_string(), expected: API_VERSION.into() });
        }
        let kinds: Vec<PluginKind> = [PluginKind::Extractor, PluginKind::Fusion, PluginKind::Metric]
            .into_iter()
            .filter(|k| exports.iter().any(|e| *e == format!("encore:plugin/{}@{API_VERSION}", k.interface())))
            .collect();
        let kind = match kinds.as_slice() {
            [k] => *k,
            _ => {
                return Err(load_err(format!(
                    "a plugin exports exactly one of the extractor, fusion and metric interfaces; this one exports: {}",
                    exports.join(", ")
                )))
            }
        };

        let mut plugin = Plugin { runtime: self.clone(), id: id.clone(), component, kind, info: None };
        let (mut store, linker) = plugin.sandbox()?;
        let any =
            super::bindings::any::AnyPlugin::instantiate(&mut store, &plugin.component, &linker).map_err(|e| load_err(format!("instantiating: {e:#}")))?;
        let info = plugin.call(&mut store, |s| any.encore_plugin_plugin().call_info(s))?;
        let info =
            PluginInfo { name: info.name, version: info.version, kind: super::bindings::any_kind(info.kind), api: info.api, description: info.description };
        id.name = info.name.clone();
        if info.api != API_VERSION {
            return Err(PluginError::ApiMismatch { plugin: id, found: info.api, expected: API_VERSION.into() });
        }
        if info.kind != kind {
            return Err(PluginError::InvalidResult {
                plugin: id,
                reason: format!("`info` says kind {}, but the component exports the {kind} interface", info.kind),
            });
        }
        if info.name.is_empty() || !info.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(PluginError::InvalidResult { plugin: id, reason: format!("name {:?} must be non-empty ASCII letters, digits, `-` or `_`", info.name) });
        }
        plugin.id = id;
        plugin.info = Some(info);
        Ok(plugin)
    }

    fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let Some(cache) = &self.cache else {
            return Component::from_binary(&self.engine, bytes).map_err(|e| anyhow::anyhow!("{e:#}"));
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let digest = Sha256::digest(bytes);
        let name = format!("{}-wasmtime{WASMTIME_VERSION}-{:016x}", hex(&digest), h.finish());
        if let Some(c) = cache.get(&self.engine, &name) {
            return Ok(c);
        }
        let component = Component::from_binary(&self.engine, bytes).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // A cache that cannot be written only costs time; never fail the load for it.
        match component.serialize() {
            Ok(serialized) => {
                if let Err(e) = cache.put(&name, &serialized) {
                    tracing::debug!("not caching compiled plugin {name} in {}: {e}", cache.dir.display());
                }
            }
            Err(e) => tracing::debug!("not caching compiled plugin {name}: {e}"),
        }
        Ok(component)
    }
}

/// `memory_mib` in bytes, checked: the product must not overflow (`17592186044416 << 20` wrapped
/// to a cap of 0 bytes) nor exceed the machine's physical memory. The error says which limit was
/// crossed; callers name the setting (`--memory-mib`, `[sandbox] memory_mib`).
pub fn memory_cap_bytes(memory_mib: u64) -> Result<u64, String> {
    let bytes = memory_mib.checked_mul(1 << 20).ok_or_else(|| format!("{memory_mib} MiB does not fit in 64 bits of bytes"))?;
    if let Some(total) = crate::io::physical_memory() {
        if bytes > total {
            return Err(format!("{memory_mib} MiB is more than this machine's {} MiB of memory", total >> 20));
        }
    }
    if bytes == 0 {
        return Err("must be positive".into());
    }
    Ok(bytes)
}

/// The on-disk compilation cache. Its entries are native code that wasmtime maps executable
/// without checking it, so a bit flipped on disk, or an entry planted by someone who can write
/// the directory, crashes the host or runs as it. Each `<name>.cwasm` is therefore deserialized
/// only after its HMAC-SHA256, kept apart in `<name>.cwasm.mac`, matches; the MAC key is random,
/// made on first use, and never leaves this cache (`cache.key`, mode 0600, in a directory of mode
/// 0700 owned by this user). An entry that fails the check is compiled again, with a warning.
pub struct CompileCache {
    dir: PathBuf,
    key: [u8; 32],
}

/// The MAC key's file name in the cache directory.
pub const CACHE_KEY_FILE: &str = "cache.key";

impl CompileCache {
    /// Opens (creating it private when missing) the cache in `dir`, with its key.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        private_dir(dir)?;
        let key = cache_key(&dir.join(CACHE_KEY_FILE))?;
        Ok(CompileCache { dir: dir.to_path_buf(), key })
    }

    fn entry(&self, name: &str) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("{name}.cwasm")), self.dir.join(format!("{name}.cwasm.mac")))
    }

    /// The entry's MAC, hex: over its name too, so an entry renamed to another key fails.
    fn mac(&self, name: &str, bytes: &[u8]) -> String {
        hex(&hmac_sha256(&self.key, &[name.as_bytes(), &[0], bytes]))
    }

    /// The cached component `name`, if present and its MAC matches.
    fn get(&self, engine: &Engine, name: &str) -> Option<Component> {
        let (file, mac_file) = self.entry(name);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read the cache entry {}: {e}; compiling the plugin again", file.display());
                return None;
            }
        };
        let Ok(stored) = std::fs::read(&mac_file) else {
            // Expected once per entry after an upgrade from a cache without MACs.
            tracing::info!("the cache entry {} has no MAC; compiling the plugin again", file.display());
            return None;
        };
        // Compared in constant time: the time a mismatch takes tells nothing about the MAC.
        let want = self.mac(name, &bytes);
        let same = stored.len() == want.len() && stored.iter().zip(want.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            tracing::warn!(
                "the cache entry {} does not match its MAC ({}): damaged, or not written by this cache; compiling the plugin again",
                file.display(),
                mac_file.display()
            );
            return None;
        }
        // SAFETY: wasmtime requires bytes that its own `serialize` produced for a compatible
        // engine. The MAC proves `put` wrote exactly these bytes under this name, from
        // `Component::serialize` of this host; the name carries wasmtime's version and the
        // engine's compatibility hash. They are deserialized from this verified copy in memory,
        // not from the file, which could change after the check.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("ignoring the unreadable cache entry {}: {e}", file.display());
                None
            }
        }
    }

    /// Stores `bytes` as entry `name`: the entry, then its MAC, each written privately and
    /// renamed into place. A reader that sees one without the other finds a mismatch and compiles.
    fn put(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let (file, mac_file) = self.entry(name);
        write_private(&file, bytes)?;
        write_private(&mac_file, self.mac(name, bytes).as_bytes())
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`, for keys of at most 64 bytes. Written over
/// `sha2` because the `hmac` crate is not otherwise in the tree; tested against RFC 4231.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    assert!(key.len() <= 64, "longer keys are hashed first; ours are 32 bytes");
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Why file metadata is not private to this user, if it is not.
fn not_private(meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Some(format!("owned by uid {}, not by this user (uid {me})", meta.uid()));
        }
        if meta.mode() & 0o077 != 0 {
            return Some(format!("open to other users (mode {:o})", meta.mode() & 0o777));
        }
    }
    let _ = meta;
    None
}

/// Creates `dir` (mode 0700), or checks it is this user's and closes it to others.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(dir)?;
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(std::io::Error::other(format!("{} is owned by uid {}, not by this user (uid {me})", dir.display(), meta.uid())));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// The cache's MAC key at `path`: read when it is 32 bytes private to this user, else (re)made.
fn cache_key(path: &Path) -> std::io::Result<[u8; 32]> {
    use rand::RngCore;
    use std::io::Read;
    for _ in 0..3 {
        match std::fs::File::open(path) {
            Ok(mut f) => {
                let meta = f.metadata()?;
                let problem = not_private(&meta).or_else(|| (meta.len() != 32).then(|| format!("{} bytes long instead of 32", meta.len())));
                match problem {
                    None => {
                        let mut key = [0u8; 32];
                        f.read_exact(&mut key)?;
                        return Ok(key);
                    }
                    Some(why) => {
                        tracing::warn!("the compile cache's key {} is {why}; making a new one (cached plugins compile again)", path.display());
                        std::fs::remove_file(path)?;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let tmp = private_temp(path);
        write_new_private(&tmp, &key)?;
        // A link never replaces a file: when two processes make the key at once, one link wins
        // and the other process reads the winner's key on the next pass.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!("{} kept changing while it was read", path.display())))
}

/// A temporary name next to `path`, unique to this process and call: threads of one process may
/// write the same entry at once.
fn private_temp(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Creates `path` (it must not exist) with mode 0600 and writes `bytes`, synced.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes `path` privately (mode 0600) through a temporary file renamed into place.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = private_temp(path);
    let result = write_new_private(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// State the host keeps per plugin instance.
pub struct HostState {
    plugin: String,
    memory_cap: u64,
    memory_requested: Option<u64>,
    panic: Option<String>,
    denied: Option<String>,
    dead: bool,
}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_cap {
            self.memory_requested = Some(desired as u64);
            wasmtime::bail!("memory cap of {} bytes reached", self.memory_cap);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// A loaded, checked plugin. Cheap to clone; instantiate it as many times as needed.
#[derive(Clone)]
pub struct Plugin {
    runtime: Runtime,
    id: PluginId,
    component: Component,
    /// From its exports, known before `info` is read.
    kind: PluginKind,
    info: Option<PluginInfo>,
}

impl Plugin {
    /// Name and file, for error messages.
    pub fn id(&self) -> &PluginId {
        &self.id
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> &PluginInfo {
        self.info.as_ref().expect("info is read at load")
    }

    /// Fails unless the plugin is of `kind`.
    pub fn expect_kind(&self, kind: PluginKind) -> Result<(), PluginError> {
        if self.info().kind == kind {
            Ok(())
        } else {
            Err(PluginError::WrongKind { plugin: self.id.clone(), found: self.info().kind.to_string(), expected: kind.to_string() })
        }
    }

    /// The component, for instantiation with generated bindings.
    pub(crate) fn component(&self) -> &Component {
        &self.component
    }

    /// A fresh store (memory cap, fuel) and a linker that offers the host interface, the granted
    /// capabilities, and a denying stub for every other import.
    pub(crate) fn sandbox(&self) -> Result<(Store<HostState>, Linker<HostState>), PluginError> {
        let cfg = &self.runtime.config;
        let state = HostState { plugin: self.id.name.clone(), memory_cap: self.memory_cap(), memory_requested: None, panic: None, denied: None, dead: false };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| s);
        // Instantiation runs the component's start code, which burns fuel too.
        store.set_fuel(cfg.fuel).expect("fuel is enabled");
        let linker = self.linker().map_err(|e| PluginError::Load { path: self.id.path.clone(), message: format!("linking its imports: {e:#}") })?;
        Ok((store, linker))
    }

    fn linker(&self) -> wasmtime::Result<Linker<HostState>> {
        use super::bindings::any::encore::plugin::host::LogLevel;
        let engine = &self.runtime.engine;
        let mut linker = Linker::new(engine);
        {
            let mut host = linker.instance(HOST_INTERFACE)?;
            host.func_wrap("log", |cx: StoreContextMut<'_, HostState>, (level, msg): (LogLevel, String)| {
                let plugin = &cx.data().plugin;
                match level {
                    LogLevel::Debug => tracing::debug!(plugin, "{msg}"),
                    LogLevel::Info => tracing::info!(plugin, "{msg}"),
                    LogLevel::Warn => tracing::warn!(plugin, "{msg}"),
                    LogLevel::Error => tracing::error!(plugin, "{msg}"),
                }
                Ok(())
            })?;
            host.func_wrap("panicked", |mut cx: StoreContextMut<'_, HostState>, (msg,): (String,)| {
                cx.data_mut().panic = Some(msg);
                Ok(())
            })?;
        }
        let models = self.kind == PluginKind::Extractor;
        if models {
            link_models(&mut linker, &self.runtime.models)?;
        }
        let grants = &self.runtime.config.grants;
        for (name, item) in self.component.component_type().imports(engine) {
            if name == HOST_INTERFACE || (models && name == HOST_MODELS_INTERFACE) {
                continue;
            }
            match item.ty {
                ComponentItem::ComponentInstance(instance) => {
                    let mut li = linker.instance(name)?;
                    for (func, item) in instance.exports(engine) {
                        match item.ty {
                            ComponentItem::ComponentFunc(_) if !grant(&mut li, name, func, grants)? => {
                                deny(&mut li, format!("{name}#{func}"), func)?;
                            }
                            ComponentItem::Resource(_) => {
                                li.resource(func, ResourceType::host::<Denied>(), |_, _| Ok(()))?;
                            }
                            _ => {}
                        }
                    }
                }
                ComponentItem::ComponentFunc(_) => deny(&mut linker.root(), name.to_string(), name)?,
                ComponentItem::Resource(_) => {
                    linker.root().resource(name, ResourceType::host::<Denied>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
        Ok(linker)
    }

    /// Runs one call into the plugin with a fresh fuel budget, and turns any failure into a typed
    /// error naming the plugin. After a trap the instance is marked dead.
    pub(crate) fn call<R>(&self, store: &mut Store<HostState>, f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>) -> Result<R, PluginError> {
        if store.data().dead {
            return Err(PluginError::Trap { plugin: self.id.clone(), kind: TrapKind::Dead });
        }
        store.set_fuel(self.runtime.config.fuel).expect("fuel is enabled");
        match f(store) {
            Ok(r) => Ok(r),
            Err(e) => {
                let state = store.data_mut();
                state.dead = true;
                let kind = if let Some(msg) = state.panic.take() {
                    TrapKind::Panic(msg)
                } else if let Some(import) = state.denied.take() {
                    TrapKind::CapabilityDenied(import)
                } else if let Some(requested) = state.memory_requested.take() {
                    TrapKind::OutOfMemory { requested, cap: state.memory_cap }
                } else if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::OutOfFuel)) {
                    TrapKind::OutOfFuel { fuel: self.runtime.config.fuel }
                } else {
                    TrapKind::Other(format!("{e:#}"))
                };
                Err(PluginError::Trap { plugin: self.id.clone(), kind })
            }
        }
    }

    /// Maps the plugin's own `plugin-error` to the host's typed error.
    pub(crate) fn returned(&self, error: GuestError) -> PluginError {
        PluginError::Returned { plugin: self.id.clone(), error }
    }

    /// A host-side validation failure.
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> PluginError {
        PluginError::InvalidResult { plugin: self.id.clone(), reason: reason.into() }
    }

    /// The memory cap in bytes, so callers can refuse inputs that cannot fit before sending them.
    pub(crate) fn memory_cap(&self) -> u64 {
        // `Runtime::new` refused values that overflow; saturating is belt and braces.
        self.runtime.config.memory_mib.saturating_mul(1 << 20)
    }
}

/// Links `encore:plugin/host-models` to `models`. Host-side failures reach the plugin as a
/// `plugin-error` that names the model and what to do; the plugin decides whether to pass it on.
fn link_models(linker: &mut Linker<HostState>, models: &ModelRegistry) -> wasmtime::Result<()> {
    use super::bindings::extractor::encore::plugin::host_models::ModelInfo;
    use super::bindings::types::PluginError as E;
    fn wit(e: ModelError) -> E {
        let m = e.to_string();
        match e {
            ModelError::Unknown { .. } | ModelError::Load { .. } => E::Unsupported(m),
            ModelError::WrongKind { .. } | ModelError::Input { .. } => E::InvalidInput(m),
            ModelError::Run { .. } => E::Internal(m),
        }
    }
    let mut li = linker.instance(HOST_MODELS_INTERFACE)?;
    let m = models.clone();
    li.func_wrap("describe", move |_cx: StoreContextMut<'_, HostState>, (model,): (String,)| {
        Ok((m.describe(&model).map_err(wit).map(|i| ModelInfo { dim: i.dim as u32, sample_rate: i.sample_rate, architecture: i.architecture }),))
    })?;
    let m = models.clone();
    li.func_wrap("embed-text", move |_cx: StoreContextMut<'_, HostState>, (model, texts): (String, Vec<String>)| {
        Ok((m.embed_text(&model, &texts).map_err(wit),))
    })?;
    let m = models.clone();
    li.func_wrap("embed-audio", move |_cx: StoreContextMut<'_, HostState>, (model, clips, rate): (String, Vec<Vec<f32>>, u32)| {
        Ok((m.embed_audio(&model, &clips, rate).map_err(wit),))
    })?;
    Ok(())
}

/// The host type behind every resource a denied interface declares; never constructed.
struct Denied;

fn deny(li: &mut wasmtime::component::LinkerInstance<'_, HostState>, qualified: String, func: &str) -> wasmtime::Result<()> {
    li.func_new(func, move |mut cx, _ty, _params, _results| {
        cx.data_mut().denied = Some(qualified.clone());
        wasmtime::bail!("capability denied: {qualified}")
    })
}

/// Links a granted capability, if `func` of `interface` is one. Returns whether it did.
fn grant(li: &mut wasmtime::component::LinkerInstance<'_, HostState>, interface: &str, func: &str, grants: &Grants) -> wasmtime::Result<bool> {
    let iface = interface.split('@').next().unwrap_or(interface);
    match (iface, func) {
        // std's HashMap asks for a seed at first use. A fixed one keeps plugins deterministic and
        // leaks nothing, so it is always linked; real randomness (`wasi:random/random`) is not.
        ("wasi:random/insecure-seed", "insecure-seed") => {
            li.func_wrap(func, |_cx, ()| Ok(((0x243f_6a88_85a3_08d3u64, 0x1319_8a2e_0370_7344u64),)))?;
        }
        ("wasi:cli/environment", "get-environment") if !grants.env.is_empty() => {
            let vars: Vec<(String, String)> = grants.env.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v))).collect();
            li.func_wrap(func, move |_cx, ()| Ok((vars.clone(),)))?;
        }
        ("wasi:cli/environment", "get-arguments") if !grants.env.is_empty() => {
            li.func_wrap(func, |_cx, ()| Ok((Vec::<String>::new(),)))?;
        }
        ("wasi:cli/environment", "initial-cwd") if !grants.env.is_empty() => {
            li.func_wrap(func, |_cx, ()| Ok((None::<String>,)))?;
        }
        ("wasi:clocks/wall-clock", "now" | "resolution") if grants.clock => {
            let now = func == "now";
            li.func_wrap(func, move |_cx, ()| {
                let d = if now {
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
                } else {
                    std::time::Duration::from_nanos(1)
                };
                Ok((Datetime { seconds: d.as_secs(), nanoseconds: d.subsec_nanos() },))
            })?;
        }
        ("wasi:clocks/monotonic-clock", "now" | "resolution") if grants.clock => {
            let now = func == "now";
            let start = std::time::Instant::now();
            li.func_wrap(func, move |_cx, ()| Ok((if now { start.elapsed().as_nanos() as u64 } else { 1u64 },)))?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `wasi:clocks/wall-clock.datetime`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower, wasmtime::component::Lift, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test cases 1 and 2 of RFC 4231.
        let mac = hmac_sha256(&[0x0b; 20], &[b"Hi There"]);
        assert_eq!(hex(&mac), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn memory_caps_that_overflow_or_exceed_the_machine_are_refused() {
        assert_eq!(memory_cap_bytes(256), Ok(256 << 20));
        // 2^44 MiB is 2^64 bytes: it wrapped to a cap of 0.
        assert!(memory_cap_bytes(17_592_186_044_416).unwrap_err().contains("does not fit in 64 bits"));
        if crate::io::physical_memory().is_some() {
            assert!(memory_cap_bytes(1 << 40).unwrap_err().contains("more than this machine's"));
        }
        assert!(memory_cap_bytes(0).is_err());
        let cfg = SandboxConfig { memory_mib: 17_592_186_044_416, ..SandboxConfig::default() };
        let e = Runtime::new(cfg, None).err().expect("refused").to_string();
        assert!(e.contains("[sandbox] memory_mib"), "{e}");
    }
}
