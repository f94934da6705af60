//! The Python exceptions of the native module, one per [`ErrorKind`].

use pyo3::PyErr;
use pyo3::exceptions::PyException;
use tracker_store::{Error, ErrorKind};

pyo3::create_exception!(
    _native,
    StoreError,
    PyException,
    "A tracker store operation failed; `kind` names the kind of failure."
);
pyo3::create_exception!(
    _native,
    ConfigError,
    StoreError,
    "The store's configuration is wrong."
);
pyo3::create_exception!(
    _native,
    UnavailableError,
    StoreError,
    "The store could not be reached or is overloaded; safe to retry."
);
pyo3::create_exception!(
    _native,
    ConflictError,
    StoreError,
    "Another writer appended to the conversation first; nothing was written."
);
pyo3::create_exception!(
    _native,
    InvalidInputError,
    StoreError,
    "The input was rejected before anything was written."
);
pyo3::create_exception!(
    _native,
    CorruptError,
    StoreError,
    "Stored data could not be read."
);
pyo3::create_exception!(
    _native,
    BackendError,
    StoreError,
    "Any other failure of the store's server or driver."
);

/// The Python exception for a store error, its message naming the store, the operation and the
/// conversation where known.
pub fn to_py(error: &Error) -> PyErr {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::Config => ConfigError::new_err(message),
        ErrorKind::Unavailable => UnavailableError::new_err(message),
        ErrorKind::Conflict => ConflictError::new_err(message),
        ErrorKind::InvalidInput => InvalidInputError::new_err(message),
        ErrorKind::Corrupt => CorruptError::new_err(message),
        _ => BackendError::new_err(message),
    }
}

/// A configuration error raised before any store is involved.
pub fn config(message: impl Into<String>) -> PyErr {
    ConfigError::new_err(message.into())
}
