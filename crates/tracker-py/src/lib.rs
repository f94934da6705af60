#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod errors;
pub mod save;
pub mod store;

use pyo3::prelude::*;

/// The native module `tracker_store._native`: [`store::NativeStore`] and the exceptions of
/// [`errors`].
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<store::NativeStore>()?;
    m.add("StoreError", py.get_type::<errors::StoreError>())?;
    m.add("ConfigError", py.get_type::<errors::ConfigError>())?;
    m.add(
        "UnavailableError",
        py.get_type::<errors::UnavailableError>(),
    )?;
    m.add("ConflictError", py.get_type::<errors::ConflictError>())?;
    m.add(
        "InvalidInputError",
        py.get_type::<errors::InvalidInputError>(),
    )?;
    m.add("CorruptError", py.get_type::<errors::CorruptError>())?;
    m.add("BackendError", py.get_type::<errors::BackendError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
