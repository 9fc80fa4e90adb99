//! Silent devices: a patient's expected readings stop → a `no_data` flag,
//! cleared when data resumes. Driven by a deadline heap, not by arrivals,
//! because silence produces no arrival to react to.
//!
//! Time is passed in (seconds), never read from a clock, so tests and
//! replays control it. An arrival only moves the patient's deadline in its
//! map entry (O(1), no heap push): each watched patient has one scheduled
//! heap entry, and when that entry falls due with a later deadline it is
//! simply re-scheduled. The heap therefore holds about one entry per patient
//! however fast readings arrive.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;

use rustc_hash::FxHashMap as HashMap;

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
    /// The true deadline: `last_seen + gap`, or later after a grace.
    deadline: i64,
    /// The deadline of this patient's live heap entry (`None` while raised):
    /// never later than `deadline`, so nothing falls due unnoticed.
    scheduled: Option<i64>,
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
            watches: HashMap::default(),
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
                scheduled: Some(deadline),
                raised: false,
            },
        );
        self.heap.push(Reverse((deadline, patient)));
    }

    /// Whether a patient is watched.
    pub fn is_watched(&self, patient: &P) -> bool {
        self.watches.contains_key(patient)
    }

    /// A `no_data` flag is open for the patient.
    pub fn is_raised(&self, patient: &P) -> bool {
        self.watches.get(patient).is_some_and(|w| w.raised)
    }

    /// Makes sure the heap holds an entry no later than the deadline.
    fn schedule(heap: &mut BinaryHeap<Reverse<(i64, P)>>, patient: &P, w: &mut Watch) {
        if w.raised || w.scheduled.is_some_and(|s| s <= w.deadline) {
            return;
        }
        w.scheduled = Some(w.deadline);
        heap.push(Reverse((w.deadline, patient.clone())));
    }

    /// Changes the allowed gap (a device declared its own cadence), keeping
    /// the time of the last reading.
    pub fn set_gap(&mut self, patient: &P, gap: i64) {
        let Some(w) = self.watches.get_mut(patient) else {
            return;
        };
        let gap = gap.max(1);
        if w.gap == gap {
            return;
        }
        w.gap = gap;
        w.deadline = w.last_seen + gap;
        Self::schedule(&mut self.heap, patient, w);
    }

    /// Restores an open `no_data` flag after a restart: it is not raised
    /// again, and clears when data resumes.
    pub fn assume_raised(&mut self, patient: &P) {
        if let Some(w) = self.watches.get_mut(patient) {
            w.raised = true;
            w.scheduled = None;
        }
    }

    /// Pushes the deadline to at least `not_before + gap`: after a restart,
    /// readings queued in the broker while the engine was down get a full
    /// interval to arrive before anyone is declared silent.
    pub fn grace(&mut self, patient: &P, not_before: i64) {
        if let Some(w) = self.watches.get_mut(patient) {
            w.deadline = w.deadline.max(not_before + w.gap);
        }
    }

    /// Stops watching (discharge): no further `no_data` for this patient.
    pub fn unwatch(&mut self, patient: &P) {
        self.watches.remove(patient);
    }

    /// A reading arrived: starts watching the patient if they were not
    /// watched, applies the (possibly device-refined) gap, and moves the
    /// deadline, in one map lookup. Returns `Cleared` if it ended a silence.
    pub fn observe(&mut self, patient: &P, gap: i64, at: i64) -> Option<SilenceEvent<P>> {
        let gap = gap.max(1);
        let Some(w) = self.watches.get_mut(patient) else {
            self.watch(patient.clone(), gap, at);
            return None;
        };
        if w.gap != gap {
            w.gap = gap;
            w.deadline = w.last_seen + gap;
            Self::schedule(&mut self.heap, patient, w);
        }
        Self::arrive(&mut self.heap, patient, w, at)
    }

    /// A reading arrived at `at` (s). Returns `Cleared` if it ended a silence.
    pub fn arrived(&mut self, patient: &P, at: i64) -> Option<SilenceEvent<P>> {
        let w = self.watches.get_mut(patient)?;
        Self::arrive(&mut self.heap, patient, w, at)
    }

    fn arrive(
        heap: &mut BinaryHeap<Reverse<(i64, P)>>,
        patient: &P,
        w: &mut Watch,
        at: i64,
    ) -> Option<SilenceEvent<P>> {
        if at < w.last_seen {
            return None; // a late, older reading does not move the deadline back
        }
        w.last_seen = at;
        w.deadline = w.deadline.max(at + w.gap);
        if w.raised {
            w.raised = false;
            Self::schedule(heap, patient, w);
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
        while let Some(Reverse((due, _))) = self.heap.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, patient))) = self.heap.pop() else {
                break;
            };
            let Some(w) = self.watches.get_mut(&patient) else {
                continue; // unwatched
            };
            if w.scheduled != Some(due) {
                continue; // superseded entry
            }
            if w.deadline > now {
                // Readings arrived since: re-schedule at the true deadline.
                w.scheduled = Some(w.deadline);
                self.heap.push(Reverse((w.deadline, patient)));
                continue;
            }
            w.raised = true;
            w.scheduled = None;
            events.push(SilenceEvent::Raised {
                patient,
                last_seen: w.last_seen,
            });
        }
        events
    }

    /// The earliest pending heap entry (a deadline or a re-check), for a
    /// timer to sleep until.
    pub fn next_deadline(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((d, _))| *d)
    }

    /// Heap entries, live and superseded.
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Drops superseded heap entries (left by discharges and gap changes).
    pub fn compact(&mut self) {
        let watches = &self.watches;
        self.heap
            .retain(|Reverse((d, p))| watches.get(p).is_some_and(|w| w.scheduled == Some(*d)));
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
    fn arrivals_do_not_grow_the_heap() {
        let mut w = SilenceWatch::new();
        w.watch(1u32, 100, 0);
        for t in 1..1000 {
            w.arrived(&1, t);
        }
        assert_eq!(
            w.heap_len(),
            1,
            "one entry per patient, however many readings"
        );
        assert!(w.advance(998).is_empty());
        assert_eq!(w.heap_len(), 1, "re-scheduled, not duplicated");
        assert_eq!(w.next_deadline(), Some(1099));
        assert_eq!(w.advance(1099).len(), 1);
    }

    #[test]
    fn compaction_drops_superseded_entries() {
        let mut w = SilenceWatch::new();
        w.watch(1u32, 1000, 0);
        w.set_gap(&1, 100); // earlier deadline: a second entry
        w.watch(2u32, 100, 0);
        w.unwatch(&2);
        assert_eq!(w.heap_len(), 3);
        w.compact();
        assert_eq!(w.heap_len(), 1);
        assert_eq!(w.advance(100).len(), 1);
    }

    #[test]
    fn grace_after_a_restart_defers_a_deadline_already_passed() {
        let mut w = SilenceWatch::new();
        w.watch("p", 100, 0);
        w.grace(&"p", 5_000);
        assert!(w.advance(5_099).is_empty());
        assert_eq!(w.advance(5_100).len(), 1);
    }
}
