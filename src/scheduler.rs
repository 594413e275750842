//! The scheduler: which task starts next, in which slot, and what a finished task means
//! for the rest of the graph. A pure state machine: it spawns nothing and never waits;
//! the driver (`run`) asks it for starts, tells it of ends, and carries out the effects
//! it returns (close a queue, drop a queue's items, stop the run).
//!
//! Invariants:
//! - At most `pool` tasks hold pool slots, and at most `concurrency` tasks of a job run.
//!   Two kinds of task run beyond the pool, in slots numbered from `pool` up: a
//!   streaming consumer (`stdin = { queue }`), which lives as long as its producers, and
//!   the first task of an item consumer whose queue is full while every slot is taken
//!   (otherwise producers holding every slot would wait on it forever).
//! - A job starts only after each job it needs finished with success; otherwise it is
//!   skipped, and so is everything that needs it.
//! - A queue is closed exactly once: when its last producer job is done or skipped.
//! - A task waiting to retry holds no slot (the pool counts processes): the driver says
//!   when it may start again ([`Scheduler::retry_later`], a "ready at" it computed) and
//!   what time it is ([`Scheduler::wake`]); once ready, it starts before any new task,
//!   in whichever slot is free. It still counts as running for its job (the job is not
//!   done), but not against `concurrency`, which counts processes.
//! - Resources (`uses`): a task starts only when all it uses is free; it holds it while
//!   its attempt runs and gives it back when the attempt ends, also when it then waits
//!   to retry. Tasks sent to the broker hold none here (each worker applies its own).
//! - Rates (`rate`): starts of the jobs naming a rate, retries included, are spread
//!   evenly: one every period / N, never a burst; a start that came late lets the
//!   next come sooner, but never sooner than 3/4 of the interval after it, so that
//!   the rate holds over time. The driver's clock ([`Scheduler::wake`]) is the time;
//!   [`Scheduler::next_wake`] says when a task held by a rate may start.
//! - No starvation: a task that does not fit waits in line, ordered by when it was
//!   first held back. The first in line *reserves* what it uses: a later task may
//!   start only if it leaves, of every resource the reserved task uses, enough for
//!   it (backfilling into what the reservation does not need). What is reserved only
//!   comes back as running tasks end, so the reserved task starts once those that
//!   held it at first are over; then the next in line reserves.
//! - Gates of the driver (`--memfree`, `--load`, [`Scheduler::set_gate`]): while one is
//!   closed, nothing starts; running tasks go on.
//! - Services (`service = true`): their tasks take no pool slot (slots from `pool` up).
//!   A job needing a service starts once every task of it is ready (the driver says so,
//!   [`Scheduler::service_ready`]); a service task that ends before its release breaks
//!   it: the jobs needing it that have not started are skipped. Once every job needing
//!   a service is over, [`Effect::Release`] tells the driver to stop its tasks (their
//!   ends then count as successes). No service outlives the jobs that need it.
//!
//! Longer than 400 lines: about half of it is the unit tests of the state machine.

use crate::jobfile::items_file::ItemReader;
use crate::jobfile::{each_map, EachMap, Items, JobFile, JobId, QueueId, When};
use crate::queue::Take;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the scheduler needs from the queues.
pub trait Queues {
    fn try_take(&self, queue: QueueId) -> Take;
    fn is_full(&self, queue: QueueId) -> bool;
    /// No item waits in the queue.
    fn is_empty(&self, queue: QueueId) -> bool;
    /// Producer tasks blocked on the queue being full (each holds an idle slot).
    fn blocked_producers(&self, queue: QueueId) -> usize;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub job: JobId,
    pub index: u64,
    pub item: Vec<u8>,
    pub slot: usize,
    /// The item could not be read (an items file changed or became unreadable during
    /// the run): the task fails with this message without running.
    pub problem: Option<String>,
    /// What the task is and why it runs: filled in by the run (the scheduler does not
    /// look at it).
    pub id: Option<crate::state::decision::TaskId>,
    /// Another attempt of a task that waited to retry: the number the driver gave it
    /// (`retry_later`). Its item is then not carried here (the driver kept the task).
    pub retry: Option<u64>,
    /// How long it could have started but for a resource or a rate.
    pub waited: Duration,
}

/// A task that may be held back: the next task of a job, or a retry (by its number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Candidate {
    Job(JobId),
    Retry(u64),
}

/// What held a task back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not enough of a resource is free (`reserved`: it is, but kept for a task that
    /// waited longer).
    Resource {
        resource: crate::jobfile::ResourceId,
        reserved: bool,
    },
    Rate(crate::jobfile::RateId),
}

/// A candidate held back: its place in line, since when, and whether a resource (not
/// only a rate or a reservation) holds it.
#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u64,
    since: Instant,
    short: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// No producer is left: the consumer drains what is there and ends.
    Close(QueueId),
    /// The consumer will never run: drop what producers write.
    Discard(QueueId),
    /// A job will not run: its tasks are reported as skipped.
    Skipped(JobId),
    /// fail_fast: a task failed, stop everything.
    StopRun,
    /// A task of a job needing another item by item will not run: the needed task
    /// `because` (job, index) failed (`failed`) or was skipped.
    TaskSkipped {
        job: JobId,
        index: u64,
        because: (JobId, u64),
        failed: bool,
    },
    /// After fail-fast: every task the stop concerned has ended; the jobs that run
    /// after a stop (`when = "always"` or `"failure"`) may start now, with the run's
    /// stop switch back to running.
    Resume,
    /// Nothing that needs this service is left to start or running: its tasks are
    /// stopped, and their ends count as successes.
    Release(JobId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Active,
    Done {
        ok: bool,
    },
    Skipped,
    /// Fail-fast stopped the run before the job was over (its tasks not started are
    /// reported as stopped by fail-fast).
    Stopped,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done { .. } | Phase::Skipped | Phase::Stopped)
    }
}

/// What stopped the run: fail-fast (jobs with `when` may still run once every stopped
/// task ended), or anything else (a signal, a bug, a lost broker): nothing more starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    FailFast { settled: bool },
    Halt,
}

/// The tasks of a job needing another item by item: which may start.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    /// Per task: how many of the tasks it needs have not succeeded yet.
    pending: Vec<u32>,
    /// Per task: started or skipped (no longer waiting).
    settled: Vec<bool>,
    /// Tasks whose needed tasks all succeeded, not started yet, in that order.
    ready: VecDeque<u64>,
}

impl Gates {
    /// The tasks neither started nor skipped (for the records of a run that stopped).
    pub fn unsettled(&self) -> impl Iterator<Item = u64> + '_ {
        self.settled
            .iter()
            .enumerate()
            .filter(|(_, s)| !**s)
            .map(|(i, _)| i as u64)
    }
}

/// A job needed item by item by `dependent`: `map` takes the needed job's task index to
/// the dependent's.
#[derive(Debug, Clone)]
struct Link {
    dependent: JobId,
    map: EachMap,
}

#[derive(Debug, Clone)]
pub struct JobState {
    pub phase: Phase,
    pub next: u64,
    pub total: Option<u64>,
    /// Tasks started and not ended, those waiting to retry included.
    pub running: usize,
    /// Of `running`, the tasks waiting to retry: they hold no slot.
    pub waiting: usize,
    pub finished: u64,
    pub failed: u64,
    /// Tasks skipped one by one (item by item).
    pub skipped: u64,
    /// For a job needing others item by item: which of its tasks may start.
    pub gates: Option<Gates>,
    queue_closed: bool,
    /// A service: how many of its tasks are ready.
    pub ready: u64,
    /// A service: released (its tasks are being stopped, and start no more).
    pub released: bool,
    /// A service: a task of it ended before its release (the jobs needing it that have
    /// not started are skipped).
    pub broken: bool,
}

pub struct Scheduler {
    file: Arc<JobFile>,
    /// Per job with an items file: the reader its items come from, opened on first use.
    readers: Vec<Option<ItemReader>>,
    pub jobs: Vec<JobState>,
    pool: usize,
    free: BTreeSet<usize>,
    free_extra: BTreeSet<usize>,
    /// Extra slots in use that blocked producers lent (see `can_lend`).
    lent: BTreeSet<usize>,
    next_extra: usize,
    open_producers: Vec<usize>,
    fail_fast: bool,
    stop: Option<Stop>,
    /// Per job: the jobs that need it item by item.
    links: Vec<Vec<Link>>,
    /// Per job: the jobs that need it (for services: who keeps it running).
    users: Vec<Vec<JobId>>,
    effects: Vec<Effect>,
    /// Jobs in the order starts are considered: consumers first, so queues drain.
    order: Vec<JobId>,
    /// Distributed runs: jobs whose tasks go to the broker instead of a pool slot.
    remote: Vec<bool>,
    remote_window: usize,
    remote_running: usize,
    /// Tasks waiting to retry, by the time they may start again: (ready at, number) to
    /// (job, index).
    delayed: BTreeMap<(Instant, u64), (JobId, u64)>,
    /// Tasks whose delay is over, in the order they became ready: (number, (job, index)).
    ready: VecDeque<(u64, (JobId, u64))>,
    next_retry: u64,
    /// What one machine has of each resource, and what running tasks hold.
    capacity: Vec<u64>,
    in_use: Vec<u64>,
    /// Per rate: when its next start may come; whether a task waited for it in the
    /// last look.
    rate_next: Vec<Option<Instant>>,
    rate_held: Vec<bool>,
    /// The driver's clock, as of its last [`Scheduler::wake`].
    now: Instant,
    /// A gate of the driver is closed: nothing starts.
    gate_closed: bool,
    /// Tasks held back by a resource or a rate, in line.
    held: HashMap<Candidate, Held>,
    next_seq: u64,
    /// The first in line and what it uses, for this look.
    reserved: Option<(Candidate, Vec<(crate::jobfile::ResourceId, u64)>)>,
    /// What held back the first task the last look could not start.
    hold: Option<Hold>,
    /// The last look found tasks a closed gate kept from starting.
    gate_holds: bool,
}

/// A task waiting to retry, given up because the run stops: see [`Scheduler::abandon_waiting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned {
    pub job: JobId,
    pub index: u64,
    pub retry: u64,
}

/// The slot of a task sent to the broker.
pub const REMOTE: usize = usize::MAX;

impl Scheduler {
    pub fn new(file: Arc<JobFile>, pool: usize, fail_fast: bool) -> Scheduler {
        let jobs = file
            .jobs
            .iter()
            .map(|job| JobState {
                phase: Phase::Waiting,
                next: 0,
                total: if job.is_streaming() {
                    Some(1)
                } else {
                    job.items.count()
                },
                running: 0,
                waiting: 0,
                finished: 0,
                failed: 0,
                skipped: 0,
                gates: None,
                queue_closed: false,
                ready: 0,
                released: false,
                broken: false,
            })
            .collect();
        let mut jobs: Vec<JobState> = jobs;
        let mut links: Vec<Vec<Link>> = vec![Vec::new(); file.jobs.len()];
        for job in &file.jobs {
            if job.each.is_empty() {
                continue;
            }
            let n = jobs[job.id].total.unwrap_or(0);
            jobs[job.id].gates = Some(Gates {
                pending: vec![job.each.len() as u32; n as usize],
                settled: vec![false; n as usize],
                ready: VecDeque::new(),
            });
            for &dep in &job.each {
                // Checked at load: the labels match (the map is from the dependent's
                // index to the needed job's; the links go the other way).
                let map = match each_map(&file, job.id, dep) {
                    Some(EachMap::Indexes(to_dep)) => {
                        let mut from_dep = vec![0; to_dep.len()];
                        for (i, &d) in to_dep.iter().enumerate() {
                            if let Some(slot) = from_dep.get_mut(d as usize) {
                                *slot = i as u64;
                            }
                        }
                        EachMap::Indexes(from_dep)
                    }
                    _ => EachMap::Same,
                };
                links[dep].push(Link {
                    dependent: job.id,
                    map,
                });
            }
        }
        let mut users: Vec<Vec<JobId>> = vec![Vec::new(); file.jobs.len()];
        for job in &file.jobs {
            for &dep in &job.needs {
                users[dep].push(job.id);
            }
        }
        let mut order: Vec<JobId> = (0..file.jobs.len()).collect();
        order.sort_by_key(|&j| file.jobs[j].consumes().is_none());
        let mut scheduler = Scheduler {
            readers: file.jobs.iter().map(|_| None).collect(),
            file: file.clone(),
            jobs,
            pool: pool.max(1),
            free: (0..pool.max(1)).collect(),
            free_extra: BTreeSet::new(),
            lent: BTreeSet::new(),
            next_extra: pool.max(1),
            open_producers: file.queues.iter().map(|q| q.producers.len()).collect(),
            fail_fast,

            stop: None,
            links,
            users,
            effects: Vec::new(),
            order,
            remote: vec![false; file.jobs.len()],
            remote_window: 0,
            remote_running: 0,
            delayed: BTreeMap::new(),
            ready: VecDeque::new(),
            next_retry: 0,
            capacity: file.resources.iter().map(|r| r.capacity).collect(),
            in_use: vec![0; file.resources.len()],
            rate_next: vec![None; file.rates.len()],
            rate_held: vec![false; file.rates.len()],
            now: Instant::now(),
            gate_closed: false,
            held: HashMap::new(),
            next_seq: 0,
            reserved: None,
            hold: None,
            gate_holds: false,
        };
        scheduler.activate_ready();
        scheduler
    }

    /// Sends the tasks of `remote` jobs to the broker (slot [`REMOTE`]), at most `window`
    /// of them unfinished at once.
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub fn set_remote(&mut self, remote: Vec<bool>, window: usize) {
        // Services run where the run is driven, never on workers.
        self.remote = remote
            .into_iter()
            .zip(&self.file.jobs)
            .map(|(r, job)| r && !job.service)
            .collect();
        self.remote_window = window.max(1);
    }

    /// Whether effects wait to be taken (a `next_start` that started nothing may still
    /// have ended a job, closing its queue).
    pub fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    /// Effects produced since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The next task to start now, if any: a task whose retry delay is over first.
    pub fn next_start(&mut self, queues: &dyn Queues) -> Option<Start> {
        if matches!(
            self.stop,
            Some(Stop::Halt | Stop::FailFast { settled: false })
        ) {
            // Nothing starts while the run stops: no rate holds a task back, so no
            // rate's next turn is a time to wake for (a stale one in the past would
            // wake the driver for ever).
            self.rate_held.fill(false);
            return None;
        }
        self.hold = None;
        self.rate_held.fill(false);
        if self.gate_closed {
            let waiting =
                !self.ready.is_empty() || (0..self.jobs.len()).any(|j| self.has_task(j, queues));
            self.gate_holds = waiting;
            return None;
        }
        self.gate_holds = false;
        self.reserved = self.first_in_line(queues);
        if let Some(start) = self.next_retry(queues) {
            return Some(start);
        }
        for i in 0..self.order.len() {
            let j = self.order[i];
            if self.jobs[j].phase != Phase::Active || !self.may_start(j) {
                continue;
            }
            if let Some(start) = self.start_of(j, queues) {
                return Some(start);
            }
        }
        None
    }

    /// Whether job `j` may start tasks now: always, unless fail-fast stopped the run;
    /// then only the jobs that run after a stop (`when = "always"` or `"failure"`).
    fn may_start(&self, j: JobId) -> bool {
        self.stop.is_none() || self.after_stop(j)
    }

    fn after_stop(&self, j: JobId) -> bool {
        self.file.jobs[j].when != When::Success
    }

    /// A task of job `j` in a slot (running a process), not waiting to retry.
    fn in_slots(&self, j: JobId) -> usize {
        self.jobs[j].running - self.jobs[j].waiting
    }

    /// Another attempt of a task that failed, once its delay is over: it holds no slot
    /// while it waits; it gets one by the same rules as a new task of its job.
    pub fn retry_later(&mut self, job: JobId, index: u64, slot: usize, ready_at: Instant) -> u64 {
        self.free_slot(slot);
        self.give_back(job, slot);
        self.jobs[job].waiting += 1;
        let retry = self.next_retry;
        self.next_retry += 1;
        self.delayed.insert((ready_at, retry), (job, index));
        retry
    }

    /// The driver's clock: tasks whose delay is over by `now` may start, and rates are
    /// measured against it.
    pub fn wake(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, retry), job) = entry.remove_entry();
            self.ready.push_back((retry, job));
        }
    }

    /// When the next waiting task may start again (for the driver to wake then): the
    /// end of a retry delay, or the next start a rate allows a task held by it.
    pub fn next_wake(&self) -> Option<Instant> {
        let retry = self.delayed.keys().next().map(|&(at, _)| at);
        let rate = (0..self.rate_next.len())
            .filter(|&r| self.rate_held[r])
            .filter_map(|r| self.rate_next[r])
            .min();
        match (retry, rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The driver's gates (`--memfree`, `--load`): while closed, nothing starts.
    pub fn set_gate(&mut self, closed: bool) {
        self.gate_closed = closed;
    }

    /// What held back the first task the last look could not start, in words:
    /// `db 2/2 in use`, `rate dns 5/s`.
    pub fn holding(&self) -> Option<String> {
        Some(match self.hold? {
            Hold::Resource { resource, .. } => {
                let r = &self.file.resources[resource];
                format!(
                    "{} {}/{} in use",
                    r.name,
                    r.amount(self.in_use[resource]),
                    r.amount(self.capacity[resource])
                )
            }
            Hold::Rate(rate) => {
                let r = &self.file.rates[rate];
                format!("rate {} {}", r.name, r.text)
            }
        })
    }

    /// Whether the last look found tasks that a closed gate kept from starting.
    pub fn gate_holds(&self) -> bool {
        self.gate_holds
    }

    /// What running tasks hold of each resource now.
    #[cfg(test)]
    pub fn in_use(&self) -> &[u64] {
        &self.in_use
    }

    /// Whether job `j` has a task to start now, resources and rates aside.
    fn has_task(&self, j: JobId, queues: &dyn Queues) -> bool {
        let job = &self.file.jobs[j];
        let state = &self.jobs[j];
        if state.phase != Phase::Active || !self.may_start(j) {
            return false;
        }
        if job.is_streaming() {
            return state.next == 0;
        }
        match job.items {
            Items::Queue(q) => !state.queue_closed && !queues.is_empty(q),
            _ => self.peek_next(j).is_some(),
        }
    }

    /// The task first in line among those a resource holds back, and what it uses.
    fn first_in_line(
        &self,
        queues: &dyn Queues,
    ) -> Option<(Candidate, Vec<(crate::jobfile::ResourceId, u64)>)> {
        if self.held.is_empty() {
            return None;
        }
        let (c, _) = self
            .held
            .iter()
            .filter(|(_, h)| h.short)
            .filter(|(c, _)| match c {
                Candidate::Job(j) => self.has_task(*j, queues),
                Candidate::Retry(n) => self.ready.iter().any(|(r, _)| r == n),
            })
            .min_by_key(|(_, h)| h.seq)?;
        let job = match *c {
            Candidate::Job(j) => j,
            Candidate::Retry(n) => self.ready.iter().find(|(r, _)| *r == n)?.1 .0,
        };
        Some((*c, self.file.jobs[job].uses.clone()))
    }

    /// Whether candidate `c` (a task of job `j`) may start as far as resources and its
    /// rate go; what holds it if not.
    fn admit(&self, c: Candidate, j: JobId) -> Result<(), Hold> {
        let job = &self.file.jobs[j];
        if !self.remote[j] {
            let reserve = match &self.reserved {
                Some((first, uses)) if *first != c => uses.as_slice(),
                _ => &[],
            };
            for &(r, n) in &job.uses {
                let used = self.in_use[r] + n;
                if used > self.capacity[r] {
                    return Err(Hold::Resource {
                        resource: r,
                        reserved: false,
                    });
                }
                let kept: u64 = reserve.iter().filter(|u| u.0 == r).map(|u| u.1).sum();
                if used + kept > self.capacity[r] {
                    return Err(Hold::Resource {
                        resource: r,
                        reserved: true,
                    });
                }
            }
        }
        if let Some(rate) = job.rate {
            if self.rate_next[rate].is_some_and(|next| next > self.now) {
                return Err(Hold::Rate(rate));
            }
        }
        Ok(())
    }

    /// Candidate `c` is held back by `hold`: it joins the line (or keeps its place).
    fn held_back(&mut self, c: Candidate, hold: Hold) {
        let seq = self.next_seq;
        let now = self.now;
        let entry = self.held.entry(c).or_insert(Held {
            seq,
            since: now,
            short: false,
        });
        if entry.seq == seq {
            self.next_seq += 1;
        }
        entry.short = matches!(
            hold,
            Hold::Resource {
                reserved: false,
                ..
            }
        );
        if let Hold::Rate(rate) = hold {
            self.rate_held[rate] = true;
        }
        if self.hold.is_none() {
            self.hold = Some(hold);
        }
    }

    /// Candidate `c`, a task of job `j`, starts in `slot`: it takes what it uses and
    /// its rate's turn. Returns how long it was held back.
    fn take(&mut self, c: Candidate, j: JobId, slot: usize) -> Duration {
        let waited = match self.held.is_empty() {
            true => Duration::ZERO,
            false => self.held.remove(&c).map_or(Duration::ZERO, |h| {
                self.now.saturating_duration_since(h.since)
            }),
        };
        let job = &self.file.jobs[j];
        if slot != REMOTE {
            for &(r, n) in &job.uses {
                self.in_use[r] += n;
            }
        }
        if let Some(rate) = job.rate {
            let interval = self.file.rates[rate].interval();
            let soonest = self.now + interval * 3 / 4;
            let next = match self.rate_next[rate] {
                Some(prev) => (prev + interval).max(soonest),
                None => self.now + interval,
            };
            self.rate_next[rate] = Some(next);
        }
        waited
    }

    /// A task of job `j` in `slot` gives back what it used.
    fn give_back(&mut self, j: JobId, slot: usize) {
        if slot == REMOTE {
            return;
        }
        for &(r, n) in &self.file.jobs[j].uses {
            self.in_use[r] -= n;
        }
    }

    /// Whether `uses` fits what is free now, leaving what the no-starvation line
    /// reserved for the task it holds back.
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub fn fits(&self, uses: &[(crate::jobfile::ResourceId, u64)]) -> bool {
        let reserve = self
            .reserved
            .as_ref()
            .map_or(&[][..], |(_, u)| u.as_slice());
        uses.iter().all(|&(r, n)| {
            let kept: u64 = reserve.iter().filter(|u| u.0 == r).map(|u| u.1).sum();
            self.in_use[r] + n + kept <= self.capacity[r]
        })
    }

    /// The coordinator's own share of a distributed run takes `uses` for a task it
    /// runs, if it fits now ([`Scheduler::fits`]): one count for this machine, with the
    /// tasks the scheduler starts here. False if it does not.
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub fn lend(&mut self, uses: &[(crate::jobfile::ResourceId, u64)]) -> bool {
        if !self.fits(uses) {
            return false;
        }
        for &(r, n) in uses {
            self.in_use[r] += n;
        }
        true
    }

    /// What the own share took with [`Scheduler::lend`] is free again.
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub fn lent_back(&mut self, uses: &[(crate::jobfile::ResourceId, u64)]) {
        for &(r, n) in uses {
            self.in_use[r] = self.in_use[r].saturating_sub(n);
        }
    }

    /// The run stops: every task waiting to retry ends (without another attempt) and is
    /// counted as failed; the driver records each with what its last attempt left.
    /// After fail-fast, the tasks of jobs that run after a stop keep waiting.
    pub fn abandon_waiting(&mut self) -> Vec<Abandoned> {
        let keep = |s: &Scheduler, job: JobId| s.stop != Some(Stop::Halt) && s.after_stop(job);
        let mut waiting: Vec<(u64, (JobId, u64))> = Vec::new();
        let ready = std::mem::take(&mut self.ready);
        for entry in ready {
            if keep(self, entry.1 .0) {
                self.ready.push_back(entry);
            } else {
                waiting.push(entry);
            }
        }
        let delayed = std::mem::take(&mut self.delayed);
        for ((at, retry), task) in delayed {
            if keep(self, task.0) {
                self.delayed.insert((at, retry), task);
            } else {
                waiting.push((retry, task));
            }
        }
        let mut abandoned = Vec::new();
        for (retry, (job, index)) in waiting {
            self.jobs[job].waiting -= 1;
            let allowed = self.file.jobs[job].allow_failure;
            self.ended(job, index, false, allowed);
            abandoned.push(Abandoned { job, index, retry });
        }
        abandoned
    }

    /// Whether the run was stopped (nothing more starts, but for the jobs that run after
    /// fail-fast).
    pub fn is_stopping(&self) -> bool {
        self.stop.is_some()
    }

    fn next_retry(&mut self, queues: &dyn Queues) -> Option<Start> {
        for i in 0..self.ready.len() {
            let (retry, (j, _)) = self.ready[i];
            if !self.may_start(j) {
                continue;
            }
            let limit = self.file.jobs[j].concurrency.unwrap_or(usize::MAX);
            if self.in_slots(j) >= limit {
                continue;
            }
            if let Err(hold) = self.admit(Candidate::Retry(retry), j) {
                self.held_back(Candidate::Retry(retry), hold);
                continue;
            }
            let Some(slot) = self.retry_slot(j, queues) else {
                continue;
            };
            let (_, (_, index)) = self.ready.remove(i).unwrap_or((retry, (j, 0)));
            let waited = self.take(Candidate::Retry(retry), j, slot);
            let state = &mut self.jobs[j];
            state.waiting -= 1;
            return Some(Start {
                waited,
                job: j,
                index,
                item: Vec::new(),
                slot,
                problem: None,
                id: None,
                retry: Some(retry),
            });
        }
        None
    }

    /// A slot for a retry of job `j`, by the rules its new tasks start by.
    fn retry_slot(&mut self, j: JobId, queues: &dyn Queues) -> Option<usize> {
        let file = self.file.clone();
        let job = &file.jobs[j];
        if job.is_streaming() {
            return Some(self.extra_slot(false));
        }
        if let Some(slot) = self.pool_slot() {
            return Some(slot);
        }
        if let Items::Queue(q) = job.items {
            if self.in_slots(j) == 0 && queues.is_full(q) {
                return Some(self.extra_slot(false));
            }
        }
        self.can_lend(queues).then(|| self.extra_slot(true))
    }

    fn start_of(&mut self, j: JobId, queues: &dyn Queues) -> Option<Start> {
        let file = self.file.clone();
        let job = &file.jobs[j];
        let limit = job.concurrency.unwrap_or(usize::MAX);
        if self.in_slots(j) >= limit {
            return None;
        }
        if self.has_task(j, queues) {
            if let Err(hold) = self.admit(Candidate::Job(j), j) {
                self.held_back(Candidate::Job(j), hold);
                return None;
            }
        }
        let state = &self.jobs[j];
        if job.service {
            // Beyond the pool: a service holds no slot a task could use.
            if state.released {
                return None;
            }
            let next = self.peek_next(j)?;
            let slot = self.extra_slot(false);
            let (item, problem) = self.item_at(j, next);
            return Some(self.begin_with(j, item, slot, problem));
        }
        if self.remote[j] {
            if self.remote_running >= self.remote_window {
                return None;
            }
            let item = match &job.items {
                Items::Queue(q) => match queues.try_take(*q) {
                    Take::Item(item) => item,
                    Take::Empty => return None,
                    Take::Closed => {
                        self.jobs[j].queue_closed = true;
                        self.check_done(j);
                        return None;
                    }
                },
                _ => {
                    let next = self.peek_next(j)?;
                    let (item, problem) = self.item_at(j, next);
                    self.remote_running += 1;
                    return Some(self.begin_with(j, item, REMOTE, problem));
                }
            };
            self.remote_running += 1;
            return Some(self.begin(j, item, REMOTE));
        }
        if job.is_streaming() {
            if state.next > 0 {
                return None;
            }
            let slot = self.extra_slot(false);
            return Some(self.begin(j, Vec::new(), slot));
        }
        match &job.items {
            Items::Queue(q) => {
                let q = *q;
                if state.queue_closed {
                    return None;
                }
                // Beyond the pool: the first task when the queue is full and every slot
                // is taken (its producers are about to block), or a slot lent by a
                // blocked producer.
                let slot = if !self.free.is_empty() {
                    None
                } else if self.in_slots(j) == 0 && queues.is_full(q) {
                    Some(false)
                } else if self.can_lend(queues) {
                    Some(true)
                } else {
                    return None;
                };
                match queues.try_take(q) {
                    Take::Item(item) => {
                        let slot = match slot {
                            Some(lent) => self.extra_slot(lent),
                            None => self.pool_slot().expect("a free slot"),
                        };
                        Some(self.begin(j, item, slot))
                    }
                    Take::Empty => None,
                    Take::Closed => {
                        self.jobs[j].queue_closed = true;
                        self.check_done(j);
                        None
                    }
                }
            }
            _ => {
                let next = self.peek_next(j)?;
                let slot = match self.pool_slot() {
                    Some(slot) => slot,
                    None if self.can_lend(queues) => self.extra_slot(true),
                    None => return None,
                };
                let (item, problem) = self.item_at(j, next);
                Some(self.begin_with(j, item, slot, problem))
            }
        }
    }

    /// Whether a producer blocked on its full queue has a slot to lend: it holds one it
    /// does not use, and without lending it, producers holding every slot would wait
    /// forever for a consumer (or for a job the consumer needs) that cannot start. Each
    /// blocked producer lends one slot, to whatever task can start.
    fn can_lend(&self, queues: &dyn Queues) -> bool {
        let blocked: usize = (0..self.file.queues.len())
            .map(|q| queues.blocked_producers(q))
            .sum();
        self.lent.len() < blocked
    }

    /// The index of the next task of list, range or file job `j` to start, if one may.
    fn peek_next(&self, j: JobId) -> Option<u64> {
        let state = &self.jobs[j];
        match &state.gates {
            Some(gates) => gates.ready.front().copied(),
            None => (state.next < state.total.unwrap_or(0)).then_some(state.next),
        }
    }

    fn begin(&mut self, j: JobId, item: Vec<u8>, slot: usize) -> Start {
        self.begin_with(j, item, slot, None)
    }

    fn begin_with(
        &mut self,
        j: JobId,
        item: Vec<u8>,
        slot: usize,
        problem: Option<String>,
    ) -> Start {
        let state = &mut self.jobs[j];
        let index = match &mut state.gates {
            Some(gates) => {
                let index = gates.ready.pop_front().unwrap_or(state.next);
                if let Some(settled) = gates.settled.get_mut(index as usize) {
                    *settled = true;
                }
                index
            }
            None => state.next,
        };
        // With gates, `next` counts the tasks started or skipped.
        state.next += 1;
        state.running += 1;
        let waited = self.take(Candidate::Job(j), j, slot);
        Start {
            job: j,
            index,
            item,
            slot,
            problem,
            id: None,
            retry: None,
            waited,
        }
    }

    /// The item of a list, range or file job at `index`, or why it cannot be had.
    fn item_at(&mut self, j: JobId, index: u64) -> (Vec<u8>, Option<String>) {
        match &self.file.jobs[j].items {
            Items::File { path, .. } => {
                let reader = self.readers[j].get_or_insert_with(|| ItemReader::new(path));
                match reader.item(index) {
                    Ok(item) => (item.into_bytes(), None),
                    Err(problem) => {
                        // The job ends here: this task fails with the reason, and the
                        // items after it are not run (one message, not one per item).
                        let state = &mut self.jobs[j];
                        let total = state.total.unwrap_or(index + 1);
                        state.total = Some(index + 1);
                        let rest = total.saturating_sub(index + 1);
                        let problem = match rest {
                            0 => problem.to_string(),
                            _ => format!(
                                "{problem}; the job's {rest} items after this one are not run"
                            ),
                        };
                        (Vec::new(), Some(problem))
                    }
                }
            }
            items => (
                items.in_memory(index).unwrap_or_default().into_bytes(),
                None,
            ),
        }
    }

    fn pool_slot(&mut self) -> Option<usize> {
        self.free.pop_first()
    }

    /// A slot beyond the pool; `lent`: one lent by a blocked producer.
    fn extra_slot(&mut self, lent: bool) -> usize {
        let slot = self.free_extra.pop_first().unwrap_or_else(|| {
            self.next_extra += 1;
            self.next_extra - 1
        });
        if lent {
            self.lent.insert(slot);
        }
        slot
    }

    /// A task ended. `ok`: it succeeded; `allowed`: its failure does not fail the job.
    pub fn finished(&mut self, job: JobId, index: u64, slot: usize, ok: bool, allowed: bool) {
        self.free_slot(slot);
        self.give_back(job, slot);
        self.ended(job, index, ok, allowed);
    }

    fn free_slot(&mut self, slot: usize) {
        if slot == REMOTE {
            self.remote_running -= 1;
        } else if slot < self.pool {
            self.free.insert(slot);
        } else {
            self.free_extra.insert(slot);
            self.lent.remove(&slot);
        }
    }

    fn ended(&mut self, job: JobId, index: u64, ok: bool, allowed: bool) {
        let service = self.file.jobs[job].service;
        let state = &mut self.jobs[job];
        state.running -= 1;
        state.finished += 1;
        if service && !state.released {
            state.broken = true;
        }
        if !ok && !allowed {
            state.failed += 1;
            if self.fail_fast && self.stop.is_none() {
                // A distributed run's workers stop serving a stopped run: nothing runs
                // after it there.
                self.stop = Some(if self.remote.iter().any(|&r| r) {
                    Stop::Halt
                } else {
                    Stop::FailFast { settled: false }
                });
                self.effects.push(Effect::StopRun);
            }
        }
        self.task_over(job, index, ok || allowed, !ok);
        self.check_done(job);
        self.settle_stopped();
        self.activate_ready();
        self.check_release();
    }

    /// Task `index` of service `job` is ready: the jobs needing it may start once all
    /// of its tasks are.
    pub fn service_ready(&mut self, job: JobId, _index: u64) {
        self.jobs[job].ready += 1;
        self.activate_ready();
        self.check_release();
    }

    /// Releases every service that nothing needing it keeps running any more: every
    /// job that needs it is over (done, skipped or stopped).
    fn check_release(&mut self) {
        // A release may end a service that another service's release waits for.
        while self.release_some() {}
    }

    fn release_some(&mut self) -> bool {
        let mut released = false;
        for j in 0..self.jobs.len() {
            if !self.file.jobs[j].service {
                continue;
            }
            let state = &self.jobs[j];
            if state.released || state.phase != Phase::Active {
                continue;
            }
            // Without users, a service is released once ready (or broken).
            let all_ready = state.total.is_some_and(|t| state.ready >= t);
            let over = match self.users[j].is_empty() {
                true => all_ready || state.broken,
                false => self.users[j].iter().all(|&u| self.jobs[u].phase.is_final()),
            };
            if !over {
                continue;
            }
            self.jobs[j].released = true;
            released = true;
            if self.jobs[j].running > 0 {
                self.effects.push(Effect::Release(j));
            }
            self.check_done(j);
        }
        released
    }

    /// How job `dep` stands for the jobs needing it: a service counts as done once
    /// every task of it is ready, and as failed once broken.
    fn as_needed(&self, dep: JobId) -> Phase {
        let state = &self.jobs[dep];
        if !self.file.jobs[dep].service || state.phase != Phase::Active {
            return state.phase;
        }
        if state.broken {
            Phase::Done { ok: false }
        } else if state.total.is_some_and(|t| state.ready >= t) {
            Phase::Done { ok: true }
        } else {
            state.phase
        }
    }

    /// Task `index` of `job` is over: succeeded (`ok`, an allowed failure included), or
    /// failed (`failed`) or was skipped. The tasks that need it item by item learn of it:
    /// one that waited on it alone may start; if it did not succeed, they are skipped,
    /// and so are the tasks that need those, item by item.
    fn task_over(&mut self, job: JobId, index: u64, ok: bool, failed: bool) {
        for k in 0..self.links[job].len() {
            let (d, i) = {
                let link = &self.links[job][k];
                (link.dependent, link.map.of(index))
            };
            let Some(gates) = self.jobs[d].gates.as_mut() else {
                continue;
            };
            let at = i as usize;
            if gates.settled.get(at) != Some(&false) {
                continue;
            }
            if ok {
                gates.pending[at] = gates.pending[at].saturating_sub(1);
                if gates.pending[at] == 0 {
                    gates.ready.push_back(i);
                }
                continue;
            }
            gates.settled[at] = true;
            gates.ready.retain(|&r| r != i);
            self.jobs[d].next += 1;
            self.jobs[d].skipped += 1;
            self.effects.push(Effect::TaskSkipped {
                job: d,
                index: i,
                because: (job, index),
                failed,
            });
            self.task_over(d, i, false, false);
            self.check_done(d);
        }
    }

    /// After fail-fast, once no task runs any more: the jobs that are not over are
    /// stopped, and the jobs that run after a stop may start ([`Effect::Resume`]).
    fn settle_stopped(&mut self) {
        // Tasks of the jobs that run after a stop may wait to retry meanwhile.
        let busy = (0..self.jobs.len()).any(|j| {
            let state = &self.jobs[j];
            state.running > if self.after_stop(j) { state.waiting } else { 0 }
        });
        if self.stop != Some(Stop::FailFast { settled: false }) || busy {
            return;
        }
        self.stop = Some(Stop::FailFast { settled: true });
        let mut after = false;
        for j in 0..self.jobs.len() {
            if self.jobs[j].phase.is_final() {
                continue;
            }
            if self.after_stop(j) {
                after = true;
            } else {
                // Its queue closes (a consumer that runs after a stop drains it) or
                // drops what is written (for producers that run after a stop).
                self.set_final(j, Phase::Stopped);
            }
        }
        if after {
            self.effects.push(Effect::Resume);
        }
        self.activate_ready();
    }

    /// Starts nothing more (Ctrl-C, a bug, a lost broker). Running tasks still report
    /// their end.
    pub fn stop(&mut self) {
        self.stop = Some(Stop::Halt);
    }

    pub fn running(&self) -> usize {
        self.jobs.iter().map(|j| j.running).sum()
    }

    /// Tasks running in this process's slots (not on workers).
    pub fn running_here(&self) -> usize {
        self.running() - self.remote_running
    }

    /// Nothing runs and nothing more will start.
    pub fn is_done(&self) -> bool {
        match self.stop {
            // A stopped run does not wait for tasks on workers: their results would
            // come back to nobody.
            Some(Stop::Halt) => return self.running() == self.remote_running,
            Some(Stop::FailFast { settled: false }) => return self.running() == 0,
            _ => {}
        }
        if self.running() > 0 {
            return false;
        }
        self.jobs.iter().all(|j| j.phase.is_final())
    }

    fn check_done(&mut self, j: JobId) {
        let file = self.file.clone();
        let job = &file.jobs[j];
        let state = &self.jobs[j];
        if state.phase != Phase::Active || state.running > 0 {
            return;
        }
        let complete = match (&job.items, job.is_streaming()) {
            _ if job.service && state.released => true,
            (_, true) => state.finished >= 1,
            (Items::Queue(_), _) => state.queue_closed,
            _ => state.next >= state.total.unwrap_or(0),
        };
        if complete {
            let ok = state.failed == 0 && state.skipped == 0;
            self.set_final(j, Phase::Done { ok });
            self.activate_ready();
        }
    }

    fn set_final(&mut self, j: JobId, phase: Phase) {
        self.jobs[j].phase = phase;
        if phase == Phase::Skipped {
            self.effects.push(Effect::Skipped(j));
        }
        if matches!(phase, Phase::Skipped | Phase::Stopped) {
            if let Some(q) = self.file.jobs[j].consumes() {
                self.effects.push(Effect::Discard(q));
            }
        }
        if let Some(q) = self.file.jobs[j].to {
            self.open_producers[q] -= 1;
            if self.open_producers[q] == 0 {
                self.effects.push(Effect::Close(q));
            }
        }
    }

    /// Activates every waiting job whose needs are met, skips those that cannot run.
    /// A job needing others item by item starts once the jobs it needs whole are done
    /// and those it needs item by item have started (its tasks then wait on theirs).
    /// A job with `when = "always"` starts once every job it needs is over; one with
    /// `when = "failure"` too, if one of them failed, was skipped or stopped (it is
    /// skipped otherwise). After a stop, only those two kinds start, and only once the
    /// stop is settled.
    fn activate_ready(&mut self) {
        if let Some(Stop::Halt | Stop::FailFast { settled: false }) = self.stop {
            return;
        }
        loop {
            let mut changed = false;
            let file = self.file.clone();
            for j in 0..self.jobs.len() {
                if self.jobs[j].phase != Phase::Waiting || !self.may_start(j) {
                    continue;
                }
                let job = &file.jobs[j];
                let mut ready = true;
                let mut over = true;
                let mut blocked = false;
                for &dep in &job.needs {
                    let each = job.each.contains(&dep);
                    match self.as_needed(dep) {
                        Phase::Done { ok: true } => {}
                        // Item by item: its tasks decide, one by one.
                        Phase::Done { ok: false } | Phase::Active if each => over = false,
                        Phase::Done { ok: false } | Phase::Skipped | Phase::Stopped => {
                            blocked = true
                        }
                        _ => {
                            ready = false;
                            over = false;
                        }
                    }
                }
                let phase = match job.when {
                    When::Success if blocked => Phase::Skipped,
                    When::Success if ready => Phase::Active,
                    When::Success => continue,
                    _ if !over => continue,
                    When::Failure if !blocked => Phase::Skipped,
                    _ => Phase::Active,
                };
                changed = true;
                if phase == Phase::Skipped {
                    self.set_final(j, phase);
                    continue;
                }
                self.jobs[j].phase = Phase::Active;
                let state = &self.jobs[j];
                if state.total == Some(0) {
                    self.set_final(j, Phase::Done { ok: true });
                } else if state.gates.is_some() {
                    self.check_done(j);
                }
            }
            if !changed {
                // A job over may leave a service with nothing needing it.
                self.check_release();
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "scheduler_sim.rs"]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::parse;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::path::Path;

    fn file(source: &str) -> Arc<JobFile> {
        Arc::new(parse(Path::new("t.toml"), source.to_string()).unwrap())
    }

    /// In-memory queues: items pushed by the test, closed by the test.
    #[derive(Default)]
    struct FakeQueues {
        items: RefCell<Vec<VecDeque<Vec<u8>>>>,
        closed: RefCell<Vec<bool>>,
        capacity: usize,
        blocked: std::cell::Cell<usize>,
    }

    impl FakeQueues {
        fn new(n: usize, capacity: usize) -> FakeQueues {
            FakeQueues {
                items: RefCell::new(vec![VecDeque::new(); n]),
                closed: RefCell::new(vec![false; n]),
                capacity,
                blocked: std::cell::Cell::new(0),
            }
        }
        fn push(&self, q: usize, item: &str) {
            self.items.borrow_mut()[q].push_back(item.as_bytes().to_vec());
        }
    }

    impl Queues for FakeQueues {
        fn try_take(&self, q: QueueId) -> Take {
            match self.items.borrow_mut()[q].pop_front() {
                Some(item) => Take::Item(item),
                None if self.closed.borrow()[q] => Take::Closed,
                None => Take::Empty,
            }
        }
        fn is_full(&self, q: QueueId) -> bool {
            self.items.borrow()[q].len() >= self.capacity
        }
        fn is_empty(&self, q: QueueId) -> bool {
            self.items.borrow()[q].is_empty()
        }
        fn blocked_producers(&self, _: QueueId) -> usize {
            self.blocked.get()
        }
    }

    fn drain(s: &mut Scheduler, q: &dyn Queues) -> Vec<Start> {
        std::iter::from_fn(|| s.next_start(q)).collect()
    }

    #[test]
    fn the_pool_bounds_what_runs_and_slots_are_reused() {
        let f = file("[jobs.a]\ncommand = 'true'\nitems = { range = [0, 5] }\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 2, false);
        let first = drain(&mut s, &q);
        assert_eq!(first.iter().map(|t| t.slot).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(first[1].item, b"1");
        s.finished(0, 0, 1, true, false);
        let next = drain(&mut s, &q);
        assert_eq!((next[0].index, next[0].slot), (2, 1));
    }

    #[test]
    fn a_task_waiting_to_retry_frees_its_slot_and_then_starts_first() {
        let f = file("[jobs.a]\ncommand = 'x'\nitems = { range = [0, 3] }\nconcurrency = 1\n[jobs.b]\ncommand = 'true'\nitems = { range = [0, 3] }\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 1, false);
        let t0 = Instant::now();
        let first = drain(&mut s, &q);
        assert_eq!((first[0].job, first[0].slot), (0, 0));
        let retry = s.retry_later(0, 0, 0, t0 + std::time::Duration::from_secs(2));
        assert_eq!(s.next_wake(), Some(t0 + std::time::Duration::from_secs(2)));
        // The slot is free; concurrency counts processes, so a's next task may start.
        let next = drain(&mut s, &q);
        assert_eq!((next[0].job, next[0].index, next[0].retry), (0, 1, None));
        s.finished(0, 0, 0, true, false);
        s.wake(t0 + std::time::Duration::from_secs(2));
        let again = drain(&mut s, &q);
        assert_eq!((again[0].job, again[0].retry), (0, Some(retry)), "before b");
        assert!(!s.is_done());
        s.stop();
        assert!(s.abandon_waiting().is_empty(), "it runs: not waiting");
    }

    #[test]
    fn a_stop_gives_up_the_tasks_waiting_to_retry() {
        let f = file("[jobs.a]\ncommand = 'x'\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 1, false);
        drain(&mut s, &q);
        let retry = s.retry_later(0, 0, 0, Instant::now());
        assert!(!s.is_done());
        s.stop();
        assert_eq!(
            s.abandon_waiting(),
            [Abandoned {
                job: 0,
                index: 0,
                retry
            }]
        );
        assert!(s.is_done());
        assert_eq!(s.jobs[0].phase, Phase::Done { ok: false });
    }

    #[test]
    fn concurrency_caps_a_job_below_the_pool() {
        let f = file("[jobs.a]\ncommand = 'true'\nitems = [1, 2, 3]\nconcurrency = 1\n[jobs.b]\ncommand = 'true'\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 4, false);
        let starts = drain(&mut s, &q);
        assert_eq!(starts.iter().map(|t| t.job).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_failure_skips_dependents_transitively_but_allowed_failures_do_not() {
        let f = file(
            "[jobs.a]\ncommand = 'false'\n[jobs.b]\ncommand = 'true'\nneeds = ['a']\n[jobs.c]\ncommand = 'true'\nneeds = ['b']\n",
        );
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 2, false);
        assert_eq!(drain(&mut s, &q).len(), 1);
        s.finished(0, 0, 0, false, false);
        assert_eq!(
            s.take_effects(),
            vec![Effect::Skipped(1), Effect::Skipped(2)]
        );
        assert!(s.is_done());

        let mut s = Scheduler::new(f.clone(), 2, false);
        drain(&mut s, &q);
        s.finished(0, 0, 0, false, true);
        assert_eq!(drain(&mut s, &q)[0].job, 1);
    }

    #[test]
    fn fail_fast_stops_starting() {
        let f = file("[jobs.a]\ncommand = 'x'\nitems = { range = [0, 10] }\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 2, true);
        drain(&mut s, &q);
        s.finished(0, 0, 0, false, false);
        assert_eq!(s.take_effects(), vec![Effect::StopRun]);
        assert!(drain(&mut s, &q).is_empty());
        s.finished(0, 0, 1, true, false);
        assert!(s.is_done());
    }

    #[test]
    fn queue_consumers_take_items_as_they_come_and_end_when_closed() {
        let f = file(
            "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'echo {item}'\nitems = { queue = 'q' }\n",
        );
        let q = FakeQueues::new(1, 10);
        let mut s = Scheduler::new(f.clone(), 2, false);
        let starts = drain(&mut s, &q);
        assert_eq!(starts.len(), 1, "only the producer: the queue is empty");
        q.push(0, "1");
        let c = drain(&mut s, &q);
        assert_eq!((c[0].job, c[0].item.as_slice()), (1, b"1".as_slice()));
        s.finished(0, 0, starts[0].slot, true, false);
        assert_eq!(s.take_effects(), vec![Effect::Close(0)]);
        q.closed.borrow_mut()[0] = true;
        s.finished(1, 0, c[0].slot, true, false);
        assert!(drain(&mut s, &q).is_empty());
        assert!(s.is_done());
    }

    #[test]
    fn a_full_queue_gets_its_consumer_a_slot_beyond_a_full_pool() {
        let f = file(
            "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'echo {item}'\nitems = { queue = 'q' }\n",
        );
        let q = FakeQueues::new(1, 1);
        let mut s = Scheduler::new(f.clone(), 1, false);
        assert_eq!(drain(&mut s, &q).len(), 1);
        q.push(0, "1");
        let c = drain(&mut s, &q);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].slot, 1, "slot numbers past the pool");
    }

    #[test]
    fn a_producer_blocked_on_a_full_queue_lends_its_slot_to_the_consumer() {
        let f = file(
            "[jobs.p]\ncommand = 'seq 9'\nto = 'q'\n[jobs.c]\ncommand = 'echo {item}'\nitems = { queue = 'q' }\n",
        );
        let q = FakeQueues::new(1, 100);
        let mut s = Scheduler::new(f.clone(), 2, false);
        assert_eq!(drain(&mut s, &q).len(), 1, "the producer");
        for i in 0..5 {
            q.push(0, &i.to_string());
        }
        assert_eq!(
            drain(&mut s, &q).len(),
            1,
            "one consumer task in the free slot"
        );
        q.blocked.set(1);
        let lent = drain(&mut s, &q);
        assert_eq!(lent.len(), 1, "one more in the blocked producer's place");
        assert_eq!(lent[0].slot, 2);
        assert!(
            drain(&mut s, &q).is_empty(),
            "no more than the producers blocked"
        );
    }

    #[test]
    fn a_streaming_consumer_starts_at_once_outside_the_pool() {
        let f = file("[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'wc -l'\nstdin = { queue = 'q' }\n");
        let q = FakeQueues::new(1, 1);
        let mut s = Scheduler::new(f.clone(), 1, false);
        let starts = drain(&mut s, &q);
        assert_eq!(
            starts.iter().map(|t| (t.job, t.slot)).collect::<Vec<_>>(),
            [(1, 1), (0, 0)]
        );
    }

    #[test]
    fn remote_jobs_take_no_pool_slot_and_keep_to_their_window() {
        let f = file(
            "[jobs.a]\ncommand = 'true'\nitems = { range = [0, 5] }\n[jobs.b]\ncommand = 'true'\n",
        );
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 1, false);
        s.set_remote(vec![true, false], 3);
        let starts = drain(&mut s, &q);
        assert_eq!(
            starts.iter().map(|t| (t.job, t.slot)).collect::<Vec<_>>(),
            [(0, REMOTE), (0, REMOTE), (0, REMOTE), (1, 0)]
        );
        s.finished(0, 0, REMOTE, true, false);
        assert_eq!(drain(&mut s, &q).len(), 1);
        s.stop();
        s.finished(1, 0, 0, true, false);
        assert!(s.is_done(), "a stopped run does not wait for workers");
    }

    #[test]
    fn a_skipped_consumer_makes_its_queue_drop_items() {
        let f = file(
            "[jobs.a]\ncommand = 'false'\n[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'wc -l'\nstdin = { queue = 'q' }\nneeds = ['a']\n",
        );
        let q = FakeQueues::new(1, 1);
        let mut s = Scheduler::new(f.clone(), 2, false);
        drain(&mut s, &q);
        s.finished(0, 0, 0, false, false);
        assert_eq!(
            s.take_effects(),
            vec![Effect::Skipped(2), Effect::Discard(0)]
        );
    }

    #[test]
    fn item_by_item_a_task_starts_when_its_own_needed_task_succeeded() {
        let f = file(
            "[jobs.a]\ncommand = 'x'\nitems = [1, 2, 3]\n[jobs.b]\ncommand = 'x'\nitems = [3, 2, 1]\nneeds = [{ job = 'a', each = true }]\n",
        );
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 8, false);
        let first = drain(&mut s, &q);
        assert_eq!(first.iter().map(|t| t.job).collect::<Vec<_>>(), [0, 0, 0]);
        // a:3 (index 2) succeeds: b:3 (index 0) starts, before the rest of a.
        s.finished(0, 2, first[2].slot, true, false);
        let next = drain(&mut s, &q);
        assert_eq!(
            (next[0].job, next[0].index, next[0].item.as_slice()),
            (1, 0, b"3".as_slice())
        );
        // a:2 fails: b:2 is skipped, naming it; the job is not ok.
        s.finished(0, 1, first[1].slot, false, false);
        assert_eq!(
            s.take_effects(),
            vec![Effect::TaskSkipped {
                job: 1,
                index: 1,
                because: (0, 1),
                failed: true
            }]
        );
        s.finished(0, 0, first[0].slot, true, false);
        let last = drain(&mut s, &q);
        assert_eq!((last[0].job, last[0].index), (1, 2));
        s.finished(1, 0, next[0].slot, true, false);
        s.finished(1, 2, last[0].slot, true, false);
        assert!(s.is_done());
        assert_eq!(s.jobs[1].phase, Phase::Done { ok: false });
    }

    #[test]
    fn when_failure_runs_only_after_a_failure_and_always_after_fail_fast() {
        let source = "[jobs.a]\ncommand = 'x'\n[jobs.f]\ncommand = 'x'\nneeds = ['a']\nwhen = 'failure'\n[jobs.r]\ncommand = 'x'\nneeds = ['a']\nwhen = 'always'\n";
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(file(source), 2, false);
        drain(&mut s, &q);
        s.finished(0, 0, 0, true, false);
        assert_eq!(s.take_effects(), vec![Effect::Skipped(1)]);
        assert_eq!(
            drain(&mut s, &q).iter().map(|t| t.job).collect::<Vec<_>>(),
            [2]
        );

        let mut s = Scheduler::new(file(source), 2, true);
        drain(&mut s, &q);
        s.finished(0, 0, 0, false, false);
        assert_eq!(s.take_effects(), vec![Effect::StopRun, Effect::Resume]);
        let after = drain(&mut s, &q);
        assert_eq!(after.iter().map(|t| t.job).collect::<Vec<_>>(), [1, 2]);
        s.stop();
        assert!(!s.is_done(), "they run");
    }
    #[test]
    fn a_task_starts_only_when_what_it_uses_is_free_and_gives_it_back() {
        let f = file("[resources]\ndb = 2\n[jobs.a]\ncommand = 'x'\nitems = { range = [0, 5] }\nuses = { db = 1 }\n[jobs.b]\ncommand = 'x'\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 4, false);
        let first = drain(&mut s, &q);
        assert_eq!(first.iter().map(|t| t.job).collect::<Vec<_>>(), [0, 0, 1]);
        assert_eq!(s.holding().as_deref(), Some("db 2/2 in use"));
        // Waiting to retry holds nothing: another task takes its place.
        let t0 = Instant::now();
        s.retry_later(0, 0, first[0].slot, t0 + Duration::from_secs(5));
        let next = drain(&mut s, &q);
        assert_eq!((next.len(), next[0].index), (1, 2));
        s.finished(0, 1, first[1].slot, true, false);
        assert_eq!(drain(&mut s, &q).len(), 1);
        assert_eq!(s.in_use(), [2]);
    }

    #[test]
    fn a_rate_spreads_starts_evenly_and_counts_retries() {
        let f = file("[rates]\ndns = '5/s'\n[jobs.a]\ncommand = 'x'\nitems = { range = [0, 5] }\nrate = 'dns'\n[jobs.b]\ncommand = 'x'\nrate = 'dns'\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 8, false);
        let t0 = Instant::now();
        s.wake(t0);
        assert_eq!(drain(&mut s, &q).len(), 1, "no burst");
        assert_eq!(s.holding().as_deref(), Some("rate dns 5/s"));
        let at = s.next_wake().expect("a wake for the rate");
        assert_eq!(at, t0 + Duration::from_millis(200));
        s.wake(t0 + Duration::from_millis(150));
        assert!(drain(&mut s, &q).is_empty());
        // Late by 150 ms: the next may come sooner, but not before 3/4 of the interval.
        s.wake(t0 + Duration::from_millis(350));
        assert_eq!(drain(&mut s, &q).len(), 1);
        assert_eq!(s.next_wake(), Some(t0 + Duration::from_millis(500)));
        let r = s.retry_later(0, 0, 0, t0 + Duration::from_millis(360));
        s.wake(t0 + Duration::from_millis(360));
        assert!(
            drain(&mut s, &q).is_empty(),
            "the retry waits for the rate too"
        );
        s.wake(t0 + Duration::from_millis(500));
        let again = drain(&mut s, &q);
        assert_eq!(
            (again.len(), again[0].retry),
            (1, Some(r)),
            "the retry takes the turn"
        );
        assert!(again[0].waited >= Duration::from_millis(100));
    }

    #[test]
    fn a_big_task_is_not_passed_over_by_small_ones() {
        let f = file("[resources]\ndb = 4\n[jobs.small]\ncommand = 'x'\nitems = { range = [0, 100] }\nuses = { db = 1 }\n[jobs.big]\ncommand = 'x'\nuses = { db = 4 }\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 8, false);
        let mut running: VecDeque<Start> = drain(&mut s, &q).into();
        assert_eq!(running.len(), 4);
        let mut small_starts = 0;
        loop {
            let done = running.pop_front().expect("something runs");
            s.finished(done.job, done.index, done.slot, true, false);
            let started = drain(&mut s, &q);
            if started.iter().any(|t| t.job == 1) {
                break;
            }
            small_starts += started.len();
            running.extend(started);
            assert!(
                small_starts <= 4,
                "the big task waits behind {small_starts} starts"
            );
        }
    }

    #[test]
    fn a_closed_gate_starts_nothing() {
        let f = file("[jobs.a]\ncommand = 'x'\n");
        let q = FakeQueues::new(0, 1);
        let mut s = Scheduler::new(f.clone(), 4, false);
        s.set_gate(true);
        assert!(drain(&mut s, &q).is_empty());
        s.set_gate(false);
        assert_eq!(drain(&mut s, &q).len(), 1);
    }
}
