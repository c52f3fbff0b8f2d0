//! Where configuration comes from, defined once: the migration CLI and the
//! services read exactly the same layers.
//!
//! Layers, later wins:
//! 1. `config/default.toml`, compiled in (the binaries work from any directory);
//! 2. `<config dir>/default.toml` and `<config dir>/<environment>.toml` when
//!    they exist (config dir: `GPU_USAGE_CONFIG_DIR`, else `./config`;
//!    environment: `APP_ENVIRONMENT`, default `local`);
//! 3. environment variables `GPU_USAGE__<SECTION>__<KEY>`, for example
//!    `GPU_USAGE__DATABASE__URL=mysql://user:pw@db:3306/waverless`.

use config::{Config, ConfigBuilder, Environment, File, FileFormat, builder::DefaultState};
use std::path::PathBuf;

pub const ENV_PREFIX: &str = "GPU_USAGE";
pub const ENV_SEPARATOR: &str = "__";
const BUILT_IN_DEFAULTS: &str = include_str!("../../../config/default.toml");

pub fn config_dir() -> PathBuf {
    std::env::var_os("GPU_USAGE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("config"))
}

pub fn environment() -> String {
    std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".to_owned())
}

/// The layered builder; callers add overrides (tests do) and build.
pub fn builder() -> ConfigBuilder<DefaultState> {
    let dir = config_dir();
    Config::builder()
        .add_source(File::from_str(BUILT_IN_DEFAULTS, FileFormat::Toml))
        .add_source(File::from(dir.join("default.toml")).required(false))
        .add_source(File::from(dir.join(format!("{}.toml", environment()))).required(false))
        .add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR),
        )
}
