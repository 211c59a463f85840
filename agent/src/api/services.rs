//! The tonic services over [`Agent`].

use std::sync::Arc;

use proto::pb;
use proto::pb::cluster_server::Cluster;
use proto::pb::debug_server::Debug;
use proto::pb::endpoints_server::Endpoints;
use proto::pb::networks_server::Networks;
use proto::pb::services_server::Services;
use proto::pb::watch_server::Watch;
use tonic::{Request, Response, Status};

use crate::node::Agent;
use crate::spec::{AttachSpec, FieldError, KeysRequest, NetworkRequest, ServiceRequest};

/// Implements every service.
#[derive(Debug, Clone)]
pub struct Api {
    pub agent: Arc<Agent>,
    /// The `Watch` service's view and streams.
    pub watch: Arc<crate::watch::Hub>,
}

type R<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> R<T> {
    Ok(Response::new(v))
}

/// The message of each view.
fn all<'a, V: 'a, T: From<&'a V>>(views: &'a [V]) -> Vec<T> {
    views.iter().map(T::from).collect()
}

#[tonic::async_trait]
impl Cluster for Api {
    async fn status(&self, _: Request<pb::StatusRequest>) -> R<pb::StatusResponse> {
        ok((&self.agent.status().await?).into())
    }

    async fn members(&self, _: Request<pb::MembersRequest>) -> R<pb::MembersResponse> {
        ok(pb::MembersResponse {
            members: all(&self.agent.members().await?),
        })
    }

    async fn join(&self, r: Request<pb::JoinRequest>) -> R<pb::JoinResponse> {
        crate::node::start_join(&self.agent, r.into_inner().seeds).await?;
        ok(pb::JoinResponse {})
    }

    async fn leave(&self, _: Request<pb::LeaveRequest>) -> R<pb::LeaveResponse> {
        self.agent.leave().await?;
        ok(pb::LeaveResponse {})
    }

    async fn set_keys(&self, r: Request<pb::SetKeysRequest>) -> R<pb::SetKeysResponse> {
        let req = KeysRequest::try_from(r.into_inner())?;
        ok((&self.agent.set_keys(req).await?).into())
    }
}

#[tonic::async_trait]
impl Networks for Api {
    async fn create(&self, r: Request<pb::CreateNetworkRequest>) -> R<pb::Network> {
        let req = NetworkRequest::try_from(r.into_inner())?;
        let def = self.agent.create_network(req).await?;
        ok((&self.agent.network_info(&def).await?).into())
    }

    async fn delete(&self, r: Request<pb::DeleteNetworkRequest>) -> R<pb::DeleteNetworkResponse> {
        let deleted = self.agent.delete_network(&r.into_inner().network).await?;
        ok(pb::DeleteNetworkResponse { deleted })
    }

    async fn list(&self, _: Request<pb::ListNetworksRequest>) -> R<pb::ListNetworksResponse> {
        ok(pb::ListNetworksResponse {
            networks: all(&self.agent.list_networks().await?),
        })
    }

    async fn inspect(&self, r: Request<pb::InspectNetworkRequest>) -> R<pb::Network> {
        let name = r.into_inner().network;
        if name.is_empty() {
            return Err(FieldError::new("network", "required (a network name or id)").into());
        }
        let def = self.agent.find_network(&name).await?;
        ok((&self.agent.network_info(&def).await?).into())
    }
}

#[tonic::async_trait]
impl Endpoints for Api {
    async fn attach(&self, r: Request<pb::AttachRequest>) -> R<pb::Endpoint> {
        let spec = AttachSpec::try_from(r.into_inner())?;
        ok((&self.agent.attach(spec).await?).into())
    }

    async fn detach(&self, r: Request<pb::DetachRequest>) -> R<pb::DetachResponse> {
        let r = r.into_inner();
        let deleted = match (r.endpoint.is_empty(), r.client_id.is_empty()) {
            (true, false) => self.agent.detach_client(&r.client_id).await?,
            (false, true) => {
                self.agent
                    .detach(&r.endpoint, Some(r.network.as_str()))
                    .await?
            }
            (false, false) => {
                return Err(FieldError::new(
                    "client_id",
                    "give either an endpoint or a client_id, not both",
                )
                .into());
            }
            (true, true) => {
                return Err(FieldError::new(
                    "endpoint",
                    "required (an endpoint name or id, or a client_id)",
                )
                .into());
            }
        };
        ok(pb::DetachResponse { deleted })
    }

    async fn inspect(&self, r: Request<pb::InspectEndpointRequest>) -> R<pb::Endpoint> {
        let r = r.into_inner();
        let e = self
            .agent
            .inspect_endpoint(&r.endpoint, &r.network, &r.client_id)
            .await?;
        ok((&e).into())
    }

    async fn list(&self, r: Request<pb::ListEndpointsRequest>) -> R<pb::ListEndpointsResponse> {
        ok(pb::ListEndpointsResponse {
            endpoints: all(&self.agent.list_endpoints(&r.into_inner().network).await?),
        })
    }

    async fn enable(&self, r: Request<pb::EndpointServiceRequest>) -> R<pb::Endpoint> {
        let r = r.into_inner();
        let e = self
            .agent
            .set_endpoint_disabled(&r.endpoint, &r.network, false)
            .await?;
        ok((&e).into())
    }

    async fn disable(&self, r: Request<pb::EndpointServiceRequest>) -> R<pb::Endpoint> {
        let r = r.into_inner();
        let e = self
            .agent
            .set_endpoint_disabled(&r.endpoint, &r.network, true)
            .await?;
        ok((&e).into())
    }
}

#[tonic::async_trait]
impl Services for Api {
    async fn create(&self, r: Request<pb::CreateServiceRequest>) -> R<pb::Service> {
        let req = ServiceRequest::try_from(r.into_inner())?;
        let svc = self.agent.create_service(req).await?;
        ok((&self.agent.service_info(&svc, false).await?).into())
    }

    async fn delete(&self, r: Request<pb::DeleteServiceRequest>) -> R<pb::DeleteServiceResponse> {
        let deleted = self.agent.delete_service(&r.into_inner().service).await?;
        ok(pb::DeleteServiceResponse { deleted })
    }

    async fn list(&self, _: Request<pb::ListServicesRequest>) -> R<pb::ListServicesResponse> {
        ok(pb::ListServicesResponse {
            services: all(&self.agent.list_services().await?),
        })
    }

    async fn inspect(&self, r: Request<pb::InspectServiceRequest>) -> R<pb::Service> {
        let svc = self.agent.find_service(&r.into_inner().service).await?;
        ok((&self.agent.service_info(&svc, true).await?).into())
    }
}

#[tonic::async_trait]
impl Watch for Api {
    type EventsStream = crate::watch::hub::EventStream;

    async fn events(&self, r: Request<pb::WatchRequest>) -> R<Self::EventsStream> {
        // The stream starts from a view that includes every call answered before it.
        self.watch.refresh(&self.agent).await?;
        ok(self.watch.subscribe(&r.into_inner()))
    }
}

#[tonic::async_trait]
impl Debug for Api {
    async fn dump(&self, _: Request<pb::DumpRequest>) -> R<pb::DumpResponse> {
        ok(pb::DumpResponse {
            json: self.agent.dump().await?,
        })
    }
}
