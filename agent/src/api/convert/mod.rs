//! Conversions between the wire types of the API ([`proto::pb`]) and the agent's domain
//! values: incoming messages to validated requests ([`crate::spec`]), and the agent's views
//! to outgoing messages.

mod incoming;
mod outgoing;
mod publish;

#[cfg(test)]
mod tests;
