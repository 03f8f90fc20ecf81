//! A query's plan: which circuit runs in each stage, under which session id its keys are
//! dealt, and what a stage's revealed values decide next. The servers follow it, the dealer
//! deals only the stages it names, and the client reads a pool's answer with it, so the
//! routing privacy modes' policy lives here alone (the circuits themselves are in
//! [`super::pool`]).

use super::CircuitKind;
use super::pool::{MAX_EXPERTS, RouteMode, route_of};
use crate::{Error, Result};
use securerouter_wire::SessionId;

/// The stages of one query of circuit `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryPlan {
    first: CircuitKind,
}

/// A stage after the first: its circuit, run under the session's id for `stage`
/// (`SessionId::stage`), whose first output replaces the first stage's output `replaces`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaterStage {
    /// The circuit.
    pub kind: CircuitKind,
    /// The stage's number, which names its keys at the dealer.
    pub stage: u8,
    /// The output of the first stage it replaces.
    pub replaces: usize,
}

impl QueryPlan {
    /// The plan of a query the client asked for as `first`.
    pub fn new(first: CircuitKind) -> Self {
        QueryPlan { first }
    }

    /// The circuit of the first stage.
    pub fn first_stage(&self) -> CircuitKind {
        self.first
    }

    /// Stage `k` of the query `session`: the session id its keys are dealt under, and its
    /// circuit. Stage 0 is the query's own circuit under the query's id. Later stages exist in
    /// reveal-route alone: stage k (1 ≤ k < [`MAX_EXPERTS`]) runs expert k under
    /// `session.stage(k)`. Any other stage is refused, naming the query's circuit.
    pub fn stage(&self, session: SessionId, k: u8) -> Result<(SessionId, CircuitKind)> {
        let kind = self.stage_circuit(k)?;
        Ok((if k == 0 { session } else { session.stage(k) }, kind))
    }

    /// The circuit of stage `k` (see [`QueryPlan::stage`]).
    fn stage_circuit(&self, k: u8) -> Result<CircuitKind> {
        match (self.first, k) {
            (first, 0) => Ok(first),
            (CircuitKind::Routed(RouteMode::Reveal), k) if usize::from(k) < MAX_EXPERTS => {
                Ok(CircuitKind::Expert(k))
            }
            (first, k) => Err(Error::NoStage { first, stage: k }),
        }
    }

    /// The stage after the first, from what the first revealed to the servers. Only
    /// reveal-route reveals (the one-hot route of one query): a route k > 0 runs stage k,
    /// expert k, whose logits replace the summary expert's; route 0's logits came with the
    /// router.
    pub fn next_stage(&self, revealed: Option<&[u64]>) -> Result<Option<LaterStage>> {
        match (self.first, revealed) {
            (CircuitKind::Routed(RouteMode::Reveal), Some(onehot)) => {
                let route = route_of(onehot).map_err(|e| Error::RevealedRoute(Box::new(e)))?;
                if route == 0 {
                    return Ok(None);
                }
                let past = |source: Box<dyn std::error::Error + Send + Sync>| {
                    Error::RoutePastPool { route, source }
                };
                let k = u8::try_from(route).map_err(|e| past(e.into()))?;
                Ok(Some(LaterStage {
                    kind: self.stage_circuit(k).map_err(|e| past(e.into()))?,
                    stage: k,
                    replaces: 0,
                }))
            }
            (CircuitKind::Routed(RouteMode::Reveal), None) => Err(Error::NoRouteRevealed),
            (kind, Some(_)) => Err(Error::RevealsNothing(kind)),
            (_, None) => Ok(None),
        }
    }

    /// A pool query's logits and route from the outputs the client reconstructed: a routed
    /// query gives `[logits, one-hot route]`, one expert alone `[logits]`.
    pub fn read_pool<'a>(&self, outputs: &'a [Vec<u64>]) -> Result<(&'a [u64], usize)> {
        match (self.first, outputs) {
            (CircuitKind::Routed(_), [logits, onehot]) => Ok((logits, route_of(onehot)?)),
            (CircuitKind::Expert(k), [logits]) => Ok((logits, usize::from(k))),
            (kind, o) => Err(Error::Outputs {
                kind,
                count: o.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reveal_route_runs_a_second_stage_for_routes_past_the_summary() {
        let reveal = QueryPlan::new(CircuitKind::Routed(RouteMode::Reveal));
        assert_eq!(reveal.next_stage(Some(&[1, 0, 0])).unwrap(), None);
        assert_eq!(
            reveal.next_stage(Some(&[0, 0, 1])).unwrap(),
            Some(LaterStage {
                kind: CircuitKind::Expert(2),
                stage: 2,
                replaces: 0
            })
        );
        assert!(reveal.next_stage(None).is_err());
        assert!(reveal.next_stage(Some(&[1, 1, 0])).is_err());
        let hide = QueryPlan::new(CircuitKind::Routed(RouteMode::Hide));
        assert_eq!(hide.next_stage(None).unwrap(), None);
        assert!(hide.next_stage(Some(&[1, 0])).is_err());
        assert_eq!(
            QueryPlan::new(CircuitKind::Bert).next_stage(None).unwrap(),
            None
        );
    }

    #[test]
    fn only_reveal_route_has_stages_past_the_first_each_under_its_own_id() {
        let id = SessionId([9; 16]);
        let reveal = QueryPlan::new(CircuitKind::Routed(RouteMode::Reveal));
        assert_eq!(reveal.stage(id, 0).unwrap(), (id, reveal.first_stage()));
        assert_eq!(
            reveal.stage(id, 3).unwrap(),
            (id.stage(3), CircuitKind::Expert(3))
        );
        assert_ne!(id.stage(3), id);
        let past = u8::try_from(MAX_EXPERTS).unwrap();
        assert!(reveal.stage(id, past).is_err());
        for first in [
            CircuitKind::Routed(RouteMode::Hide),
            CircuitKind::Expert(1),
            CircuitKind::Bert,
            CircuitKind::RouterHead,
        ] {
            let plan = QueryPlan::new(first);
            assert_eq!(plan.stage(id, 0).unwrap(), (id, first));
            let e = plan.stage(id, 1).unwrap_err().to_string();
            assert!(e.contains("has no stage 1"), "{e}");
        }
    }

    #[test]
    fn a_refused_route_keeps_why_as_its_source() {
        use std::error::Error as _;
        let reveal = QueryPlan::new(CircuitKind::Routed(RouteMode::Reveal));
        let e = reveal.next_stage(Some(&[1, 1, 0])).unwrap_err();
        assert_eq!(e.to_string(), "the revealed route");
        let why = e.source().unwrap().to_string();
        assert!(why.contains("not one-hot"), "{why}");
        let mut past = vec![0; MAX_EXPERTS + 1];
        past[MAX_EXPERTS] = 1;
        let e = reveal.next_stage(Some(&past)).unwrap_err();
        assert_eq!(e.to_string(), "a route past the largest pool");
        let why = e.source().unwrap().to_string();
        assert!(why.contains("has no stage 16"), "{why}");
    }

    #[test]
    fn the_client_reads_logits_and_route_by_the_plan() {
        let outputs = [vec![7, 8], vec![0, 1, 0]];
        let routed = QueryPlan::new(CircuitKind::Routed(RouteMode::Hide));
        assert_eq!(routed.read_pool(&outputs).unwrap(), (&[7u64, 8][..], 1));
        let expert = QueryPlan::new(CircuitKind::Expert(2));
        assert_eq!(
            expert.read_pool(&outputs[..1]).unwrap(),
            (&[7u64, 8][..], 2)
        );
        assert!(expert.read_pool(&outputs).is_err());
    }
}
