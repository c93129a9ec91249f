//! The balancing task of a node: every T it measures and reports load, runs the election and,
//! as manager, plans and publishes decisions; in between it takes in gossip (reports,
//! election messages, decision batches) from the event loop.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;

use super::{apply, mono_ms, report, Gossip};
use crate::balance::election::{Ignored, Out};
use crate::balance::manager;
use crate::balance::BalanceConfig;
use crate::ids::FileKey;
use crate::node::command::Command;
use crate::node::{Ctx, NodeError, StartError};
use crate::placement;
use crate::protocol::gossip::{
    self as wire, DecisionBatch, LoadReport, ManagerMsg, Vote, MAX_CERT,
};
use crate::record::now_ms;

/// Subscribes the node's gossipsub to the swarm's three balancing topics.
pub fn subscribe(
    gossipsub: &mut libp2p::gossipsub::Behaviour,
    config: &BalanceConfig,
) -> Result<(), StartError> {
    for kind in ["load", "manager", "decisions"] {
        let topic = libp2p::gossipsub::IdentTopic::new(config.topic(kind));
        gossipsub
            .subscribe(&topic)
            .map_err(|e| StartError::Subscribe {
                topic: config.topic(kind),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// Publishes `data` on the swarm's `kind` topic, signed by this node.
pub(crate) async fn publish(ctx: &Arc<Ctx>, kind: &str, data: Vec<u8>) -> Result<(), NodeError> {
    let topic = ctx.balance.config.topic(kind);
    ctx.net
        .call(|reply| Command::Publish { topic, data, reply })
        .await?
        .map_err(|e| NodeError::Gossip(e.to_string()))
}

/// The service task: a round every T, gossip in between.
pub async fn run(ctx: Arc<Ctx>) {
    let Some(mut rx) = ctx
        .balance
        .inbound_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    let every = ctx.balance.config.report_interval;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let secs = last.elapsed().as_secs_f64();
                last = Instant::now();
                round(&ctx, secs).await;
            }
            Some(g) = rx.recv() => on_gossip(&ctx, g).await,
        }
    }
}

async fn round(ctx: &Arc<Ctx>, secs: f64) {
    let b = &ctx.balance;
    // Election first: a heartbeat must never wait behind slow store reads.
    let out = {
        let mut st = b.state();
        st.election.set_electorate(ctx.peers.live_peers());
        st.election.tick(mono_ms())
    };
    if let Some(out) = out {
        election_out(ctx, out).await;
    }
    let report = report::build(ctx, secs).await;
    let bytes = wire::encode_report(&report);
    b.state().view.on_report(ctx.local, report);
    b.record_history();
    if let Err(e) = publish(ctx, "load", bytes).await {
        tracing::debug!("load report not sent: {e}");
    }
    // Housekeeping reads records over the network: never let it hold up the next heartbeat.
    if !b.housekeeping.swap(true, Ordering::AcqRel) {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            apply::housekeeping(&ctx).await;
            ctx.balance.housekeeping.store(false, Ordering::Release);
        });
    }
    let plan_now = {
        let mut st = b.state();
        if st.election.is_manager() {
            st.manager_rounds += 1;
        } else {
            st.manager_rounds = 0;
        }
        // A fresh manager first hears a full round of reports before it plans.
        st.election.is_manager() && st.manager_rounds >= 2 && b.config.planner
    };
    if plan_now {
        manager_round(ctx).await;
    }
}

async fn manager_round(ctx: &Arc<Ctx>) {
    let b = &ctx.balance;
    let now = now_ms();
    let (term, first_seq, items) = {
        let candidates = ctx.peers.candidates(ctx.local_free(), true);
        let live = |p: &PeerId| *p == ctx.local || ctx.peers.is_live(p);
        let root_of = |k: &FileKey| {
            placement::closest(&k.0, candidates.clone(), 1)
                .first()
                .map(|c| c.peer)
        };
        let input = manager::RoundInput {
            policy: &b.config.policy,
            replication: ctx.config.replication,
            round: b.config.report_interval,
            now_ms: now,
        };
        let st = b.state();
        let items = manager::plan_round(&st.view, input, live, root_of);
        (st.election.term(), st.batch_seq, items)
    };
    if items.is_empty() {
        return;
    }
    let batches = wire::encode_batches(term, first_seq, now, items);
    {
        let mut st = b.state();
        st.batch_seq = first_seq + batches.len() as u64;
    }
    for batch in batches {
        tracing::info!(
            term,
            seq = batch.seq,
            decisions = batch.items.len(),
            "publishing decisions"
        );
        if let Some(bytes) = wire::encode(&batch) {
            if let Err(e) = publish(ctx, "decisions", bytes).await {
                tracing::debug!("decisions not sent: {e}");
            }
        }
        // We do not receive our own gossip: take the batch in directly.
        take_batch(ctx, ctx.local, batch);
    }
}

async fn on_gossip(ctx: &Arc<Ctx>, g: Gossip) {
    let b = &ctx.balance;
    let Some(source) = g.source else {
        b.count("unsigned message");
        return;
    };
    let kind = g.topic.rsplit('/').next().unwrap_or("");
    if g.topic != b.config.topic(kind) {
        b.count("unknown topic");
        return;
    }
    match kind {
        "load" => match wire::decode::<LoadReport>(&g.data) {
            Some(r) => {
                if r.capacity > 0 && ctx.config.capacity.is_some() {
                    ctx.peers
                        .set_free(source, r.capacity.saturating_sub(r.used));
                }
                if !b.state().view.on_report(source, r) {
                    b.count("replayed report");
                }
            }
            None => {
                b.count("malformed report");
                tracing::debug!(peer = %source, "malformed load report");
            }
        },
        "manager" => match wire::decode::<ManagerMsg>(&g.data) {
            Some(m) => on_election(ctx, source, m).await,
            None => {
                b.count("malformed election message");
                tracing::debug!(peer = %source, "malformed election message");
            }
        },
        "decisions" => match wire::decode::<DecisionBatch>(&g.data) {
            Some(batch) => {
                let verdict = b.state().election.accepts_decisions(source, batch.term);
                match verdict {
                    Ok(()) => take_batch(ctx, source, batch),
                    Err(why) => {
                        b.count(ignored_key("decisions", why));
                        tracing::warn!(
                            peer = %source,
                            term = batch.term,
                            "decisions ignored: {}",
                            why.as_str()
                        );
                    }
                }
            }
            None => {
                b.count("malformed decisions");
                tracing::debug!(peer = %source, "malformed decision batch");
            }
        },
        _ => b.count("unknown topic"),
    }
}

fn ignored_key(what: &str, why: Ignored) -> &'static str {
    match (what, why) {
        ("decisions", Ignored::Stale) => "decisions: stale term",
        ("decisions", _) => "decisions: not from the manager",
        (_, Ignored::NotEligible) => "election: not eligible",
        (_, Ignored::Stale) => "election: stale term",
        (_, Ignored::Conflict) => "election: conflicting claim",
        (_, Ignored::Sticky) => "election: manager alive",
        (_, Ignored::NotManager) => "election: not the manager",
        (_, Ignored::NoCertificate) => "election: no valid certificate",
        (_, Ignored::TermJump) => "election: term jump",
        (_, Ignored::TermTooHigh) => "election: term too high",
        (_, Ignored::AlreadyVoted) => "election: already voted",
    }
}

/// Publishes what the election machine asks for; our own vote goes straight back in.
async fn election_out(ctx: &Arc<Ctx>, out: Out<PeerId, Vote>) {
    let topic = ctx.balance.config.topic("manager");
    let msg = match out {
        Out::Candidacy { term } => {
            tracing::info!(term, "standing for manager");
            let mine = Vote::sign(&topic, term, ctx.local, &ctx.key);
            let won = ctx
                .balance
                .state()
                .election
                .on_vote(ctx.local, term, ctx.local, mine);
            send_election(ctx, ManagerMsg::Candidacy { term }).await;
            match won {
                Some(Out::Heartbeat { term, beat, cert }) => {
                    tracing::info!(term, votes = cert.len(), "elected manager");
                    ManagerMsg::Heartbeat { term, beat, cert }
                }
                _ => return,
            }
        }
        Out::Vote { term, candidate } => {
            ManagerMsg::Vote(Vote::sign(&topic, term, candidate, &ctx.key))
        }
        Out::Heartbeat { term, beat, cert } => ManagerMsg::Heartbeat { term, beat, cert },
    };
    send_election(ctx, msg).await;
}

async fn send_election(ctx: &Arc<Ctx>, msg: ManagerMsg) {
    if let Some(bytes) = wire::encode(&msg) {
        if let Err(e) = publish(ctx, "manager", bytes).await {
            tracing::debug!("election message not sent: {e}");
        }
    }
}

/// One election message from `source` (gossipsub checked that `source` signed it). Only
/// storage peers take part; votes and certificates are checked here, the rules in
/// [`crate::balance::election`].
async fn on_election(ctx: &Arc<Ctx>, source: PeerId, m: ManagerMsg) {
    let b = &ctx.balance;
    if !ctx.peers.is_live(&source) {
        b.count("election: not a storage peer");
        tracing::debug!(peer = %source, "election message from a peer that is not a storage peer");
        return;
    }
    let topic = b.config.topic("manager");
    let now = mono_ms();
    let (result, out) = match m {
        ManagerMsg::Candidacy { term } => {
            let mut st = b.state();
            match st.election.on_candidacy(source, term, now) {
                Ok(out) => (Ok(()), Some(out)),
                // A candidacy we ignore as manager: tell its author at once who manages.
                Err(why) => (Err(why), st.election.reassert()),
            }
        }
        ManagerMsg::Vote(vote) => {
            // Only the candidate counts votes: the others need not pay for the check.
            if vote.candidate != ctx.local {
                return;
            }
            if vote.voter != source || !vote.verifies(&topic) {
                b.count("election: forged vote");
                return;
            }
            let out =
                b.state()
                    .election
                    .on_vote(vote.voter, vote.term, vote.candidate, vote.clone());
            if let Some(Out::Heartbeat { term, ref cert, .. }) = out {
                tracing::info!(term, votes = cert.len(), "elected manager");
            }
            (Ok(()), out)
        }
        ManagerMsg::Heartbeat { term, cert, .. } => {
            let known = b.state().election.follows(source, term);
            let voters = if known {
                Vec::new()
            } else {
                match certificate_voters(&topic, source, term, &cert) {
                    Some(v) => v,
                    None => {
                        b.count("election: forged vote");
                        return;
                    }
                }
            };
            let r = b.state().election.on_heartbeat(source, term, &voters, now);
            (r, None)
        }
    };
    if let Err(why) = result {
        b.count(ignored_key("election", why));
        tracing::debug!(peer = %source, "election message ignored: {}", why.as_str());
    }
    if let Some(out) = out {
        election_out(ctx, out).await;
    }
}

/// The voters of a heartbeat's certificate, once every vote in it is checked: at most
/// [`MAX_CERT`], each for `candidate` in `term`, from distinct voters, each signed by its voter.
/// `None` if any vote is bad (a forger gets one signature check per vote it sends, no more).
fn certificate_voters(
    topic: &str,
    candidate: PeerId,
    term: u64,
    cert: &[Vote],
) -> Option<Vec<PeerId>> {
    if cert.len() > MAX_CERT {
        return None;
    }
    let mut voters: Vec<PeerId> = Vec::with_capacity(cert.len());
    for v in cert {
        if v.term != term || v.candidate != candidate || voters.contains(&v.voter) {
            return None;
        }
        voters.push(v.voter);
    }
    cert.iter().all(|v| v.verifies(topic)).then_some(voters)
}

/// Takes in an accepted batch and starts applying what is addressed to this node.
fn take_batch(ctx: &Arc<Ctx>, from: PeerId, batch: DecisionBatch) {
    let mut st = ctx.balance.state();
    if !st.view.is_new_batch(from, &batch) {
        drop(st);
        ctx.balance.count("decisions: replayed batch");
        return;
    }
    st.view.on_batch(from, &batch);
    // The root of a delegated file learns where to push updates.
    for item in &batch.items {
        st.holdings.note_decision(ctx.local, &item.decision);
    }
    drop(st);
    for (idx, item) in batch.items.into_iter().enumerate() {
        if !item.decision.involves(ctx.local) {
            continue;
        }
        let id = wire::DecisionId {
            term: batch.term,
            seq: batch.seq,
            idx: idx as u32,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move { apply::apply(&ctx, id, item).await });
    }
}
