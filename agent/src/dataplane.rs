//! The dataplane behind a small trait, so that the agent runs without kernel work when asked
//! to (`--dataplane none`, for tests and control-plane-only nodes).
//!
//! Contract: `reconcile` is idempotent and is called on every desired-state change and
//! periodically; `can_attach` tells up front whether endpoints can be attached at all (the
//! `none` dataplane refuses every attach with a clear reason instead of pretending).

use std::fmt::Debug;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;

use overlay::esp::{self, EspDesired, EspExecutor, EspReport};
use overlay::{Actual, Desired, Executor, Names, Report};

use crate::config::DataplaneKind;

/// A boxed future (the trait is used as `Arc<dyn Dataplane>`).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the agent needs from a dataplane.
pub trait Dataplane: Send + Sync + Debug {
    fn kind(&self) -> DataplaneKind;
    /// `Err(reason)` when this dataplane cannot attach endpoints.
    fn can_attach(&self) -> Result<(), String>;
    /// Make the kernel match `desired` (see [`overlay::Executor::reconcile`]).
    fn reconcile<'a>(&'a self, desired: &'a Desired) -> BoxFut<'a, Result<Report, overlay::Error>>;
    /// What the kernel holds now (`None` for a dataplane without state).
    fn read_actual<'a>(
        &'a self,
        desired: &'a Desired,
    ) -> BoxFut<'a, Result<Option<Actual>, overlay::Error>>;
    /// `Err(reason)` when this dataplane cannot carry encrypted networks (no IPsec ESP in
    /// the kernel, or no dataplane at all). Decided once, at start.
    fn esp(&self) -> Result<(), String>;
    /// Make the IPsec SAs, policies and the clear-VXLAN guard match `desired` (see
    /// [`overlay::esp::EspExecutor::reconcile`]). Without a dataplane: nothing.
    fn reconcile_esp<'a>(
        &'a self,
        desired: &'a EspDesired,
    ) -> BoxFut<'a, Result<EspReport, overlay::Error>>;
}

/// The VXLAN dataplane of the `overlay` crate, in the agent's own network namespace, with
/// the IPsec ESP dataplane of encrypted networks beside it.
#[derive(Debug)]
pub struct KernelDataplane {
    exec: Executor,
    esp: EspExecutor,
    /// What [`esp::probe`] found at start.
    esp_support: Result<(), String>,
}

impl KernelDataplane {
    pub fn new(prefix: &str, local_vtep: Ipv4Addr) -> Result<Self, overlay::Error> {
        let support = esp::probe();
        let esp_support = match support.reason() {
            None => Ok(()),
            Some(why) => Err(why),
        };
        Ok(KernelDataplane {
            exec: Executor::new(Names::new(prefix)?, local_vtep)?,
            esp: EspExecutor::new(esp::DEFAULT_REQID)?,
            esp_support,
        })
    }
}

impl Dataplane for KernelDataplane {
    fn kind(&self) -> DataplaneKind {
        DataplaneKind::Kernel
    }

    fn can_attach(&self) -> Result<(), String> {
        Ok(())
    }

    fn reconcile<'a>(&'a self, desired: &'a Desired) -> BoxFut<'a, Result<Report, overlay::Error>> {
        Box::pin(self.exec.reconcile(desired))
    }

    fn read_actual<'a>(
        &'a self,
        desired: &'a Desired,
    ) -> BoxFut<'a, Result<Option<Actual>, overlay::Error>> {
        Box::pin(async move { self.exec.read_actual(desired).await.map(Some) })
    }

    fn esp(&self) -> Result<(), String> {
        self.esp_support.clone()
    }

    fn reconcile_esp<'a>(
        &'a self,
        desired: &'a EspDesired,
    ) -> BoxFut<'a, Result<EspReport, overlay::Error>> {
        Box::pin(self.esp.reconcile(desired))
    }
}

/// No dataplane: nothing is read or written in the kernel.
#[derive(Debug, Default)]
pub struct NoDataplane;

impl Dataplane for NoDataplane {
    fn kind(&self) -> DataplaneKind {
        DataplaneKind::None
    }

    fn can_attach(&self) -> Result<(), String> {
        Err(
            "this agent runs without a dataplane (--dataplane none): it cannot attach \
             endpoints; run it with --dataplane kernel"
                .into(),
        )
    }

    fn reconcile<'a>(
        &'a self,
        _desired: &'a Desired,
    ) -> BoxFut<'a, Result<Report, overlay::Error>> {
        Box::pin(async { Ok(Report::default()) })
    }

    fn read_actual<'a>(
        &'a self,
        _desired: &'a Desired,
    ) -> BoxFut<'a, Result<Option<Actual>, overlay::Error>> {
        Box::pin(async { Ok(None) })
    }

    fn esp(&self) -> Result<(), String> {
        Err("this agent runs without a dataplane (--dataplane none)".into())
    }

    fn reconcile_esp<'a>(
        &'a self,
        _desired: &'a EspDesired,
    ) -> BoxFut<'a, Result<EspReport, overlay::Error>> {
        Box::pin(async { Ok(EspReport::default()) })
    }
}
