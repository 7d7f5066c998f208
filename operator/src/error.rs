//! The operator's errors. Each names what it was doing; the controllers
//! requeue every error with a per-object backoff.

use crate::resources::RenderError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API ({action}): {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot render the cluster's resources: {0}")]
    Render(#[from] RenderError),
    #[error("Kafka admin request to {bootstrap} ({action}): {source}")]
    Admin {
        bootstrap: String,
        action: String,
        #[source]
        source: sluice_client::AdminError,
    },
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the object has no {0}")]
    MissingField(&'static str),
    #[error("certificates: {0}")]
    Certificates(#[source] crate::certs::CertError),
}

impl Error {
    /// The error of a Kafka admin request to `bootstrap` doing `action`.
    pub fn admin(bootstrap: &str, action: &str) -> impl FnOnce(sluice_client::AdminError) -> Error {
        let (bootstrap, action) = (bootstrap.to_string(), action.to_string());
        move |source| Error::Admin {
            bootstrap,
            action,
            source,
        }
    }

    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Render(_) => "render",
            Error::Admin { .. } => "kafka_admin",
            Error::Finalizer(_) => "finalizer",
            Error::MissingField(_) => "invalid_object",
            Error::Certificates(_) => "certificates",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
