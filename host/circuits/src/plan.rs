//! A query's plan: which circuit runs in each stage, under which session id its keys are
//! dealt, and what a stage's revealed values decide next. The servers follow it, the dealer
//! deals only the stages it names, and the client reads a pool's answer with it, so the
//! routing privacy modes' policy lives here alone (the circuits themselves are in
//! [`super::pool`]).

use super::pool::{MAX_EXPERTS, PoolShape, RouteMode, route_of};
use super::{CircuitKind, ModelSpec};
use crate::{Error, Result};
use securerouter_wire::SessionId;

/// The stages of one query of circuit `first` of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryPlan {
    first: CircuitKind,
    /// Bit k: expert k of the pool reads an input of its own (no later stage runs it; the
    /// client asks it as a query of its own).
    own_inputs: u32,
}

/// What follows a query's first stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterFirst {
    /// Nothing: the first stage's outputs answer the query.
    Done,
    /// A later stage on the same input.
    Stage(LaterStage),
    /// Reveal-route chose expert k, which reads an input of its own: the servers answer with
    /// the route alone (the summary's logits, which would answer nothing, are dropped), and
    /// the client uploads expert k's input as a query of [`CircuitKind::Expert`] k.
    ClientAsks(u8),
    /// Reveal-route routed a batch of inputs: the route of each. The servers answer with the
    /// summary's logits of the inputs routed to it (the other inputs' rows zeroed: they would
    /// answer nothing) and every route; the client asks each other chosen expert once, for
    /// all the inputs routed to it ([`QueryPlan::read_pool_batch`]).
    ClientGroups(Vec<u8>),
}

/// A pool query's answer as the client reads it from the outputs it reconstructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolReply<'a> {
    /// The chosen expert's logits and the route.
    Answer {
        /// The logits, as ring words.
        logits: &'a [u64],
        /// The expert that gave them.
        route: usize,
    },
    /// Reveal-route chose an expert with an input of its own, or any expert past the summary
    /// for an input of a batch: ask it next ([`AfterFirst::ClientAsks`],
    /// [`AfterFirst::ClientGroups`]).
    AskExpert(u8),
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
    /// The plan of a query the client asked of `spec` as `first`.
    pub fn new(spec: &ModelSpec, first: CircuitKind) -> Self {
        match spec {
            ModelSpec::Pool(pool) => Self::for_pool(pool, first),
            _ => QueryPlan {
                first,
                own_inputs: 0,
            },
        }
    }

    /// The plan of a query the client asked of `pool` as `first`.
    pub fn for_pool(pool: &PoolShape, first: CircuitKind) -> Self {
        let own_inputs = (1..pool.experts().min(32))
            .filter(|&k| pool.own_input(k))
            .fold(0, |bits, k| bits | 1 << k);
        QueryPlan { first, own_inputs }
    }

    /// Whether expert `k` reads an input of its own.
    fn own_input(&self, k: usize) -> bool {
        k < 32 && self.own_inputs & (1 << k) != 0
    }

    /// The circuit of the first stage.
    pub fn first_stage(&self) -> CircuitKind {
        self.first
    }

    /// Stage `k` of the query `session`: the session id its keys are dealt under, and its
    /// circuit. Stage 0 is the query's own circuit under the query's id. Later stages exist in
    /// reveal-route alone: stage k (1 ≤ k < [`MAX_EXPERTS`], expert k reading the summary's
    /// input) runs expert k under `session.stage(k)`. Any other stage is refused, naming the
    /// query's circuit.
    pub fn stage(&self, session: SessionId, k: u8) -> Result<(SessionId, CircuitKind)> {
        let kind = self.stage_circuit(k)?;
        Ok((if k == 0 { session } else { session.stage(k) }, kind))
    }

    /// The circuit of stage `k` (see [`QueryPlan::stage`]).
    fn stage_circuit(&self, k: u8) -> Result<CircuitKind> {
        match (self.first, k) {
            (first, 0) => Ok(first),
            (CircuitKind::Routed(RouteMode::Reveal), k)
                if usize::from(k) < MAX_EXPERTS && !self.own_input(usize::from(k)) =>
            {
                Ok(CircuitKind::Expert(k))
            }
            (first, k) => Err(Error::NoStage { first, stage: k }),
        }
    }

    /// What follows the first stage of a session of `batch` inputs, from what it revealed to
    /// the servers. Only reveal-route reveals (the one-hot route of each input). For one
    /// input: route 0's logits came with the router; a route k > 0 runs stage k, expert k,
    /// whose logits replace the summary expert's, unless expert k reads an input of its own
    /// ([`AfterFirst::ClientAsks`]). For a batch the client asks the experts
    /// ([`AfterFirst::ClientGroups`]), so that each runs once for all its inputs.
    pub fn after_first(&self, revealed: Option<&[u64]>, batch: usize) -> Result<AfterFirst> {
        match (self.first, revealed) {
            (CircuitKind::Routed(RouteMode::Reveal), Some(onehot)) if batch > 1 => {
                let experts = onehot.len() / batch;
                if experts == 0 || experts * batch != onehot.len() {
                    return Err(Error::Outputs {
                        kind: self.first,
                        count: onehot.len(),
                    });
                }
                let routes = onehot
                    .chunks(experts)
                    .map(|row| {
                        let route = route_of(row).map_err(|e| Error::RevealedRoute(Box::new(e)))?;
                        u8::try_from(route).map_err(|e| Error::RoutePastPool {
                            route,
                            source: e.into(),
                        })
                    })
                    .collect::<Result<Vec<u8>>>()?;
                Ok(AfterFirst::ClientGroups(routes))
            }
            (CircuitKind::Routed(RouteMode::Reveal), Some(onehot)) => {
                let route = route_of(onehot).map_err(|e| Error::RevealedRoute(Box::new(e)))?;
                if route == 0 {
                    return Ok(AfterFirst::Done);
                }
                let past = |source: Box<dyn std::error::Error + Send + Sync>| {
                    Error::RoutePastPool { route, source }
                };
                let k = u8::try_from(route).map_err(|e| past(e.into()))?;
                if self.own_input(route) {
                    return Ok(AfterFirst::ClientAsks(k));
                }
                Ok(AfterFirst::Stage(LaterStage {
                    kind: self.stage_circuit(k).map_err(|e| past(e.into()))?,
                    stage: k,
                    replaces: 0,
                }))
            }
            (CircuitKind::Routed(RouteMode::Reveal), None) => Err(Error::NoRouteRevealed),
            (kind, Some(_)) => Err(Error::RevealsNothing(kind)),
            (_, None) => Ok(AfterFirst::Done),
        }
    }

    /// Each input's answer of a session of `batch` inputs from the outputs the client
    /// reconstructed. For one input, [`QueryPlan::read_pool`]. For a batch: a routed query
    /// gives `[logits, one-hot routes]` (in reveal-route the summary's logits, and every input
    /// routed elsewhere is [`PoolReply::AskExpert`]), one expert alone `[logits]`.
    pub fn read_pool_batch<'a>(
        &self,
        outputs: &'a [Vec<u64>],
        batch: usize,
    ) -> Result<Vec<PoolReply<'a>>> {
        if batch <= 1 {
            return Ok(vec![self.read_pool(outputs)?]);
        }
        let wrong = || Error::Outputs {
            kind: self.first,
            count: outputs.len(),
        };
        let rows = |v: &'a [u64]| -> Result<std::slice::Chunks<'a, u64>> {
            let width = v.len() / batch;
            if width == 0 || width * batch != v.len() {
                return Err(wrong());
            }
            Ok(v.chunks(width))
        };
        match (self.first, outputs) {
            (CircuitKind::Routed(mode), [logits, onehot]) => rows(logits)?
                .zip(rows(onehot)?)
                .map(|(logits, onehot)| {
                    let route = route_of(onehot)?;
                    Ok(match (mode, u8::try_from(route)) {
                        (RouteMode::Reveal, Ok(k)) if k > 0 => PoolReply::AskExpert(k),
                        (RouteMode::Reveal, Err(_)) => return Err(wrong()),
                        _ => PoolReply::Answer { logits, route },
                    })
                })
                .collect(),
            (CircuitKind::Expert(k), [logits]) => Ok(rows(logits)?
                .map(|logits| PoolReply::Answer {
                    logits,
                    route: usize::from(k),
                })
                .collect()),
            _ => Err(wrong()),
        }
    }

    /// A pool query's answer from the outputs the client reconstructed: a routed query gives
    /// `[logits, one-hot route]`, or in reveal-route `[one-hot route]` alone when the chosen
    /// expert reads an input of its own; one expert alone gives `[logits]`.
    pub fn read_pool<'a>(&self, outputs: &'a [Vec<u64>]) -> Result<PoolReply<'a>> {
        match (self.first, outputs) {
            (CircuitKind::Routed(_), [logits, onehot]) => Ok(PoolReply::Answer {
                logits,
                route: route_of(onehot)?,
            }),
            (CircuitKind::Routed(RouteMode::Reveal), [onehot]) => {
                let route = route_of(onehot)?;
                match u8::try_from(route) {
                    Ok(k) if self.own_input(route) => Ok(PoolReply::AskExpert(k)),
                    _ => Err(Error::Outputs {
                        kind: self.first,
                        count: 1,
                    }),
                }
            }
            (CircuitKind::Expert(k), [logits]) => Ok(PoolReply::Answer {
                logits,
                route: usize::from(k),
            }),
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
    use crate::bert::BertHead;
    use crate::pool::{ExpertInput, PoolExpert, PoolShape};
    use crate::{Activation, BertShape};
    use securerouter_ml::router::RouterHeadShape;

    /// A pool of `experts` experts cut from the summary's checkpoint, but those in `own`,
    /// which read inputs of their own.
    fn pool(experts: usize, own: &[usize]) -> ModelSpec {
        let shape = |hidden| BertShape {
            layers: 1,
            hidden,
            heads: 2,
            ffn: 8,
            classes: 2,
            activation: Activation::Gelu,
            relative_buckets: 0,
        };
        ModelSpec::Pool(PoolShape {
            summary: shape(4),
            router: RouterHeadShape {
                features: 5,
                hidden: 2,
                experts,
            },
            others: (1..experts)
                .map(|k| {
                    if own.contains(&k) {
                        PoolExpert {
                            shape: shape(8),
                            head: BertHead::Checkpoint,
                            input: ExpertInput::Own,
                        }
                    } else {
                        PoolExpert::cut(shape(4))
                    }
                })
                .collect(),
        })
    }

    fn plan(first: CircuitKind) -> QueryPlan {
        QueryPlan::new(&pool(3, &[]), first)
    }

    #[test]
    fn only_reveal_route_runs_a_second_stage_for_routes_past_the_summary() {
        let reveal = plan(CircuitKind::Routed(RouteMode::Reveal));
        assert_eq!(
            reveal.after_first(Some(&[1, 0, 0]), 1).unwrap(),
            AfterFirst::Done
        );
        assert_eq!(
            reveal.after_first(Some(&[0, 0, 1]), 1).unwrap(),
            AfterFirst::Stage(LaterStage {
                kind: CircuitKind::Expert(2),
                stage: 2,
                replaces: 0
            })
        );
        assert!(reveal.after_first(None, 1).is_err());
        assert!(reveal.after_first(Some(&[1, 1, 0]), 1).is_err());
        let hide = plan(CircuitKind::Routed(RouteMode::Hide));
        assert_eq!(hide.after_first(None, 1).unwrap(), AfterFirst::Done);
        assert!(hide.after_first(Some(&[1, 0]), 1).is_err());
        assert_eq!(
            plan(CircuitKind::Bert).after_first(None, 1).unwrap(),
            AfterFirst::Done
        );
    }

    /// An expert with an input of its own is never a later stage: the client asks it, with
    /// its input, once it reads the route.
    #[test]
    fn an_expert_with_its_own_input_is_asked_by_the_client() {
        let first = CircuitKind::Routed(RouteMode::Reveal);
        let reveal = QueryPlan::new(&pool(3, &[2]), first);
        assert_eq!(
            reveal.after_first(Some(&[0, 0, 1]), 1).unwrap(),
            AfterFirst::ClientAsks(2)
        );
        assert!(matches!(
            reveal.after_first(Some(&[0, 1, 0]), 1).unwrap(),
            AfterFirst::Stage(LaterStage { stage: 1, .. })
        ));
        let e = reveal.stage(SessionId([1; 16]), 2).unwrap_err().to_string();
        assert!(e.contains("has no stage 2"), "{e}");
        assert_eq!(
            reveal.read_pool(&[vec![0, 0, 1]]).unwrap(),
            PoolReply::AskExpert(2)
        );
        // Only an own-input route comes without logits.
        assert!(reveal.read_pool(&[vec![0, 1, 0]]).is_err());
        assert!(plan(first).read_pool(&[vec![0, 0, 1]]).is_err());
    }

    #[test]
    fn only_reveal_route_has_stages_past_the_first_each_under_its_own_id() {
        let id = SessionId([9; 16]);
        let reveal = plan(CircuitKind::Routed(RouteMode::Reveal));
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
            let p = plan(first);
            assert_eq!(p.stage(id, 0).unwrap(), (id, first));
            let e = p.stage(id, 1).unwrap_err().to_string();
            assert!(e.contains("has no stage 1"), "{e}");
        }
    }

    /// A session's input tensor: one input [rows, cols], or a batch of inputs of equal length;
    /// the router head's queries are its rows.
    #[test]
    fn a_batch_splits_the_rows_into_inputs_of_equal_length() {
        let spec = pool(3, &[]);
        let kind = CircuitKind::Routed(RouteMode::Reveal);
        let cols = spec.input_cols(kind);
        assert_eq!(spec.input_shape(kind, 48, 1).unwrap(), [48, cols]);
        assert_eq!(spec.input_shape(kind, 48, 3).unwrap(), [3, 16, cols]);
        let e = spec.input_shape(kind, 48, 5).unwrap_err().to_string();
        assert!(e.contains("48 rows do not split into 5 inputs"), "{e}");
        assert!(spec.input_shape(kind, 48, 0).is_err());
        let head = ModelSpec::RouterHead(RouterHeadShape {
            features: 5,
            hidden: 2,
            experts: 3,
        });
        assert_eq!(
            head.input_shape(CircuitKind::RouterHead, 4, 1).unwrap(),
            [4, 5]
        );
        let e = head
            .input_shape(CircuitKind::RouterHead, 4, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("one query per row"), "{e}");
    }

    /// A batch's routes go to the client, which asks each chosen expert once for its inputs.
    #[test]
    fn a_batch_in_reveal_route_leaves_the_experts_to_the_client() {
        let reveal = plan(CircuitKind::Routed(RouteMode::Reveal));
        let onehot = [1, 0, 0, 0, 0, 1, 0, 1, 0];
        assert_eq!(
            reveal.after_first(Some(&onehot), 3).unwrap(),
            AfterFirst::ClientGroups(vec![0, 2, 1])
        );
        assert!(reveal.after_first(Some(&[1, 0, 0, 1, 1, 0]), 2).is_err());
        assert!(reveal.after_first(Some(&onehot[..8]), 3).is_err());
        let outputs = [vec![1, 2, 3, 4, 5, 6], onehot.to_vec()];
        assert_eq!(
            reveal.read_pool_batch(&outputs, 3).unwrap(),
            [
                PoolReply::Answer {
                    logits: &[1, 2],
                    route: 0
                },
                PoolReply::AskExpert(2),
                PoolReply::AskExpert(1)
            ]
        );
        let hide = plan(CircuitKind::Routed(RouteMode::Hide));
        assert_eq!(
            hide.read_pool_batch(&outputs, 3).unwrap()[1],
            PoolReply::Answer {
                logits: &[3, 4],
                route: 2
            }
        );
        let expert = plan(CircuitKind::Expert(2));
        assert_eq!(
            expert.read_pool_batch(&outputs[..1], 2).unwrap(),
            [
                PoolReply::Answer {
                    logits: &[1, 2, 3],
                    route: 2
                },
                PoolReply::Answer {
                    logits: &[4, 5, 6],
                    route: 2
                }
            ]
        );
        // Outputs that do not split into the batch are refused.
        assert!(expert.read_pool_batch(&outputs[..1], 4).is_err());
        assert!(hide.read_pool_batch(&outputs[..1], 3).is_err());
    }

    #[test]
    fn a_refused_route_keeps_why_as_its_source() {
        use std::error::Error as _;
        let reveal = plan(CircuitKind::Routed(RouteMode::Reveal));
        let e = reveal.after_first(Some(&[1, 1, 0]), 1).unwrap_err();
        assert_eq!(e.to_string(), "the revealed route");
        let why = e.source().unwrap().to_string();
        assert!(why.contains("not one-hot"), "{why}");
        let mut past = vec![0; MAX_EXPERTS + 1];
        past[MAX_EXPERTS] = 1;
        let e = reveal.after_first(Some(&past), 1).unwrap_err();
        assert_eq!(e.to_string(), "a route past the largest pool");
        let why = e.source().unwrap().to_string();
        assert!(why.contains("has no stage 16"), "{why}");
    }

    #[test]
    fn the_client_reads_logits_and_route_by_the_plan() {
        let outputs = [vec![7, 8], vec![0, 1, 0]];
        let routed = plan(CircuitKind::Routed(RouteMode::Hide));
        assert_eq!(
            routed.read_pool(&outputs).unwrap(),
            PoolReply::Answer {
                logits: &[7, 8],
                route: 1
            }
        );
        let expert = plan(CircuitKind::Expert(2));
        assert_eq!(
            expert.read_pool(&outputs[..1]).unwrap(),
            PoolReply::Answer {
                logits: &[7, 8],
                route: 2
            }
        );
        assert!(expert.read_pool(&outputs).is_err());
    }
}
