//! Property test of the scheduler: every run of a random small graph ends.
//!
//! A deterministic simulation drives the real [`Scheduler`] with fake processes: a
//! producer task writes its lines one at a time into a bounded queue and blocks while
//! the queue is full (it then holds a slot it does not use, as a real one does), a
//! consumer task of a queue's items ends when told, a streaming consumer takes items
//! until its queue is closed and drained, and some jobs fail (their dependents are
//! skipped, their queues discarded). At each step the test picks one possible action
//! from a random sequence; if none is possible while the scheduler says the run is not
//! done, the run is stuck: a deadlock.
//!
//! Before slots were lent to any task (issue 11, point 6), this found the
//! `pool = 1` producer / consumer-needs-`setup` hang within a few cases.
//!
//! Retries: a job's first `flaky` attempts fail (at their end, or at any moment, like
//! a process that crashes) and the task waits to retry holding no slot, until the
//! simulated clock reaches its "ready at"; with `fail_fast`, a failure stops the run
//! (running tasks then end at once, as TERM makes them, and waiting ones are given up).
//!
//! Resources and rates (issue 27): jobs use 0 to 3 of a resource `r` the file has 3
//! of, and some share a rate `x` of 10/s; the clock moves on to the scheduler's next
//! wake. Every start is checked: no capacity is ever exceeded, and no two starts of
//! a rate come closer than 3/4 of its interval; every run still ends.
//!
//! Services (issue 28): some jobs are services (not fed by a queue, feeding none); their
//! tasks become ready at a random step, may crash before or after, and end only when
//! released (or stopped). Every start of a job needing a service (`when = "success"`)
//! is checked to come after every task of it was ready, and every release after every
//! job needing it was over: no service outlives the jobs that need it, none is stopped
//! under them, and every run still ends.

use super::*;
use crate::jobfile::{parse, StdinSpec};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

/// One job of a generated graph.
#[derive(Debug, Clone)]
struct GenJob {
    /// Without a queue to consume: one task (false) or a range of `items` tasks (true).
    range: bool,
    items: u8,
    /// As the consumer of a queue: a task per item (false) or one streaming task (true).
    streaming: bool,
    /// Lines each of its tasks writes (when it writes to a queue).
    lines: u8,
    /// Bit k: it needs job k (only earlier jobs are taken).
    needs: u8,
    fails: bool,
    /// Its tasks' first attempts that fail and are retried.
    flaky: u8,
    /// The retry delay, in simulated milliseconds.
    delay: u8,
    /// Bit k: it needs job k item by item (when both are ranges of as many items).
    each: u8,
    /// `when`: 0 success, 1 always, 2 failure (success when it needs a job item by item).
    when: u8,
    /// How much of the resource `r` (capacity 3) each task uses (0: none).
    uses: u8,
    /// Its starts are paced by the rate `x` (10/s).
    rate: bool,
    /// A service (when it neither reads nor feeds a queue).
    service: bool,
}

fn gen_job() -> impl Strategy<Value = GenJob> {
    (
        any::<bool>(),
        1u8..4,
        any::<bool>(),
        0u8..6,
        any::<u8>(),
        prop::bool::weighted(0.15),
        prop_oneof![3 => Just(0u8), 1 => 1u8..3],
        0u8..4,
        (any::<u8>(), prop_oneof![3 => Just(0u8), 1 => 1u8..3]),
        (0u8..4, prop::bool::weighted(0.3), prop::bool::weighted(0.3)),
    )
        .prop_map(
            |(
                range,
                items,
                streaming,
                lines,
                needs,
                fails,
                flaky,
                delay,
                (each, when),
                (uses, rate, service),
            )| GenJob {
                range,
                items,
                streaming,
                lines,
                needs,
                fails,
                flaky,
                delay,
                each,
                when,
                uses,
                rate,
                service,
            },
        )
}

/// A queue of a generated graph: its consumer and producers, as picks among the jobs.
#[derive(Debug, Clone)]
struct GenQueue {
    consumer: u8,
    /// Bit k: job k writes to it (if it writes to no other queue and does not consume it).
    producers: u8,
    capacity: u8,
}

fn gen_queue() -> impl Strategy<Value = GenQueue> {
    (any::<u8>(), any::<u8>(), 1u8..3).prop_map(|(consumer, producers, capacity)| GenQueue {
        consumer,
        producers,
        capacity,
    })
}

/// The job file of a generated graph; `None` when the loader refuses it (a cycle
/// through needs and queues): such graphs never run.
fn job_file(pool: usize, queues: &[GenQueue], jobs: &[GenJob]) -> Option<Arc<JobFile>> {
    let n = jobs.len();
    let mut consumes: Vec<Option<usize>> = vec![None; n];
    let mut to: Vec<Option<usize>> = vec![None; n];
    let mut source = format!("pool = {pool}\n[resources]\nr = 3\n[rates]\nx = '10/s'\n");
    for (q, queue) in queues.iter().enumerate() {
        let consumer = (0..n)
            .map(|k| (queue.consumer as usize + k) % n)
            .find(|&j| consumes[j].is_none())?;
        consumes[consumer] = Some(q);
        let eligible = |j: usize, to: &[Option<usize>]| j != consumer && to[j].is_none();
        let mut any = false;
        for j in 0..n {
            if queue.producers & (1 << (j % 8)) != 0 && eligible(j, &to) {
                to[j] = Some(q);
                any = true;
            }
        }
        if !any {
            let j = (0..n).find(|&j| eligible(j, &to))?;
            to[j] = Some(q);
        }
        source.push_str(&format!("[queues.q{q}]\ncapacity = {}\n", queue.capacity));
    }
    let service: Vec<bool> = (0..n)
        .map(|j| jobs[j].service && consumes[j].is_none() && to[j].is_none())
        .collect();
    for (j, job) in jobs.iter().enumerate() {
        source.push_str(&format!("[jobs.j{j}]\ncommand = 'true'\n"));
        if service[j] {
            source.push_str("service = true\n");
        }
        match consumes[j] {
            Some(q) if job.streaming => source.push_str(&format!("stdin = {{ queue = 'q{q}' }}\n")),
            Some(q) => source.push_str(&format!("items = {{ queue = 'q{q}' }}\n")),
            None if job.range => {
                source.push_str(&format!("items = {{ range = [0, {}] }}\n", job.items));
            }
            None => {}
        }
        if let Some(q) = to[j] {
            source.push_str(&format!("to = 'q{q}'\n"));
        }
        // Not on a job that feeds a queue or reads one on stdin (the loader refuses it).
        let stream = to[j].is_some() || (consumes[j].is_some() && job.streaming);
        if job.uses > 0 && !stream && !service[j] {
            source.push_str(&format!("uses = {{ r = {} }}\n", job.uses));
        }
        if job.rate {
            source.push_str("rate = 'x'\n");
        }
        // Item by item between two ranges of as many items (neither fed by a queue).
        let each = |k: usize| {
            job.each & (1 << k) != 0
                && !service[k]
                && consumes[j].is_none()
                && consumes[k].is_none()
                && job.range
                && jobs[k].range
                && jobs[k].items == job.items
        };
        let needs: Vec<String> = (0..j)
            .filter(|k| job.needs & (1 << k) != 0)
            .map(|k| match each(k) {
                true => format!("{{ job = 'j{k}', each = true }}"),
                false => format!("'j{k}'"),
            })
            .collect();
        if !needs.is_empty() {
            source.push_str(&format!("needs = [{}]\n", needs.join(", ")));
        }
        let any_each = (0..j).any(|k| job.needs & (1 << k) != 0 && each(k));
        match job.when {
            1 if !any_each => source.push_str("when = 'always'\n"),
            2 if !any_each => source.push_str("when = 'failure'\n"),
            _ => {}
        }
    }
    parse(Path::new("sim.toml"), source).ok().map(Arc::new)
}

/// Queues as the scheduler sees them, with the producers blocked on each.
struct SimQueues {
    items: RefCell<Vec<VecDeque<Vec<u8>>>>,
    closed: RefCell<Vec<bool>>,
    discarded: RefCell<Vec<bool>>,
    blocked: RefCell<Vec<usize>>,
    capacity: Vec<usize>,
}

impl Queues for SimQueues {
    fn try_take(&self, q: QueueId) -> Take {
        match self.items.borrow_mut()[q].pop_front() {
            Some(item) => Take::Item(item),
            None if self.closed.borrow()[q] => Take::Closed,
            None => Take::Empty,
        }
    }
    fn is_full(&self, q: QueueId) -> bool {
        self.items.borrow()[q].len() >= self.capacity[q]
    }
    fn is_empty(&self, q: QueueId) -> bool {
        self.items.borrow()[q].is_empty()
    }
    fn blocked_producers(&self, q: QueueId) -> usize {
        self.blocked.borrow()[q]
    }
}

/// A running fake process.
struct SimTask {
    job: JobId,
    index: u64,
    slot: usize,
    lines_left: u8,
    attempt: u8,
}

/// A run in progress: the scheduler, the fake queues and the fake processes.
struct Sim<'a> {
    file: &'a Arc<JobFile>,
    gen: &'a [GenJob],
    pool: usize,
    queues: SimQueues,
    scheduler: Scheduler,
    running: Vec<SimTask>,
    in_pool: HashMap<usize, JobId>,
    /// Tasks waiting to retry: the attempt that failed, by the scheduler's number.
    waiting: HashMap<u64, (JobId, u8)>,
    /// The simulated clock.
    now: Instant,
    /// Tasks that succeeded (job, index): a task needing one item by item starts after.
    succeeded: std::collections::HashSet<(JobId, u64)>,
    /// The last start of a job with the rate `x`.
    last_paced: Option<Instant>,
    /// Service tasks (job, index) that were ready, and the services released.
    ready: std::collections::HashSet<(JobId, u64)>,
    released: std::collections::HashSet<JobId>,
}

impl Sim<'_> {
    /// Which producers are blocked now (a real one tells the scheduler when it blocks).
    fn count_blocked(&self) {
        let mut blocked = vec![0; self.file.queues.len()];
        for task in &self.running {
            if let Some(q) = self.file.jobs[task.job].to {
                if task.lines_left > 0
                    && !self.queues.discarded.borrow()[q]
                    && self.queues.is_full(q)
                {
                    blocked[q] += 1;
                }
            }
        }
        *self.queues.blocked.borrow_mut() = blocked;
    }

    /// Service `j` is released: every job needing it must be over.
    fn release(&mut self, j: JobId) -> Result<(), SimFailure> {
        let users = (0..self.file.jobs.len()).filter(|&u| self.file.jobs[u].needs.contains(&j));
        for u in users {
            if !self.scheduler.jobs[u].phase.is_final() {
                return Err(SimFailure::ReleasedEarly {
                    service: j,
                    user: u,
                });
            }
        }
        self.released.insert(j);
        Ok(())
    }

    /// A task of `job` starts: every service it needs (`when = "success"`) was ready.
    fn check_services_ready(&self, job: JobId) -> Result<(), SimFailure> {
        if self.file.jobs[job].when != When::Success {
            return Ok(());
        }
        for &dep in &self.file.jobs[job].needs {
            if !self.file.jobs[dep].service {
                continue;
            }
            let total = self.scheduler.jobs[dep].total.unwrap_or(0);
            let ready = (0..total)
                .filter(|&i| self.ready.contains(&(dep, i)))
                .count();
            if (ready as u64) < total {
                return Err(SimFailure::BeforeReady { job, service: dep });
            }
        }
        Ok(())
    }

    /// Applies the scheduler's effects and starts what it says, until nothing more
    /// starts; an error if a pool slot is given twice.
    fn start_all(&mut self) -> Result<(), SimFailure> {
        loop {
            self.count_blocked();
            self.scheduler.wake(self.now);
            let mut started = false;
            loop {
                if self.scheduler.is_stopping() {
                    for abandoned in self.scheduler.abandon_waiting() {
                        self.waiting.remove(&abandoned.retry);
                    }
                }
                for effect in self.scheduler.take_effects() {
                    match effect {
                        Effect::Close(q) => self.queues.closed.borrow_mut()[q] = true,
                        Effect::Discard(q) => {
                            self.queues.discarded.borrow_mut()[q] = true;
                            self.queues.items.borrow_mut()[q].clear();
                        }
                        Effect::Release(j) => self.release(j)?,
                        Effect::Skipped(_)
                        | Effect::StopRun
                        | Effect::TaskSkipped { .. }
                        | Effect::Resume => {}
                    }
                }
                let Some(start) = self.scheduler.next_start(&self.queues) else {
                    if !self.scheduler.has_effects() {
                        break;
                    }
                    continue;
                };
                if start.slot < self.pool {
                    if let Some(other) = self.in_pool.insert(start.slot, start.job) {
                        return Err(SimFailure::SlotTwice {
                            slot: start.slot,
                            job: start.job,
                            other,
                        });
                    }
                }
                started = true;
                self.check_services_ready(start.job)?;
                for &dep in &self.file.jobs[start.job].each {
                    if !self.succeeded.contains(&(dep, start.index)) {
                        return Err(SimFailure::Early {
                            job: start.job,
                            index: start.index,
                            dep,
                        });
                    }
                }
                let attempt = match start.retry {
                    Some(retry) => match self.waiting.remove(&retry) {
                        Some((_, failed)) => failed + 1,
                        None => return Err(SimFailure::RetryTwice(retry)),
                    },
                    None => 1,
                };
                let used: u64 = self
                    .running
                    .iter()
                    .chain(std::iter::once(&SimTask {
                        job: start.job,
                        index: 0,
                        slot: 0,
                        lines_left: 0,
                        attempt: 0,
                    }))
                    .flat_map(|t| self.file.jobs[t.job].uses.iter().map(|u| u.1))
                    .sum();
                if used > 3 {
                    return Err(SimFailure::Exceeded(used));
                }
                if self.file.jobs[start.job].rate.is_some() {
                    if let Some(last) = self.last_paced {
                        let gap = self.now - last;
                        if gap < Duration::from_millis(75) {
                            return Err(SimFailure::Burst(gap));
                        }
                    }
                    self.last_paced = Some(self.now);
                }
                let writes = self.file.jobs[start.job].to.is_some();
                self.running.push(SimTask {
                    job: start.job,
                    index: start.index,
                    slot: start.slot,
                    lines_left: if writes { self.gen[start.job].lines } else { 0 },
                    attempt,
                });
            }
            if !started {
                return Ok(());
            }
        }
    }

    /// What can happen next: a task writes a line (`w`), a streaming consumer takes an
    /// item (`t`), a task ends (`e`), a flaky attempt fails at once (`f`), or the clock
    /// moves on to the next end of a retry delay (`c`).
    fn actions(&self) -> Vec<(usize, char)> {
        let mut actions = Vec::new();
        if self.scheduler.next_wake().is_some() {
            actions.push((0, 'c'));
        }
        let stopping = self.scheduler.is_stopping();
        for (i, task) in self.running.iter().enumerate() {
            if stopping {
                actions.push((i, 'e'));
                continue;
            }
            if self.file.jobs[task.job].service {
                // Ready at some step, crashing (before or after) if it fails, ending
                // by itself only once released.
                if !self.ready.contains(&(task.job, task.index)) {
                    actions.push((i, 'r'));
                }
                if self.gen[task.job].fails || self.released.contains(&task.job) {
                    actions.push((i, 'e'));
                }
                continue;
            }
            if task.attempt <= self.gen[task.job].flaky {
                actions.push((i, 'f'));
            }
            let job = &self.file.jobs[task.job];
            if let (Some(q), true) = (job.to, task.lines_left > 0) {
                if self.queues.discarded.borrow()[q] || !self.queues.is_full(q) {
                    actions.push((i, 'w'));
                }
                continue;
            }
            match job.stdin {
                StdinSpec::Queue(q) => {
                    if !self.queues.items.borrow()[q].is_empty() {
                        actions.push((i, 't'));
                    } else if self.queues.closed.borrow()[q] {
                        actions.push((i, 'e'));
                    }
                }
                _ => actions.push((i, 'e')),
            }
        }
        actions
    }

    fn act(&mut self, i: usize, action: char) {
        match action {
            'w' => {
                let task = &mut self.running[i];
                task.lines_left -= 1;
                let q = self.file.jobs[task.job].to.expect("a producer");
                if !self.queues.discarded.borrow()[q] {
                    self.queues.items.borrow_mut()[q].push_back(b"x".to_vec());
                }
            }
            't' => {
                let StdinSpec::Queue(q) = self.file.jobs[self.running[i].job].stdin else {
                    unreachable!("a streaming consumer")
                };
                self.queues.items.borrow_mut()[q].pop_front();
            }
            'r' => {
                let task = &self.running[i];
                self.ready.insert((task.job, task.index));
                self.scheduler.service_ready(task.job, task.index);
            }
            'c' => {
                if let Some(at) = self.scheduler.next_wake() {
                    self.now = self.now.max(at);
                }
            }
            _ => {
                let task = self.running.swap_remove(i);
                if task.slot < self.pool {
                    self.in_pool.remove(&task.slot);
                }
                let gen = &self.gen[task.job];
                if self.file.jobs[task.job].service {
                    let ok = self.released.contains(&task.job);
                    self.scheduler
                        .finished(task.job, task.index, task.slot, ok, false);
                    return;
                }
                if task.attempt <= gen.flaky && !self.scheduler.is_stopping() {
                    let ready_at = self.now + Duration::from_millis(gen.delay.into());
                    let retry = self
                        .scheduler
                        .retry_later(task.job, task.index, task.slot, ready_at);
                    self.waiting.insert(retry, (task.job, task.attempt));
                    return;
                }
                let ok = !gen.fails && task.attempt > gen.flaky;
                if ok {
                    self.succeeded.insert((task.job, task.index));
                }
                self.scheduler
                    .finished(task.job, task.index, task.slot, ok, false);
            }
        }
    }

    fn stuck(&self, step: usize) -> SimFailure {
        let state = format!(
            "running {:?}, queues {:?}, blocked {:?}, jobs {:?}",
            self.running
                .iter()
                .map(|t| (t.job, t.slot, t.lines_left))
                .collect::<Vec<_>>(),
            self.queues
                .items
                .borrow()
                .iter()
                .map(VecDeque::len)
                .collect::<Vec<_>>(),
            self.queues.blocked.borrow(),
            self.scheduler
                .jobs
                .iter()
                .map(|j| (j.phase, j.running, j.next))
                .collect::<Vec<_>>(),
        );
        SimFailure::Stuck { step, state }
    }
}

/// Runs the graph to its end, choosing among possible actions with `choices`; returns
/// an error describing the stuck state if nothing can happen before the run is done.
fn simulate(
    file: &Arc<JobFile>,
    gen: &[GenJob],
    pool: usize,
    fail_fast: bool,
    choices: &[u16],
) -> Result<(), SimFailure> {
    let n = file.queues.len();
    let mut sim = Sim {
        file,
        gen,
        pool,
        queues: SimQueues {
            items: RefCell::new(vec![VecDeque::new(); n]),
            closed: RefCell::new(vec![false; n]),
            discarded: RefCell::new(vec![false; n]),
            blocked: RefCell::new(vec![0; n]),
            capacity: file.queues.iter().map(|q| q.capacity).collect(),
        },
        scheduler: Scheduler::new(file.clone(), pool, fail_fast),
        running: Vec::new(),
        in_pool: HashMap::new(),
        waiting: HashMap::new(),
        now: Instant::now(),
        succeeded: Default::default(),
        last_paced: None,
        ready: Default::default(),
        released: Default::default(),
    };
    for step in 0..20_000usize {
        sim.start_all()?;
        if sim.running.is_empty() && sim.scheduler.is_done() {
            if !sim.waiting.is_empty() {
                return Err(SimFailure::LeftWaiting(format!("{:?}", sim.waiting)));
            }
            return Ok(());
        }
        let actions = sim.actions();
        if actions.is_empty() {
            return Err(sim.stuck(step));
        }
        let (i, action) = actions[choices[step % choices.len()] as usize % actions.len()];
        sim.act(i, action);
    }
    Err(SimFailure::Endless)
}

/// How a simulated run went wrong (a test failure's message).
#[derive(Debug, thiserror::Error)]
enum SimFailure {
    #[error("slot {slot} given to j{job} while j{other} holds it")]
    SlotTwice {
        slot: usize,
        job: JobId,
        other: JobId,
    },
    /// Nothing can happen, and the run is not done; `state` is the simulation's, as
    /// Debug text.
    #[error("stuck at step {step}: {state}")]
    Stuck { step: usize, state: String },
    #[error("the run did not end in 20,000 steps")]
    Endless,
    #[error(
        "j{job}:{index} started before j{dep}:{index}, which it needs item by item, succeeded"
    )]
    Early { job: JobId, index: u64, dep: JobId },
    #[error("resource r: {0} in use, more than its capacity 3")]
    Exceeded(u64),
    #[error("two starts of rate x (10/s) only {0:?} apart")]
    Burst(Duration),
    #[error("retry {0} started twice")]
    RetryTwice(u64),
    #[error("j{job} started before every task of service j{service} was ready")]
    BeforeReady { job: JobId, service: JobId },
    #[error("service j{service} released while j{user}, which needs it, is not over")]
    ReleasedEarly { service: JobId, user: JobId },
    /// The run is done with tasks still waiting to retry (the waiting set, as Debug text).
    #[error("done with tasks waiting to retry: {0}")]
    LeftWaiting(String),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn every_run_of_a_small_graph_ends(
        pool in 1usize..4,
        queues in prop::collection::vec(gen_queue(), 0..3),
        jobs in prop::collection::vec(gen_job(), 2..6),
        choices in prop::collection::vec(any::<u16>(), 1..64),
        fail_fast in prop::bool::weighted(0.2),
    ) {
        let Some(file) = job_file(pool, &queues, &jobs) else {
            return Ok(());
        };
        if let Err(stuck) = simulate(&file, &jobs, pool, fail_fast, &choices) {
            prop_assert!(false, "{}", stuck);
        }
    }
}

/// The generator's files with resources and rates load (a refused file would make the
/// property test above vacuous for them), and such a run ends within its bounds.
#[test]
fn generated_files_with_resources_and_rates_load_and_run() {
    let job = |uses, rate, needs| GenJob {
        range: true,
        items: 3,
        streaming: false,
        lines: 0,
        needs,
        fails: false,
        flaky: 1,
        delay: 2,
        each: 0,
        when: 0,
        uses,
        rate,
        service: false,
    };
    let jobs = [job(3, true, 0), job(1, true, 0), job(2, false, 1)];
    let file = job_file(2, &[], &jobs).expect("the file loads");
    assert_eq!(file.jobs[0].uses, [(0, 3)]);
    assert_eq!(file.jobs[1].rate, Some(0));
    for choices in [[0u16, 1, 2, 3], [3, 2, 1, 0], [7, 7, 7, 7]] {
        simulate(&file, &jobs, 2, false, &choices).expect("the run ends");
    }
}
