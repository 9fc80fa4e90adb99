//! Silent devices: a patient's expected readings stop → a `no_data` flag,
//! cleared when data resumes. Driven by a deadline heap, not by arrivals,
//! because silence produces no arrival to react to.
//!
//! Time is passed in (seconds), never read from a clock, so tests and
//! replays control it. Each arrival pushes a new deadline; stale heap
//! entries are skipped lazily when they surface, so an arrival is O(log n)
//! and nothing is ever searched.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

/// A change in a patient's `no_data` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SilenceEvent<P> {
    /// No reading for longer than the allowed gap.
    Raised {
        /// Whose data stopped.
        patient: P,
        /// Time (s) of the last reading.
        last_seen: i64,
    },
    /// Data resumed after a raised `no_data`.
    Cleared {
        /// Whose data resumed.
        patient: P,
        /// Time (s) of the reading that resumed it.
        at: i64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Watch {
    /// Allowed gap (s): by default 2 × the pathway's expected interval.
    gap: i64,
    /// Time (s) of the latest reading.
    last_seen: i64,
    /// The deadline currently in the heap that is authoritative.
    deadline: i64,
    /// A `no_data` flag is open.
    raised: bool,
}

/// Deadlines for every watched patient of one shard.
#[derive(Debug)]
pub struct SilenceWatch<P: Eq + Hash + Clone + Ord> {
    watches: HashMap<P, Watch>,
    heap: BinaryHeap<Reverse<(i64, P)>>,
}

impl<P: Eq + Hash + Clone + Ord> Default for SilenceWatch<P> {
    fn default() -> Self {
        Self {
            watches: HashMap::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<P: Eq + Hash + Clone + Ord> SilenceWatch<P> {
    /// An empty watch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts (or re-times) watching a patient, counting from `since` (s):
    /// enrolment, or a restart rebuilding state from the last stored reading,
    /// so a restart neither forgets a silence nor invents one.
    pub fn watch(&mut self, patient: P, gap: i64, since: i64) {
        let gap = gap.max(1);
        let deadline = since + gap;
        self.watches.insert(
            patient.clone(),
            Watch {
                gap,
                last_seen: since,
                deadline,
                raised: false,
            },
        );
        self.heap.push(Reverse((deadline, patient)));
    }

    /// Stops watching (discharge): no further `no_data` for this patient.
    pub fn unwatch(&mut self, patient: &P) {
        self.watches.remove(patient);
    }

    /// A reading arrived at `at` (s). Returns `Cleared` if it ended a silence.
    pub fn arrived(&mut self, patient: &P, at: i64) -> Option<SilenceEvent<P>> {
        let w = self.watches.get_mut(patient)?;
        if at < w.last_seen {
            return None; // a late, older reading does not move the deadline back
        }
        w.last_seen = at;
        w.deadline = at + w.gap;
        self.heap.push(Reverse((w.deadline, patient.clone())));
        if w.raised {
            w.raised = false;
            return Some(SilenceEvent::Cleared {
                patient: patient.clone(),
                at,
            });
        }
        None
    }

    /// Time has reached `now` (s): every patient whose deadline has passed
    /// is raised, once.
    pub fn advance(&mut self, now: i64) -> Vec<SilenceEvent<P>> {
        let mut events = Vec::new();
        while let Some(Reverse((deadline, _))) = self.heap.peek() {
            if *deadline > now {
                break;
            }
            let Some(Reverse((deadline, patient))) = self.heap.pop() else {
                break;
            };
            let Some(w) = self.watches.get_mut(&patient) else {
                continue; // unwatched
            };
            if w.deadline != deadline || w.raised {
                continue; // stale entry: a later reading moved the deadline
            }
            w.raised = true;
            events.push(SilenceEvent::Raised {
                patient,
                last_seen: w.last_seen,
            });
        }
        events
    }

    /// The earliest pending deadline, for a timer to sleep until.
    pub fn next_deadline(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((d, _))| *d)
    }

    /// Heap entries, live and stale (bounded by compaction in `compact`).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Drops stale heap entries; call when the heap grows well beyond the
    /// number of watched patients so memory stays bounded.
    pub fn compact(&mut self) {
        let watches = &self.watches;
        self.heap
            .retain(|Reverse((d, p))| watches.get(p).is_some_and(|w| w.deadline == *d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_raises_once_after_the_gap_and_clears_when_data_resumes() {
        let mut w = SilenceWatch::new();
        w.watch("p1", 7200, 0); // hourly readings expected: gap 2 h
        assert!(w.advance(7199).is_empty());
        assert_eq!(
            w.advance(7200),
            vec![SilenceEvent::Raised {
                patient: "p1",
                last_seen: 0
            }]
        );
        assert!(w.advance(20_000).is_empty(), "raised once, not again");
        assert_eq!(
            w.arrived(&"p1", 20_001),
            Some(SilenceEvent::Cleared {
                patient: "p1",
                at: 20_001
            })
        );
        assert!(w.advance(27_200).is_empty());
        assert_eq!(w.advance(27_201).len(), 1, "silent again after another gap");
    }

    #[test]
    fn each_reading_pushes_the_deadline_forward() {
        let mut w = SilenceWatch::new();
        w.watch("p1", 100, 0);
        for t in (50..1000).step_by(50) {
            assert_eq!(w.arrived(&"p1", t), None);
            assert!(w.advance(t + 99).is_empty());
        }
        assert_eq!(w.advance(1049).len(), 0);
        assert_eq!(w.advance(1050).len(), 1);
    }

    #[test]
    fn a_late_older_reading_does_not_move_the_deadline_back() {
        let mut w = SilenceWatch::new();
        w.watch("p1", 100, 0);
        w.arrived(&"p1", 500);
        w.arrived(&"p1", 10); // delayed packet from earlier
        assert!(w.advance(599).is_empty());
        assert_eq!(w.advance(600).len(), 1);
    }

    #[test]
    fn discharged_patients_are_never_flagged() {
        let mut w = SilenceWatch::new();
        w.watch("p1", 100, 0);
        w.watch("p2", 100, 0);
        w.unwatch(&"p1");
        let ev = w.advance(1000);
        assert_eq!(
            ev,
            vec![SilenceEvent::Raised {
                patient: "p2",
                last_seen: 0
            }]
        );
    }

    #[test]
    fn a_restart_rebuilt_from_the_last_reading_neither_forgets_nor_invents_silence() {
        // Before the restart p1 read at t=900, p2 last at t=0; gap 1000.
        let mut w = SilenceWatch::new();
        w.watch("p1", 1000, 900);
        w.watch("p2", 1000, 0);
        // Restarting at t=1200: p2 is already silent, p1 is not.
        let ev = w.advance(1200);
        assert_eq!(
            ev,
            vec![SilenceEvent::Raised {
                patient: "p2",
                last_seen: 0
            }]
        );
    }

    #[test]
    fn compaction_keeps_only_live_deadlines() {
        let mut w = SilenceWatch::new();
        w.watch(1u32, 100, 0);
        for t in 1..1000 {
            w.arrived(&1, t);
        }
        assert_eq!(w.heap_len(), 1000);
        w.compact();
        assert_eq!(w.heap_len(), 1);
        assert_eq!(w.next_deadline(), Some(1099));
    }
}
