//! UnregisterBroker (v0): forget a broker that was removed from the cluster
//! (the last step of a scale-down). Only a stopped broker that holds no
//! replica and is not a voter of the metadata quorum can go; anything else
//! is refused with a message that says why.

use std::sync::Arc;

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use sluice_quorum::image::{Command, Outcome, Refusal};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::protocol::code::BROKER_ID_NOT_REGISTERED;

pub async fn handle(
    broker: &Arc<Broker>,
    req: UnregisterBrokerRequest,
    _version: i16,
) -> UnregisterBrokerResponse {
    let id = req.broker_id.0;
    let (error, message) = unregister(broker, id).await;
    UnregisterBrokerResponse::default()
        .with_error_code(error)
        .with_error_message(message.map(str_bytes))
}

async fn unregister(broker: &Arc<Broker>, id: i32) -> (i16, Option<String>) {
    let cluster = broker.cluster();
    if cluster.voters().contains_key(&id) {
        return (
            code::INVALID_REQUEST,
            Some(format!(
                "broker {id} votes in the metadata quorum (controller.quorum.voters) and cannot be unregistered"
            )),
        );
    }
    match cluster.write(Command::UnregisterBroker { id }).await {
        Ok(Outcome::Ok) => {
            tracing::info!(broker = id, "unregistered a broker");
            (code::NONE, None)
        }
        Ok(Outcome::Refused(Refusal::UnknownBroker(_))) => (
            BROKER_ID_NOT_REGISTERED,
            Some(format!("broker {id} is not registered")),
        ),
        Ok(Outcome::Refused(r)) => (code::INVALID_REQUEST, Some(r.to_string())),
        Ok(other) => (
            code::UNKNOWN_SERVER_ERROR,
            Some(format!("unexpected outcome {other:?}")),
        ),
        Err(e) => (code::NOT_CONTROLLER, Some(e.to_string())),
    }
}
