//! The simulator's error type.

/// What can go wrong when starting or driving the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The listening socket could not be opened.
    #[error("binding 127.0.0.1:{port}")]
    Bind {
        /// The port asked for (0 = any).
        port: u16,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The entity name is not one the simulator knows.
    #[error("unknown entity {0:?}")]
    UnknownEntity(String),
    /// The realm is not one the simulator serves.
    #[error("unknown realm {0:?}")]
    UnknownRealm(String),
    /// The entity is known but holds no generated data, so it cannot be changed.
    #[error("entity {0:?} has no data to change")]
    Unsupported(String),
    /// No live record with that id.
    #[error("no {entity} with id {id}")]
    NotFound {
        /// Entity name.
        entity: String,
        /// Record id.
        id: String,
    },
}
