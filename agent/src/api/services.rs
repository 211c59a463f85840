//! The tonic services over [`Agent`].

use std::sync::Arc;

use proto::pb;
use proto::pb::cluster_server::Cluster;
use proto::pb::debug_server::Debug;
use proto::pb::endpoints_server::Endpoints;
use proto::pb::networks_server::Networks;
use proto::pb::services_server::Services;
use tonic::{Request, Response, Status};

use crate::node::Agent;
use crate::spec::{AttachSpec, FieldError, KeysRequest, NetworkRequest, ServiceRequest};

/// Implements every service.
#[derive(Debug, Clone)]
pub struct Api {
    pub agent: Arc<Agent>,
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
        self.agent.delete_network(&r.into_inner().network).await?;
        ok(pb::DeleteNetworkResponse {})
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
        self.agent
            .detach(&r.endpoint, Some(r.network.as_str()))
            .await?;
        ok(pb::DetachResponse {})
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
        self.agent.delete_service(&r.into_inner().service).await?;
        ok(pb::DeleteServiceResponse {})
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
impl Debug for Api {
    async fn dump(&self, _: Request<pb::DumpRequest>) -> R<pb::DumpResponse> {
        ok(pb::DumpResponse {
            json: self.agent.dump().await?,
        })
    }
}
